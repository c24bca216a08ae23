"""Ultralytics YOLO detector: trained from a model yaml (offline, no weights needed) or fine-tuned from
a user's ultralytics `.pt`. Kept offline: no weight, font or telemetry download is ever attempted.

Our model file holds the network's state_dict plus the model yaml in its metadata, so loading never
unpickles. (Fine-tuning from a user's `.pt` does unpickle that file, inside ultralytics: it is the
format of ultralytics checkpoints, and only done when the user names the file.)
"""
from __future__ import annotations

import copy
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from anomaly_gui.core.errors import DataError, WeightsUnavailableError
from anomaly_gui.core.formats.base import Annotation, DatasetItem
from anomaly_gui.engines.base import Cancelled, RunContext, param, register_engine
from anomaly_gui.core.splits import train_val_split
from anomaly_gui.engines.detection_common import (
    INPUT_CHOICES, DetectionEngine, TrainingSet, check_training_items, make_box,
)

MODEL_CHOICES = ["yolov8n.yaml", "yolov8s.yaml", "yolo11n.yaml", "yolo11s.yaml"]


def ultralytics_offline() -> Any:
    """Import ultralytics with everything that could reach the network switched off."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    try:
        import ultralytics
        from ultralytics.utils import SETTINGS
    except ImportError as exc:
        raise WeightsUnavailableError(
            "the YOLO engine needs the 'ultralytics' package: pip install 'anomaly_gui[detection]'"
        ) from exc
    if SETTINGS.get("sync"):
        SETTINGS.update({"sync": False})  # no telemetry
    return ultralytics


@dataclass
class YoloParams:
    model: str = param("yolov8n.yaml", "architecture yaml (trained from scratch, offline) or a path to your ultralytics .pt to fine-tune",
                       choices=MODEL_CHOICES)
    epochs: int = param(30, "training epochs", minimum=1, maximum=1000)
    imgsz: int = param(640, "network input size (pixels)", minimum=64, maximum=2048, step=32)
    batch: int = param(8, "images per batch", minimum=1, maximum=256)
    lr0: float = param(0.01, "initial learning rate", minimum=1e-6, maximum=1.0, advanced=True)
    mosaic: float = param(1.0, "mosaic augmentation probability", minimum=0.0, maximum=1.0, advanced=True)
    iou: float = param(0.6, "NMS IoU", minimum=0.1, maximum=0.95, advanced=True)
    min_confidence: float = param(0.05, "detections below this are not kept (the GUI slider filters above it)", minimum=0.0, maximum=1.0, advanced=True)
    tile: int = param(800, "scenes larger than 1.5x this are cut into overlapping tiles (0: never)", minimum=0, maximum=8192, advanced=True)
    input_stretch: str = param("auto", "8-bit input stays; 16-bit/float SAR is stretched (percentile or dB)", choices=INPUT_CHOICES)
    speckle: str = param("none", "speckle filter before detection", choices=["none", "lee", "median"])
    seed: int = param(0, "random seed", advanced=True)


def _device_arg(device: Any) -> str:
    return "cpu" if device.type == "cpu" else str(device.index or 0)


def write_yolo_dataset(root: Path, splits: dict[str, TrainingSet], classes: Sequence[str], prepare: Any) -> Path:
    """A YOLO folder (written by `core.formats.yolo.write_yolo`) in a temporary place: ultralytics writes
    `labels.cache` beside the labels, so the user's folder is never used directly. With `prepare`, images
    are converted first (SAR stretch, speckle filter) and written as PNG. Returns data.yaml."""
    import yaml

    from anomaly_gui.core.formats.yolo import write_yolo
    from anomaly_gui.core.imageio import read_image, write_image

    staged: list[DatasetItem] = []
    for split, data in splits.items():
        for k, (it, boxes, labels) in enumerate(zip(data.items, data.boxes, data.labels)):
            path, (w, h) = it.path, (it.width, it.height)
            if prepare is not None:
                img = prepare(read_image(it.path))
                path = str(write_image(root / "prepared" / split / f"{k:06d}_{Path(it.path).stem}.png", img))
                w, h = img.shape[1], img.shape[0]
            anns = [make_box(*b, lab, 1.0) for b, lab in zip(boxes, labels)]
            for a in anns:
                a.score, a.source = None, "import"
            staged.append(DatasetItem(path=path, split=split, annotations=anns, width=w, height=h))
    out = write_yolo(staged, root / "yolo", classes=list(classes)).resolve()
    # ultralytics resolves a relative `path` against the working directory, not the YAML: make it absolute
    data_yaml = out / "data.yaml"
    spec = yaml.safe_load(data_yaml.read_text(encoding="utf-8"))
    spec["path"] = str(out)
    data_yaml.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return data_yaml


@register_engine
class YoloEngine(DetectionEngine):
    name = "yolo"
    title = "YOLO (ultralytics)"
    #: Python packages the engine imports; the GUI greys the engine with the install command when one is missing
    requires = ("ultralytics",)
    description = "Ultralytics YOLOv8/11 detector, trained from its yaml offline or fine-tuned from your .pt."
    rank = 1
    Params = YoloParams

    def __init__(self, params: Any | None = None, device: str = "auto", **overrides: Any):
        super().__init__(params, device, **overrides)
        self._yolo: Any = None

    # -- training ------------------------------------------------------------------------
    def fit(self, items: Sequence[DatasetItem], ctx: RunContext | None = None) -> None:
        ctx = ctx or RunContext()
        ultralytics_offline()
        from ultralytics import YOLO

        p = self.params
        train_items, val_items = train_val_split(items)
        data = check_training_items(train_items)
        if not data.items or not data.classes:
            raise DataError(items[0].path if items else ".", "no training image with boxes: nothing to learn")
        val = check_training_items(val_items, data.classes) if val_items else data
        source = p.model
        if source.endswith(".pt"):
            if not Path(source).expanduser().is_file():
                raise WeightsUnavailableError(f"{source}: YOLO weights file not found (nothing is downloaded)")
            ctx.log({"message": f"fine-tuning from {source}"})
        elif not source.endswith(".yaml"):
            raise DataError(source, "YOLO model must be an architecture .yaml or an ultralytics .pt file")
        self.stats = {"classes": data.classes, "problems": data.problems + (val.problems if val is not data else []),
                      "n_train": len(data.items), "n_val": len(val.items), "source_model": source}
        history: list[dict[str, Any]] = []
        total_epochs = p.epochs

        def on_batch(trainer: Any) -> None:
            if ctx.is_cancelled():
                raise Cancelled()
            nb = max(1, len(trainer.train_loader))
            done = trainer.epoch * nb + min(nb, getattr(trainer, "_ag_batch", 0) + 1)
            trainer._ag_batch = getattr(trainer, "_ag_batch", 0) + 1
            ctx.progress(done, total_epochs * nb, f"epoch {trainer.epoch + 1}/{total_epochs}")

        def on_epoch(trainer: Any) -> None:
            trainer._ag_batch = 0
            if trainer.epoch >= total_epochs:  # the final validation of the best model
                self.stats["final_val"] = {k: float(v) for k, v in (trainer.metrics or {}).items()}
                return
            m = trainer.metrics or {}
            loss = trainer.tloss
            entry = {"epoch": trainer.epoch + 1,
                     "loss": float(sum(loss.values()) if isinstance(loss, dict) else (loss.sum() if loss is not None else float("nan"))),
                     "map50": float(m.get("metrics/mAP50(B)", float("nan"))),
                     "map50_95": float(m.get("metrics/mAP50-95(B)", float("nan")))}
            history.append(entry)
            ctx.log(entry)

        tmp = Path(tempfile.mkdtemp(prefix="anomaly_gui-yolo-"))
        try:
            prep = None if p.input_stretch == "auto" and p.speckle == "none" else self._prepare
            data_yaml = write_yolo_dataset(tmp / "data", {"train": data, "val": val}, data.classes, prep)
            yolo = YOLO(str(Path(source).expanduser()) if source.endswith(".pt") else source, task="detect")
            yolo.add_callback("on_train_batch_end", on_batch)
            yolo.add_callback("on_fit_epoch_end", on_epoch)
            if self.device.type == "cuda":
                self._skip_amp_download()
            t0 = time.perf_counter()
            yolo.train(data=str(data_yaml), epochs=p.epochs, imgsz=p.imgsz, batch=p.batch, lr0=p.lr0, device=_device_arg(self.device),
                       workers=0, plots=False, project=str(tmp / "runs"), name="train", exist_ok=True, verbose=False,
                       seed=p.seed, deterministic=True, mosaic=p.mosaic, close_mosaic=0, cache=False, patience=0,
                       val=True, amp=self.device.type == "cuda", pretrained=source.endswith(".pt"))
            self.stats["fit_seconds"] = time.perf_counter() - t0
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.stats["history"] = history
        net = yolo.model
        net.names = {i: c for i, c in enumerate(data.classes)}
        self.stats["yaml"] = copy.deepcopy(net.yaml)
        self._set_network(net.float())
        self.fitted = True

    @staticmethod
    def _skip_amp_download() -> None:
        """ultralytics' AMP self-check downloads a reference model; offline we trust AMP on CUDA instead."""
        import ultralytics.engine.trainer as trainer_mod

        if hasattr(trainer_mod, "check_amp"):
            trainer_mod.check_amp = lambda model: True

    def _set_network(self, net: Any) -> None:
        from ultralytics import YOLO

        yolo = YOLO(self.stats.get("yaml", {}).get("yaml_file") or "yolov8n.yaml", task="detect")
        yolo.model = net.to(self.device).eval()
        self._yolo = yolo

    # -- inference -----------------------------------------------------------------------
    def predict_arrays(self, images: Sequence[np.ndarray]) -> list[list[Annotation]]:
        if self._yolo is None:
            raise RuntimeError("yolo: no model (fit or load first)")
        p = self.params
        bgr = [np.ascontiguousarray(im[:, :, ::-1]) for im in images]
        results = self._yolo.predict(bgr, imgsz=p.imgsz, conf=p.min_confidence, iou=p.iou, device=_device_arg(self.device),
                                     verbose=False, max_det=300)
        classes = self.classes
        out = []
        for r in results:
            b = r.boxes.xyxy.cpu().numpy()
            s = r.boxes.conf.cpu().numpy()
            c = r.boxes.cls.cpu().numpy().astype(int)
            out.append([make_box(*b[k], classes[c[k]] if c[k] < len(classes) else str(c[k]), s[k]) for k in range(len(s))])
        return out

    # -- persistence -----------------------------------------------------------------------
    def state_tensors(self) -> dict[str, Any]:
        if self._yolo is None:
            raise RuntimeError("yolo: nothing to save (not fitted)")
        return {k: v for k, v in self._yolo.model.state_dict().items()}

    def load_state_tensors(self, tensors: dict[str, Any]) -> None:
        ultralytics_offline()
        from ultralytics.nn.tasks import DetectionModel

        cfg = copy.deepcopy(self.stats.get("yaml"))
        if not cfg:
            raise RuntimeError("yolo model file has no architecture yaml in its metadata")
        net = DetectionModel(cfg=cfg, nc=len(self.classes), verbose=False)
        net.load_state_dict(tensors)
        net.names = {i: c for i, c in enumerate(self.classes)}
        self._set_network(net.float())
