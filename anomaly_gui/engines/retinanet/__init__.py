"""RetinaNet detector (torchvision) with a MobileNetV2 ImageNet backbone when its weights are on disk,
trained from scratch otherwise. Small input sizes keep it usable on a CPU."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.formats.base import Annotation, DatasetItem
from anomaly_gui.core.imageio import read_image
from anomaly_gui.engines.base import RunContext, param, register_engine
from anomaly_gui.core.splits import train_val_split
from anomaly_gui.engines.detection_common import (
    INPUT_CHOICES, DetectionEngine, check_training_items, make_box,
)
from anomaly_gui.engines.retinanet.model import build_retinanet, find_backbone_weights


@dataclass
class RetinaNetParams:
    epochs: int = param(20, "training epochs", minimum=1, maximum=1000)
    image_size: int = param(512, "images are resized so their longer side is this (pixels)", minimum=128, maximum=2048, step=32)
    batch: int = param(4, "images per batch", minimum=1, maximum=64)
    lr: float = param(0.0005, "AdamW learning rate (higher values made the focal loss jump on HRSID)", minimum=1e-6, maximum=1.0)
    pretrained: bool = param(True, "start from the MobileNetV2 ImageNet backbone when its weights are on disk")
    backbone_weights: str = param("", "MobileNetV2 ImageNet weights file (.pth/.safetensors); empty: the usual weights folders ($ANOMALY_GUI_WEIGHTS, torch's cache)", advanced=True)
    anchor_base: int = param(8, "smallest anchor (pixels at model input); SAR ships are often under 16 px", minimum=4, maximum=128, advanced=True)
    fpn_channels: int = param(64, "feature pyramid width", minimum=16, maximum=256, advanced=True)
    min_confidence: float = param(0.05, "detections below this are not kept (the GUI slider filters above it)", minimum=0.0, maximum=1.0, advanced=True)
    tile: int = param(800, "scenes larger than 1.5x this are cut into overlapping tiles (0: never)", minimum=0, maximum=8192, advanced=True)
    input_stretch: str = param("auto", "8-bit input stays; 16-bit/float SAR is stretched (percentile or dB)", choices=INPUT_CHOICES)
    speckle: str = param("none", "speckle filter before detection", choices=["none", "lee", "median"])
    seed: int = param(0, "random seed", advanced=True)


@register_engine
class RetinaNetEngine(DetectionEngine):
    name = "retinanet"
    title = "RetinaNet (MobileNetV2)"
    description = ("torchvision RetinaNet on a MobileNetV2 feature pyramid; ImageNet backbone when available offline. "
                   "Offered first: mAP@0.5 0.208 on held-back HRSID chips after 211 s of CPU training, where YOLO "
                   "from scratch (no pretrained weights offline) reached 0.0 in 305 s (docs/decisions/0005).")
    rank = 0
    Params = RetinaNetParams

    def __init__(self, params: Any | None = None, device: str = "auto", **overrides: Any):
        super().__init__(params, device, **overrides)
        self.model: torch.nn.Module | None = None

    # -- model ---------------------------------------------------------------------------
    def _build(self, n_classes: int, backbone: Any = None) -> torch.nn.Module:
        p = self.params
        frozen = bool(self.stats.get("frozen_bn", backbone is not None))
        return build_retinanet(n_classes + 1, min_size=p.image_size, max_size=p.image_size, backbone_path=backbone,
                               fpn_channels=p.fpn_channels, score_thresh=p.min_confidence,
                               anchor_base=p.anchor_base, frozen_bn=frozen).to(self.device)

    def _tensor(self, rgb: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(rgb, dtype=np.uint8, copy=True)).permute(2, 0, 1).float().div_(255.0).to(self.device)

    # -- training ------------------------------------------------------------------------
    def fit(self, items: Sequence[DatasetItem], ctx: RunContext | None = None) -> None:
        from anomaly_gui.core.metrics.detection import Boxes, mean_average_precision

        ctx = ctx or RunContext()
        p = self.params
        torch.manual_seed(p.seed)
        rng = np.random.default_rng(p.seed)
        train_items, val_items = train_val_split(items)
        data = check_training_items(train_items)
        if not data.items or not data.classes:
            raise DataError(items[0].path if items else ".", "no training image with boxes: nothing to learn")
        val = check_training_items(val_items, data.classes)
        backbone = find_backbone_weights(p.backbone_weights) if p.pretrained else None
        self.stats = {"classes": data.classes, "pretrained_backbone": str(backbone) if backbone else None,
                      "problems": data.problems + val.problems, "n_train": len(data.items), "n_val": len(val.items),
                      "frozen_bn": backbone is not None}
        if p.pretrained and backbone is None:
            ctx.log({"message": "MobileNetV2 ImageNet weights not found offline; training from scratch"})
        self.model = self._build(len(data.classes), backbone)
        cls_index = {c: i + 1 for i, c in enumerate(data.classes)}
        images = [self._prepare(read_image(it.path)) for it in data.items]
        params = [q for q in self.model.parameters() if q.requires_grad]
        opt = torch.optim.AdamW(params, lr=p.lr, weight_decay=1e-4)
        n = len(images)
        steps = max(1, (n + p.batch - 1) // p.batch)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=p.lr, total_steps=p.epochs * steps, pct_start=0.2)
        t0 = time.perf_counter()
        history = []
        for epoch in range(p.epochs):
            self.model.train()
            order = rng.permutation(n)
            losses = []
            for s in range(steps):
                ctx.check()
                idx = order[s * p.batch : (s + 1) * p.batch]
                imgs, targets = [], []
                for i in idx:
                    img, boxes = images[i], data.boxes[i].copy()
                    if rng.random() < 0.5:  # horizontal flip
                        img = img[:, ::-1]
                        w = img.shape[1]
                        boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
                    imgs.append(self._tensor(img))
                    targets.append({"boxes": torch.as_tensor(boxes, dtype=torch.float32, device=self.device),
                                    "labels": torch.as_tensor([cls_index[c] for c in data.labels[i]], dtype=torch.int64,
                                                              device=self.device)})
                loss_dict = self.model(imgs, targets)
                loss = sum(loss_dict.values())
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 10.0)
                opt.step()
                sched.step()
                losses.append(float(loss.detach()))
                ctx.progress(epoch * steps + s + 1, p.epochs * steps, f"epoch {epoch + 1}/{p.epochs}")
            entry: dict[str, Any] = {"epoch": epoch + 1, "loss": float(np.mean(losses))}
            if val.items:
                self.fitted = True
                preds = self.predict_arrays([self._prepare(read_image(it.path)) for it in val.items])
                res = mean_average_precision([Boxes(b, l) for b, l in zip(val.boxes, val.labels)],
                                             [Boxes.from_annotations(pb, with_scores=True) for pb in preds])
                entry.update({"map50": res.map50, "map50_95": res.map50_95})
            history.append(entry)
            ctx.log(entry)
        self.stats.update({"fit_seconds": time.perf_counter() - t0, "history": history})
        self.fitted = True

    # -- inference -----------------------------------------------------------------------
    @torch.no_grad()
    def predict_arrays(self, images: Sequence[np.ndarray]) -> list[list[Annotation]]:
        if self.model is None:
            raise RuntimeError("retinanet: no model (fit or load first)")
        self.model.eval()
        outs = self.model([self._tensor(im) for im in images])
        classes = self.classes
        result = []
        for o in outs:
            b, s, lab = o["boxes"].cpu().numpy(), o["scores"].cpu().numpy(), o["labels"].cpu().numpy()
            result.append([make_box(*b[k], classes[int(lab[k]) - 1] if 0 < lab[k] <= len(classes) else str(int(lab[k])), s[k])
                           for k in range(len(s)) if s[k] >= self.params.min_confidence])
        return result

    # -- persistence -----------------------------------------------------------------------
    def state_tensors(self) -> dict[str, Any]:
        if self.model is None:
            raise RuntimeError("retinanet: nothing to save (not fitted)")
        return {k: v for k, v in self.model.state_dict().items()}

    def load_state_tensors(self, tensors: dict[str, Any]) -> None:
        self.model = self._build(len(self.classes), None)
        self.model.load_state_dict(tensors)
        self.model.eval()
