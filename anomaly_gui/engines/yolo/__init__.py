"""Ultralytics YOLO detector. Default network: the ImageNet MobileNetV2 (from disk, never downloaded) as
the backbone of a small-object detector with a stride-4 output (`backbone.py`); also any ultralytics
architecture yaml (trained from scratch) or a user's ultralytics `.pt` (fine-tuned). Kept offline: no weight,
font or telemetry download is ever attempted.

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
    INPUT_CHOICES, DetectionEngine, TrainingSet, check_training_items, find_backbone_weights, make_box,
)

from anomaly_gui.engines.detection_common.calibration import calibrate
from anomaly_gui.engines.detection_common.cfar import CfarSettings
from anomaly_gui.engines.detection_common.postfit import CALIBRATION_FLOOR, REFINES, decide_views
from anomaly_gui.engines.detection_common.sampling import auto_scale
from anomaly_gui.engines.detection_common.tta import TTA_CHOICES, TTA_HELP, TTA_MERGE_HELP, TTA_MERGES, VIEWS, detect_views
from anomaly_gui.engines.yolo.backbone import KEPT_BLOCKS, MOBILENET_MODEL, imagenet_trainer, is_mobilenet, mobilenet_yaml
from anomaly_gui.engines.yolo.staging import crops_per_image, write_yolo_dataset

MODEL_CHOICES = [MOBILENET_MODEL, "yolov8n.yaml", "yolov8n-p2.yaml", "yolov8s.yaml", "yolo11n.yaml", "yolo11s.yaml"]
#: SAR-safe augmentation: flips both ways and a global gain (value jitter); no hue / saturation jitter,
#: no free rotation (it inflates axis-aligned boxes), mild rescaling so small ships stay several pixels
SAR_AUGMENT = {"hsv_h": 0.0, "hsv_s": 0.0, "hsv_v": 0.3, "fliplr": 0.5, "flipud": 0.5, "degrees": 0.0,
               "scale": 0.3, "translate": 0.1}
OPTIMIZERS = ["auto", "AdamW", "SGD"]
SATURATED_MAP50 = 0.99  # validation mAP50 counted as saturated (`stop_saturated`)
EPOCH_IMAGES = 96  # small datasets are repeated so an epoch has about this many images (validation stays a small part)


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
    off = {k: False for k in ("sync", "raytune", "wandb", "mlflow", "comet", "clearml", "dvc", "neptune", "tensorboard")
           if SETTINGS.get(k)}
    if off:
        SETTINGS.update(off)  # no telemetry, no experiment-tracker callbacks (Ray Tune's warns on every epoch)
    _no_font_download()
    return ultralytics


def _no_font_download() -> None:
    """ultralytics' dataset check fetches Arial.ttf (for plots, which we never draw) from the network when
    the font is not in its settings folder: replaced by a no-op in the modules that call it."""
    import ultralytics.data.utils as data_utils

    def check_font(font: str = "Arial.ttf") -> None:
        return None

    data_utils.check_font = check_font  # type: ignore[assignment]


@dataclass
class YoloParams:
    model: str = param(MOBILENET_MODEL, f"{MOBILENET_MODEL}: ImageNet MobileNetV2 backbone with a stride-4 head for small objects; "
                       "or an ultralytics architecture yaml (trained from scratch, offline); or a path to your ultralytics .pt to fine-tune",
                       choices=MODEL_CHOICES, editable=True)
    epochs: int = param(100, "most training epochs (training stops earlier when validation stops improving)", minimum=1, maximum=1000)
    patience: int = param(15, "stop after this many epochs without a better validation fitness (0: never stop early)", minimum=0, maximum=1000)
    max_minutes: float = param(10.0, "time budget for training in minutes (0: none); the best epoch so far is kept", minimum=0.0, maximum=10000.0)
    imgsz: int = param(0, "network input size in pixels (0: auto, the training images' size, upsampled when objects are tiny)", minimum=0, maximum=2048, step=32)
    crop: int = param(320, "training crop size at model scale: larger images are trained on crops around objects plus background "
                           "crops (validated on tiles) and detected whole (0: train on whole images)", minimum=0, maximum=2048, step=32)
    batch: int = param(8, "images per batch", minimum=1, maximum=256)
    lr0: float = param(0.01, "initial learning rate", minimum=1e-6, maximum=1.0, advanced=True)
    optimizer: str = param("SGD", "optimizer (auto: ultralytics picks AdamW or SGD by the number of iterations and ignores lr0)",
                           choices=OPTIMIZERS, advanced=True)
    warmup_epochs: float = param(0.5, "epochs of learning-rate warm-up (0: none)", minimum=0.0, maximum=100.0, advanced=True)
    accumulate: int = param(1, "batches whose gradients are summed before each optimizer step", minimum=1, maximum=64, advanced=True)
    mosaic: float = param(1.0, "mosaic augmentation probability", minimum=0.0, maximum=1.0, advanced=True)
    freeze_blocks: int = param(0, f"{MOBILENET_MODEL}: the first N MobileNetV2 blocks keep their ImageNet weights (faster steps; 0: all trained)",
                               minimum=0, maximum=KEPT_BLOCKS, advanced=True)
    stop_saturated: int = param(3, f"stop once the validation mAP50 has been at least {SATURATED_MAP50} for this many epochs in a row "
                                "(0: never; the best epoch is kept)", minimum=0, maximum=1000, advanced=True)
    augment: bool = param(True, "SAR-safe augmentation: flips, gain and mild rescaling (no colour jitter, no free rotation)")
    pretrained: bool = param(True, f"{MOBILENET_MODEL}: start from the MobileNetV2 ImageNet backbone when its weights are on disk")
    backbone_weights: str = param("", "MobileNetV2 ImageNet weights file (.pth/.safetensors); empty: the usual weights folders ($ANOMALY_GUI_WEIGHTS, torch's cache)", advanced=True)
    iou: float = param(0.6, "NMS IoU (also: boxes of the test-time views overlapping more are one object)", minimum=0.1, maximum=0.95, advanced=True)
    tta: str = param("flip_lr", TTA_HELP + " (default flip_lr: scene-grouped CV fold 0 mAP50 0.413 -> 0.442, decision 0018)", choices=TTA_CHOICES, advanced=True)
    tta_merge: str = param("wbf_mean", TTA_MERGE_HELP, choices=TTA_MERGES, advanced=True)
    min_confidence: float = param(0.05, "detections below this (calibrated) confidence are not kept (the GUI slider filters above it)", minimum=0.0, maximum=1.0, advanced=True)
    calibrate: bool = param(True, "calibrate confidences on the validation images so that 0.5 is the best F1 cut-off")
    box_refine: str = param("auto", "snap each box to the bright blob it overlaps (CFAR: pixels k local deviations above the local mean): "
                                    "cfar, none, or auto (cfar unless it lowers the validation mAP50)", choices=REFINES)
    cfar_window: int = param(151, "CFAR window side in image pixels (local mean and deviation)", minimum=3, maximum=4001, step=2, advanced=True)
    cfar_k: float = param(2.5, "CFAR: a pixel is bright above mean + k deviations", minimum=0.5, maximum=10.0, step=0.25, advanced=True)
    cfar_min_area: int = param(40, "CFAR: smaller blobs (pixels) are speckle", minimum=1, maximum=100000, advanced=True)
    cfar_split: bool = param(True, "CFAR snap: a box covering several blobs (ships moored side by side) gives one box per blob, each with its score", advanced=True)
    tile: int = param(800, "scenes larger than 1.5x this are cut into overlapping tiles (0: never)", minimum=0, maximum=8192, advanced=True)
    input_stretch: str = param("auto", "8-bit input stays; 16-bit/float SAR is stretched (percentile or dB)", choices=INPUT_CHOICES)
    speckle: str = param("none", "speckle filter before detection", choices=["none", "lee", "median"])
    seed: int = param(0, "random seed", advanced=True)


def _device_arg(device: Any) -> str:
    return "cpu" if device.type == "cpu" else str(device.index or 0)


@register_engine
class YoloEngine(DetectionEngine):
    name = "yolo"
    title = "YOLO (ultralytics)"
    #: Python packages the engine imports; the GUI greys the engine with the install command when one is missing
    requires = ("ultralytics",)
    description = ("Ultralytics YOLO with the ImageNet MobileNetV2 backbone and a stride-4 head for small objects (offline); "
                   "or a YOLOv8/11 yaml from scratch, or fine-tuned from your .pt.")
    rank = 1
    Params = YoloParams
    #: how model files written before these options were trained (ultralytics' own schedule)
    #: and scored (learnt boxes, raw confidences)
    params_before_they_existed = {"optimizer": "auto", "warmup_epochs": 3.0, "accumulate": 8, "freeze_blocks": 0,
                                  "stop_saturated": 0, "calibrate": False, "box_refine": "none", "cfar_split": False,
                                  "tta": "none", "tta_merge": "wbf_mean"}

    def __init__(self, params: Any | None = None, device: str = "auto", **overrides: Any):
        super().__init__(params, device, **overrides)
        self._yolo: Any = None

    # -- training ------------------------------------------------------------------------
    def _source(self, data: TrainingSet, ctx: RunContext) -> tuple[str, Any]:
        """(model argument for ultralytics, trainer class or None); writes our yaml when the default is chosen."""
        p = self.params
        source = p.model
        if source.endswith(".pt"):
            if not Path(source).expanduser().is_file():
                raise WeightsUnavailableError(f"{source}: YOLO weights file not found (nothing is downloaded)")
            ctx.log({"message": f"fine-tuning from {source}"})
            return str(Path(source).expanduser()), None
        if source == MOBILENET_MODEL:
            backbone = find_backbone_weights(p.backbone_weights) if p.pretrained else None
            self.stats["pretrained_backbone"] = str(backbone) if backbone else None
            if p.pretrained and backbone is None:
                ctx.log({"message": "MobileNetV2 ImageNet weights not found offline; training from scratch"})
            return "", imagenet_trainer(backbone) if backbone else None
        if not source.endswith(".yaml"):
            raise DataError(source, f"YOLO model must be {MOBILENET_MODEL}, an architecture .yaml or an ultralytics .pt file")
        return source, None

    def _imgsz(self, data: TrainingSet) -> int:
        """The network input: the training images' median long side, upsampled when the objects are tiny
        (as RetinaNet's `auto_scale`), in multiples of 32 (128-1280 px)."""
        if self.params.imgsz:
            return int(self.params.imgsz)
        side = float(np.median([max(it.width or 0, it.height or 0) for it in data.items]))
        return int(np.clip(np.ceil(side * auto_scale(data.boxes) / 32) * 32, 128, 1280))

    def _train_size(self, imgsz: int) -> tuple[int, int]:
        """(training input size, crop size for staging; 0: whole images): crops when the images at model
        scale are well over `crop` pixels."""
        crop = int(np.ceil(self.params.crop / 32) * 32)
        if crop and imgsz > crop * 1.25:
            return crop, crop
        return imgsz, 0

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
        self.stats = {"classes": data.classes, "problems": data.problems + (val.problems if val is not data else []),
                      "n_train": len(data.items), "n_val": len(val.items), "source_model": p.model}
        source, trainer = self._source(data, ctx)
        imgsz = self._imgsz(data)
        train_size, crop = self._train_size(imgsz)
        scale = imgsz / max(1.0, float(np.median([max(it.width or 0, it.height or 0) for it in data.items])))
        n_train = sum(crops_per_image(len(b)) for b in data.boxes) if crop else len(data.items)
        repeats = max(1, int(np.ceil(EPOCH_IMAGES / max(1, n_train))))
        self.stats.update({"imgsz": imgsz, "train_imgsz": train_size, "crop": crop, "repeats": repeats})
        history: list[dict[str, Any]] = []
        total_epochs = p.epochs
        t0 = time.perf_counter()

        def on_start(trainer_: Any) -> None:
            # what ultralytics actually uses ('auto' picks its own optimizer and lr0)
            self.stats["schedule"] = {"optimizer": str(trainer_.args.optimizer), "lr0": float(trainer_.args.lr0),
                                      "accumulate": int(trainer_.accumulate), "warmup_epochs": float(trainer_.args.warmup_epochs),
                                      "batches_per_epoch": len(trainer_.train_loader)}

        def on_batch(trainer_: Any) -> None:
            if ctx.is_cancelled():
                raise Cancelled()
            nb = max(1, len(trainer_.train_loader))
            done = trainer_.epoch * nb + min(nb, getattr(trainer_, "_ag_batch", 0) + 1)
            trainer_._ag_batch = getattr(trainer_, "_ag_batch", 0) + 1
            ctx.progress(done, total_epochs * nb, f"epoch {trainer_.epoch + 1}/{total_epochs}")

        def on_epoch(trainer_: Any) -> None:
            trainer_._ag_batch = 0
            m = trainer_.metrics or {}
            if not getattr(trainer_, "_ag_trained", False):
                # no training epoch since the last report: the final validation of the best weights
                self.stats["final_val"] = {k: float(v) for k, v in m.items()}
                return
            trainer_._ag_trained = False
            loss = trainer_.tloss
            entry = {"epoch": trainer_.epoch + 1,
                     "loss": float(sum(loss.values()) if isinstance(loss, dict) else (loss.sum() if loss is not None else float("nan"))),
                     "map50": float(m.get("metrics/mAP50(B)", float("nan"))),
                     "map50_95": float(m.get("metrics/mAP50-95(B)", float("nan"))),
                     "seconds": round(time.perf_counter() - t0, 1)}
            history.append(entry)
            ctx.log(entry)
            run = 0
            for e in reversed(history):
                if not e["map50"] >= SATURATED_MAP50:
                    break
                run += 1
            if p.stop_saturated and run >= p.stop_saturated:
                trainer_.stop = True  # ultralytics then keeps its best epoch
                self.stats["stopped"] = f"validation mAP50 >= {SATURATED_MAP50} for {run} epochs"
            if p.max_minutes and time.perf_counter() - t0 >= p.max_minutes * 60:
                trainer_.stop = True  # ultralytics then keeps its best epoch
                self.stats["stopped"] = "time budget"

        tmp = Path(tempfile.mkdtemp(prefix="anomaly_gui-yolo-"))
        try:
            prep = None if p.input_stretch == "auto" and p.speckle == "none" else self._prepare
            data_yaml = write_yolo_dataset(tmp / "data", {"train": data, "val": val}, data.classes, prep, repeats=repeats,
                                           crop=crop, scale=scale, seed=p.seed)
            if not source:  # our MobileNetV2 network, as a yaml file ultralytics can read
                import yaml

                source = str(tmp / f"{MOBILENET_MODEL}.yaml")
                Path(source).write_text(yaml.safe_dump(mobilenet_yaml(len(data.classes)), sort_keys=False), encoding="utf-8")
            yolo = YOLO(source, task="detect")
            yolo.add_callback("on_train_start", on_start)
            yolo.add_callback("on_train_batch_end", on_batch)
            yolo.add_callback("on_train_epoch_end", lambda t: setattr(t, "_ag_trained", True))
            yolo.add_callback("on_fit_epoch_end", on_epoch)
            if self.device.type == "cuda":
                self._skip_amp_download()
            freeze = [f"0.m.{i}" for i in range(p.freeze_blocks)] if p.model == MOBILENET_MODEL and p.freeze_blocks else None
            augment = SAR_AUGMENT if p.augment else {k: 0.0 for k in SAR_AUGMENT}
            yolo.train(data=str(data_yaml), epochs=p.epochs, imgsz=train_size, batch=p.batch, lr0=p.lr0, optimizer=p.optimizer, warmup_epochs=p.warmup_epochs,
                       nbs=p.batch * p.accumulate, device=_device_arg(self.device),
                       workers=0, plots=False, project=str(tmp / "runs"), name="train", exist_ok=True, verbose=False,
                       seed=p.seed, deterministic=True, mosaic=p.mosaic if p.augment else 0.0, close_mosaic=0, cache=True,
                       patience=p.patience or 10_000, val=True, amp=self.device.type == "cuda", pretrained=source.endswith(".pt"),
                       freeze=freeze, trainer=trainer, **augment)
            self.stats["fit_seconds"] = time.perf_counter() - t0
            best = max(history, key=lambda e: (e["map50_95"] * 0.9 + e["map50"] * 0.1)) if history else {}
            self.stats.update({"best_epoch": best.get("epoch"), "val_map50": best.get("map50"), "val_map50_95": best.get("map50_95")})
            if "stopped" not in self.stats and len(history) < p.epochs:
                self.stats["stopped"] = "no better validation fitness"
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.stats["history"] = history
        net = yolo.model
        net.names = {i: c for i, c in enumerate(data.classes)}
        cfg = copy.deepcopy(net.yaml)
        cfg.pop("yaml_file", None) if is_mobilenet(cfg) else None  # our temporary file is gone; the dict is the architecture
        self.stats["yaml"] = cfg
        self._set_network(net.float())
        self.fitted = True
        self._decide_after_fit(data, val, ctx)

    def _decide_after_fit(self, data: TrainingSet, val: TrainingSet, ctx: RunContext) -> None:
        """`box_refine` auto and the confidence calibration, on the validation images (the training images when
        there is no validation object)."""
        from anomaly_gui.core.imageio import read_image

        p = self.params
        on_val = any(len(b) for b in val.boxes)
        ref = val if on_val else data
        images = [self._prepare(read_image(it.path)) for it in ref.items]
        self.stats.update({"score_shift": 0.0, "box_refine": p.box_refine if p.box_refine != "auto" else "none"})
        # one network pass per D4 view: the refine choice with the model's own views, a calibration for every view set
        if p.box_refine != "auto" and not p.calibrate:
            return
        views_found = self._views_found(images, tuple(VIEWS), CALIBRATION_FLOOR)
        self.stats.update(decide_views(views_found, images, ref, self._label_name, tta=str(p.tta), merge=p.tta_merge, iou=self._views_iou(),
                                       refine=p.box_refine, cfar=CfarSettings(window=p.cfar_window, k=p.cfar_k, min_area=p.cfar_min_area),
                                       split=p.cfar_split, min_confidence=p.min_confidence, calibrate=p.calibrate, floor=CALIBRATION_FLOOR))
        if "box_refine_validation" in self.stats:
            ctx.log({"message": f"box_refine auto: {self.stats['box_refine']} (validation mAP50 / mAP50-95 "
                                + ", ".join(f"{k} {v[0]:.3f} / {v[1]:.3f}" for k, v in self.stats["box_refine_validation"].items()) + ")"})
        if p.calibrate:
            self.stats["calibrated_on"] = "validation" if on_val else "training"
            ctx.log({"message": f"confidence calibrated on the {self.stats['calibrated_on']} images: raw "
                                f"{self.stats['raw_threshold']:.3f} -> 0.5 (F1 {self.stats['calibration_f1']:.3f})"})

    @staticmethod
    def _skip_amp_download() -> None:
        """ultralytics' AMP self-check downloads a reference model; offline we trust AMP on CUDA instead."""
        import ultralytics.engine.trainer as trainer_mod

        if hasattr(trainer_mod, "check_amp"):
            trainer_mod.check_amp = lambda model: True

    def _set_network(self, net: Any) -> None:
        from ultralytics import YOLO

        # a shell for ultralytics' predictor; the network (any architecture) replaces its model
        yolo = YOLO("yolov8n.yaml", task="detect")
        yolo.model = net.to(self.device).eval()
        self._yolo = yolo

    # -- inference -----------------------------------------------------------------------
    def _views_found(self, images: Sequence[np.ndarray], views: Sequence[str], floor: float) -> list[dict[str, dict[str, np.ndarray]]]:
        if self._yolo is None:
            raise RuntimeError("yolo: no model (fit or load first)")
        per_image = detect_views(lambda ims: self._detect_once(ims, floor), images, views)
        return [dict(zip(views, found)) for found in per_image]

    def _views_iou(self) -> float:
        return float(self.params.iou)

    def _detect_once(self, images: Sequence[np.ndarray], conf: float) -> list[dict[str, np.ndarray]]:
        """One network pass (ultralytics' NMS at `iou`): per image boxes, raw scores, class indices."""
        p = self.params
        bgr = [np.ascontiguousarray(im[:, :, ::-1]) for im in images]
        results = self._yolo.predict(bgr, imgsz=int(self.stats.get("imgsz") or p.imgsz or 640), conf=conf, iou=p.iou, device=_device_arg(self.device),
                                     verbose=False, max_det=300)
        return [{"boxes": r.boxes.xyxy.cpu().numpy().astype(np.float64), "scores": r.boxes.conf.cpu().numpy().astype(np.float64),
                 "labels": r.boxes.cls.cpu().numpy().astype(int)} for r in results]

    def predict_arrays(self, images: Sequence[np.ndarray]) -> list[list[Annotation]]:
        shift = self._score_shift()
        classes = self.classes
        out = []
        for f in self._raw(images):
            b, c = f["boxes"], f["labels"]
            s = calibrate(f["scores"], shift) if shift else f["scores"]
            out.append([make_box(*b[k], classes[c[k]] if c[k] < len(classes) else str(c[k]), s[k])
                        for k in range(len(s)) if s[k] >= self.params.min_confidence])
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
