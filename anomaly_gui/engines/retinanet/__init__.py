"""RetinaNet detector (torchvision) for small objects: MobileNetV2 ImageNet backbone when its weights are on
disk (from scratch otherwise), a stride-4 feature pyramid, object-centred training crops with SAR-safe
augmentation, early stopping on validation mAP and confidences calibrated so that 0.5 is a sensible
cut-off. See README.md beside this file for the figures on real HRSID chips."""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.formats.base import Annotation, DatasetItem
from anomaly_gui.core.imageio import read_image
from anomaly_gui.engines.base import RunContext, param, register_engine
from anomaly_gui.core.splits import train_val_split
from anomaly_gui.engines.detection_common import (
    INPUT_CHOICES, DetectionEngine, TrainingSet, check_training_items, make_box,
)
from anomaly_gui.engines.detection_common.calibration import calibrate
from anomaly_gui.engines.detection_common.cfar import CfarSettings, bright_blobs, snap_to_blobs
from anomaly_gui.engines.detection_common.postfit import CALIBRATION_FLOOR, decide_views
from anomaly_gui.engines.detection_common.sampling import auto_scale, training_sample
from anomaly_gui.engines.detection_common.tta import (
    TTA_CHOICES, TTA_HELP, TTA_MERGE_HELP, TTA_MERGES, VIEWS, fuse_variants, unview_boxes,
)
from anomaly_gui.engines.retinanet.model import DETECTORS, build_detector, find_backbone_weights


MERGES = ["nms", "wbf"]
REFINES = ["auto", "cfar", "none"]
BOX_LOSSES = ["l1", "giou"]
KEEPS = ["best", "last"]


@dataclass
class RetinaNetParams:
    detector: str = param("retinanet", "retinanet: anchor boxes (sizes from `anchor_base`); fcos: anchor-free, every pyramid cell near a box's centre regresses its sides", choices=DETECTORS)
    steps: int = param(300, "training steps (batches of crops): the learning rate warms up, then decays to zero over them", minimum=1, maximum=1_000_000)
    epochs: int = param(200, "most epochs (an epoch ends with a validation; training also ends after `steps`)", minimum=1, maximum=1000)
    anneal_after: int = param(150, "a perfect validation mAP50 reached after this many steps ends training early (learning rate annealed to zero over a shorter end phase)", minimum=0, maximum=1_000_000, advanced=True)
    keep_epoch: str = param("last", "weights kept at the end: last (the averaged weights where training ended; validation decides when to stop) or best (the epoch with the best validation mAP: on 2-4 validation chips often an early, barely trained one)", choices=KEEPS)
    patience: int = param(6, "after half the steps, stop when this many epochs bring no better validation mAP50 (0: never stop early)", minimum=0, maximum=1000)
    max_minutes: float = param(10.0, "time budget for training in minutes (0: none); the best epoch so far is kept", minimum=0.0, maximum=10000.0)
    crop: int = param(160, "training crop size in pixels at model scale (larger images are cropped around objects and background)", minimum=64, maximum=2048, step=32)
    crops_per_epoch: int = param(0, "training crops per epoch (0: 1 megapixel of crops or the validation images' pixels, whichever is more; at least two per training image)", minimum=0, maximum=100000, advanced=True)
    scale: float = param(0.0, "image scale fed to the network (0: auto, from the training boxes: upsample when objects are tiny)", minimum=0.0, maximum=8.0, step=0.25)
    batch: int = param(8, "crops per training batch (images per batch when detecting)", minimum=1, maximum=64)
    lr: float = param(0.001, "AdamW learning rate (warm-up, then cosine decay)", minimum=1e-6, maximum=1.0)
    augment: bool = param(True, "flips, 90-degree rotations, gain and speckle on training crops")
    calibrate: bool = param(True, "calibrate confidences on validation images so 0.5 is the best F1 cut-off")
    pretrained: bool = param(True, "start from the MobileNetV2 ImageNet backbone when its weights are on disk")
    backbone_weights: str = param("", "MobileNetV2 ImageNet weights file (.pth/.safetensors); empty: the usual weights folders ($ANOMALY_GUI_WEIGHTS, torch's cache)", advanced=True)
    anchor_base: int = param(0, "smallest anchor at stride 4 (pixels at model scale), doubling per pyramid level; 0: auto (8 or 16, from the small training boxes)", minimum=0, maximum=128, advanced=True)
    anchor_aspects: str = param("0.5,1,2", "anchor aspect ratios (height / width), comma-separated; auto: 0.5,1,2 plus 0.25,4 when at least 10 % of the training boxes are 3x longer than wide", advanced=True)
    box_loss: str = param("l1", "box regression loss: l1 on the anchor offsets, or giou (generalised IoU of the boxes)", choices=BOX_LOSSES, advanced=True)
    fpn_channels: int = param(48, "feature pyramid width", minimum=16, maximum=256, advanced=True)
    head_convs: int = param(2, "convolutions in each head tower", minimum=1, maximum=4, advanced=True)
    snapshots: int = param(1, "checkpoint ensemble: fuse the boxes of this many of the run's best validated epochs (weighted box fusion, as test-time flips); no extra training, Nx slower detection", minimum=1, maximum=8)
    tta: str = param("none", TTA_HELP, choices=TTA_CHOICES, advanced=True)
    tta_merge: str = param("wbf_mean", TTA_MERGE_HELP + " (boxes overlapping more than `merge_iou` are one object)", choices=TTA_MERGES, advanced=True)
    box_merge: str = param("wbf", "overlapping detections of one object: nms keeps the strongest; wbf averages their boxes weighted by score (weighted box fusion)", choices=MERGES, advanced=True)
    merge_iou: float = param(0.2, "detections overlapping more than this IoU are one object (for nms and wbf)", minimum=0.05, maximum=0.95, step=0.05, advanced=True)
    box_refine: str = param("auto", "snap each box to the bright blob it overlaps (CFAR: pixels k local deviations above the local mean): cfar, none, or auto (cfar when it scores better on the validation images)", choices=REFINES)
    cfar_window: int = param(151, "CFAR window side in image pixels (local mean and deviation)", minimum=3, maximum=4001, step=2, advanced=True)
    cfar_k: float = param(2.5, "CFAR: a pixel is bright above mean + k deviations", minimum=0.5, maximum=10.0, step=0.25, advanced=True)
    cfar_split: bool = param(True, "CFAR snap: a box covering several blobs (ships moored side by side) gives one box per blob, each with its score")
    cfar_min_area: int = param(40, "CFAR: smaller blobs (pixels) are speckle", minimum=1, maximum=100000, advanced=True)
    min_confidence: float = param(0.01, "detections below this (calibrated) confidence are not kept (the GUI slider filters above it); low, because a weakly trained model calibrates its true boxes low (CV: 0.05 -> 0.01 raised one seed from 0.80 to 0.84)", minimum=0.0, maximum=1.0, advanced=True)
    tile: int = param(800, "scenes larger than 1.5x this are cut into overlapping tiles (0: never)", minimum=0, maximum=8192, advanced=True)
    input_stretch: str = param("auto", "8-bit input stays; 16-bit/float SAR is stretched (percentile or dB)", choices=INPUT_CHOICES)
    speckle: str = param("none", "speckle filter before detection", choices=["none", "lee", "median"])
    seed: int = param(0, "random seed", advanced=True)


def load_weights(model: torch.nn.Module, tensors: dict[str, Any]) -> None:
    """load_state_dict with the module versions of `model`: a plain dict has none, and torchvision's
    RetinaNet heads then rename keys as if they came from an old release."""
    from collections import OrderedDict

    state = OrderedDict(tensors)
    state._metadata = getattr(model.state_dict(), "_metadata", None)  # type: ignore[attr-defined]
    model.load_state_dict(state)


EPOCH_PIXELS = 1_000_000
WBF_PRE_NMS = 0.9  # the network's own NMS before a weighted box fusion
SNAPSHOT_PREFIX = "snapshot"  # model-file tensors of the checkpoint ensemble: snapshot<i>.<name>


class ModelEMA:
    """Exponential moving average of the weights (decay ramps up over the first steps, as in YOLO
    training): validation mAP of a small dataset jumps from epoch to epoch without it."""

    def __init__(self, model: torch.nn.Module, decay: float = 0.98):
        self.decay, self.steps = decay, 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.steps += 1
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                self.shadow[k].copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in self.shadow.items()}


def auto_anchor(boxes: Sequence[np.ndarray], scale: float) -> int:
    """The power of two (4 to 32) nearest the 10th percentile of the training boxes' size (sqrt of the
    area, at model scale): the stride-4 anchors then fit the smallest objects."""
    sizes = np.concatenate([np.sqrt((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])) for b in boxes if len(b)] or [np.zeros(0)])
    if not len(sizes):
        return 8
    p10 = max(float(np.percentile(sizes, 10)) * scale, 1.0)
    return int(np.clip(2 ** round(np.log2(p10)), 4, 32))


def anchor_aspects(spec: str, boxes: Sequence[np.ndarray], where: Any = ".") -> tuple[float, ...]:
    """Anchor aspect ratios (h / w) from the `anchor_aspects` parameter; `auto` adds 1:4 and 4:1 to 1:2, 1:1,
    2:1 when at least 10 % of the training boxes are elongated (long side >= 3x the short side)."""
    if spec.strip().lower() != "auto":
        try:
            values = tuple(float(v) for v in spec.split(",") if v.strip())
        except ValueError:
            values = ()
        if not values or min(values) <= 0:
            raise DataError(where, f"anchor_aspects {spec!r}: give positive numbers separated by commas, or auto")
        return values
    b = np.concatenate([x for x in boxes if len(x)] or [np.zeros((0, 4))])
    w, h = (b[:, 2] - b[:, 0]).clip(1e-6), (b[:, 3] - b[:, 1]).clip(1e-6)
    elongated = float(np.mean(np.maximum(w / h, h / w) >= 3.0)) if len(b) else 0.0
    return (0.25, 0.5, 1.0, 2.0, 4.0) if elongated >= 0.1 else (0.5, 1.0, 2.0)


@register_engine
class RetinaNetEngine(DetectionEngine):
    name = "retinanet"
    title = "RetinaNet (MobileNetV2)"
    description = ("torchvision RetinaNet on a stride-4 MobileNetV2 feature pyramid (ImageNet backbone when available offline), "
                   "trained on crops around objects with SAR-safe augmentation; calibrated confidences. Offered first: "
                   "YOLO from scratch (no pretrained weights offline) found no ship on held-back HRSID chips.")
    rank = 0
    Params = RetinaNetParams
    # model files from before the fusion were calibrated on non-maximum suppression at IoU 0.5
    # and from before the box refinement kept their learnt boxes
    params_before_they_existed = {"box_merge": "nms", "merge_iou": 0.5, "box_refine": "none", "cfar_split": False}

    def __init__(self, params: Any | None = None, device: str = "auto", **overrides: Any):
        super().__init__(params, device, **overrides)
        self.model: torch.nn.Module | None = None
        self._training = False  # True while fitting: validation then skips test-time flips
        #: networks of earlier checkpoints of the same run whose boxes are fused with the model's (`snapshots`)
        self.snapshot_models: list[torch.nn.Module] = []
        #: called after each epoch with (engine, log entry) while the EMA weights are loaded; what it returns is
        #: added to the entry (benchmarks/detection_cv.py measures mAP on other chips per epoch with it)
        self.epoch_hook: Callable[[Any, dict[str, Any]], dict[str, Any] | None] | None = None

    # -- model ---------------------------------------------------------------------------
    def _build(self, n_classes: int, backbone: Any = None) -> torch.nn.Module:
        p = self.params
        frozen = bool(self.stats.get("frozen_bn", backbone is not None))
        model = build_detector(str(self.stats.get("detector", "retinanet")), n_classes + 1, backbone_path=backbone, scale=float(self.stats.get("scale", 1.0)),
                               fpn_channels=p.fpn_channels, score_thresh=0.01, anchor_base=int(self.stats.get("anchor_base") or p.anchor_base or 8),
                               head_convs=p.head_convs, frozen_bn=frozen, box_loss=str(self.stats.get("box_loss", "l1")),
                               aspects=tuple(self.stats.get("anchor_aspects", (0.5, 1.0, 2.0)))).to(self.device)
        if self.device.type == "cpu":  # oneDNN convolutions are faster channels-last (a training step ~15 %)
            model = model.to(memory_format=torch.channels_last)
        return model

    def _tensor(self, rgb: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(rgb, dtype=np.uint8, copy=True)).permute(2, 0, 1).float().div_(255.0).to(self.device)

    # -- training ------------------------------------------------------------------------
    def fit(self, items: Sequence[DatasetItem], ctx: RunContext | None = None) -> None:
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
        scale = float(p.scale) if p.scale > 0 else auto_scale(data.boxes)
        anchor = int(p.anchor_base) if p.anchor_base > 0 else auto_anchor(data.boxes, scale)
        aspects = anchor_aspects(p.anchor_aspects, data.boxes, items[0].path if items else ".")
        self.stats = {"classes": data.classes, "pretrained_backbone": str(backbone) if backbone else None,
                      "problems": data.problems + val.problems, "n_train": len(data.items), "n_val": len(val.items),
                      "frozen_bn": backbone is not None, "detector": p.detector, "scale": scale, "anchor_base": anchor, "anchor_aspects": list(aspects),
                      "box_loss": p.box_loss, "score_shift": 0.0}
        if p.pretrained and backbone is None:
            ctx.log({"message": "MobileNetV2 ImageNet weights not found offline; training from scratch"})
        self.model = self._build(len(data.classes), backbone)
        self.snapshot_models = []  # a new run: validation scores the model alone; `_train` keeps the new ones
        images = [self._prepare(read_image(it.path)) for it in data.items]
        val_images = [self._prepare(read_image(it.path)) for it in val.items]
        self._training = True
        try:
            history, best = self._train(images, data, val_images, val, scale, rng, ctx)
        finally:
            self._training = False
        self.fitted = True
        on_val = any(len(b) for b in val.boxes)
        ref, ref_images = (val, val_images) if on_val else (data, images)
        # no validation object: the learnt boxes (as before)
        p_refine = "none" if not on_val and p.box_refine == "auto" else p.box_refine
        self.stats["box_refine"] = p_refine
        # one network pass per D4 view: the refine choice with the model's own views, a calibration for every view set
        if p_refine == "auto" or p.calibrate:
            self.stats.update(decide_views(self._views_found(ref_images, tuple(VIEWS), CALIBRATION_FLOOR), ref_images, ref, self._label_name,
                                           tta=str(p.tta), merge=p.tta_merge, iou=self._merge_iou(), refine=p_refine,
                                           cfar=CfarSettings(window=p.cfar_window, k=p.cfar_k, min_area=p.cfar_min_area), split=p.cfar_split,
                                           min_confidence=p.min_confidence, calibrate=p.calibrate, floor=CALIBRATION_FLOOR))
        if "box_refine_validation" in self.stats:  # the run log (the GUI's too) says what auto chose and why
            ctx.log({"message": f"box_refine auto: {self.stats['box_refine']} (validation mAP50 / mAP50-95 "
                                + ", ".join(f"{k} {v[0]:.3f} / {v[1]:.3f}" for k, v in self.stats["box_refine_validation"].items()) + ")"})
        if p.calibrate:
            self.stats["calibrated_on"] = "validation" if on_val else "training"
        self.stats.update({"history": history, **best})

    def _validation_map(self, images: list[np.ndarray], val: TrainingSet) -> tuple[float, float]:
        """(mAP50, mAP50-95) on the validation images."""
        from anomaly_gui.core.metrics.detection import Boxes, mean_average_precision

        preds = self.predict_arrays(images)
        res = mean_average_precision([Boxes(b, lab) for b, lab in zip(val.boxes, val.labels)],
                                     [Boxes.from_annotations(pb, with_scores=True) for pb in preds])
        return float(res.map50), float(res.map50_95)

    def _choose_refine(self, val_images: list[np.ndarray], val: TrainingSet) -> str:
        """`box_refine` as decided for this model: auto keeps the CFAR blob boxes unless they lower the mAP50 on
        the validation images (data whose objects are not bright blobs keeps its learnt boxes). mAP50-95 does not
        decide: on 2-3 validation chips it preferred the learnt boxes in one CV fold where the blobs then
        scored 0.98 against 0.77 on the fold's held-out chips (decision 0023)."""
        choice = self.params.box_refine
        if choice != "auto":
            return choice
        if not any(len(b) for b in val.boxes):
            return "none"
        scores = {}
        for option in ("none", "cfar"):
            self.stats["box_refine"] = option
            scores[option] = tuple(round(v, 4) for v in self._validation_map(val_images, val))
        self.stats["box_refine_validation"] = {k: list(v) for k, v in scores.items()}
        return "cfar" if scores["cfar"][0] >= scores["none"][0] else "none"

    def _refining(self) -> bool:
        return super()._refining() and not self._training  # per-epoch validation ranks the network's own boxes

    def _batch_maker(self, images: list[np.ndarray], data: TrainingSet, crop: int, seed: int) -> Any:
        """A function returning one training batch (crop tensors, targets) drawn from the cached images:
        chips with objects twice as often as empty ones. Runs in the prefetch thread (its own RNG)."""
        p = self.params
        rng = np.random.default_rng(seed)
        cls_index = {c: i + 1 for i, c in enumerate(data.classes)}
        weights = np.array([2.0 if len(b) else 1.0 for b in data.boxes])
        weights /= weights.sum()

        def make() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
            imgs, targets = [], []
            for i in rng.choice(len(images), size=p.batch, p=weights):
                sample = training_sample(images[i], data.boxes[i], data.labels[i], crop, rng, augment=p.augment)
                imgs.append(torch.from_numpy(np.ascontiguousarray(sample.image)).permute(2, 0, 1).float().div_(255.0))
                targets.append({"boxes": torch.as_tensor(sample.boxes, dtype=torch.float32).reshape(-1, 4),
                                "labels": torch.as_tensor([cls_index[c] for c in sample.labels], dtype=torch.int64)})
            return imgs, targets

        return make

    def _steps_per_epoch(self, images: list[np.ndarray], val_images: list[np.ndarray], crop: int, scale: float) -> int:
        p = self.params
        if p.crops_per_epoch:
            per_epoch = p.crops_per_epoch
        else:  # 1 megapixel of crops per epoch, or as many as the validation images (their cost stays a third)
            mean_px = float(np.mean([min(crop, im.shape[0]) * min(crop, im.shape[1]) for im in images])) * scale**2
            budget = max(EPOCH_PIXELS, sum(im.shape[0] * im.shape[1] for im in val_images) * scale**2)
            per_epoch = max(2 * len(images), int(np.ceil(budget / max(mean_px, 1.0))))
        return max(1, per_epoch // p.batch)

    def _train(self, images: list[np.ndarray], data: TrainingSet, val_images: list[np.ndarray], val: TrainingSet,
               scale: float, rng: np.random.Generator, ctx: RunContext) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Warm-up + cosine over `steps` batches; an epoch (about a third of it spent validating) ends with the
        validation mAP of the EMA weights; the best epoch's weights are kept. Batches are cut from the decoded
        images in a background thread while the previous one trains."""
        from anomaly_gui.engines.detection_common.prefetch import BatchPrefetcher

        assert self.model is not None
        p = self.params
        crop = max(32, int(round(p.crop / scale)))  # crop size in image pixels
        steps = self._steps_per_epoch(images, val_images, crop, scale)
        total = max(1, min(p.steps, p.epochs * steps))
        epochs = int(np.ceil(total / steps))
        params = [q for q in self.model.parameters() if q.requires_grad]
        opt = torch.optim.AdamW(params, lr=p.lr, weight_decay=1e-4)
        warm = min(50, max(1, total // 10))

        def base(k: int) -> float:
            return (k + 1) / warm if k < warm else 0.5 * (1 + np.cos(np.pi * min(1.0, (k - warm) / max(1, total - warm))))

        # once validation is perfect the rest of the schedule is pointless: the learning rate then decays
        # linearly to zero over a shorter end phase (half the steps done so far, at least two epochs)
        anneal: dict[str, float] = {}

        def factor(k: int) -> float:
            if anneal and k >= anneal["start"]:
                return anneal["factor"] * max(0.0, 1.0 - (k - anneal["start"]) / anneal["length"])
            return base(k)

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        end = total
        ema = ModelEMA(self.model)
        # validation chips without any object give no mAP: then the last (averaged) weights are kept
        validate = any(len(b) for b in val.boxes)
        t0 = time.perf_counter()
        history: list[dict[str, Any]] = []
        best: dict[str, Any] = {"best_epoch": 0}
        best_key, best_state, stale, done = (-1.0, -1.0), None, 0, 0
        ranked: list[tuple[tuple[float, float], int, dict[str, torch.Tensor]]] = []  # the best epochs (`snapshots`)
        with BatchPrefetcher(self._batch_maker(images, data, crop, int(rng.integers(2**31)))) as batches:
            for epoch in range(epochs):
                self.model.train()
                losses = []
                for _ in range(min(steps, end - done)):
                    ctx.check()
                    imgs, targets = batches.next()
                    imgs = [im.to(self.device) for im in imgs]
                    targets = [{k: v.to(self.device) for k, v in t.items()} for t in targets]
                    loss_dict = self.model(imgs, targets)
                    loss = sum(loss_dict.values())
                    opt.zero_grad()
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, 10.0)
                    opt.step()
                    sched.step()
                    ema.update(self.model)
                    losses.append(float(loss.detach()))
                    done += 1
                    ctx.progress(done, total, f"epoch {epoch + 1}/{epochs}")
                entry: dict[str, Any] = {"epoch": epoch + 1, "step": done, "loss": float(np.mean(losses)),
                                         "seconds": round(time.perf_counter() - t0, 1)}
                if validate or self.epoch_hook is not None:
                    self.fitted = True
                    train_state = copy.deepcopy(self.model.state_dict())
                    load_weights(self.model, ema.state_dict())  # validate (and keep) the averaged weights
                    if validate:
                        m50, m50_95 = self._validation_map(val_images, val)
                        entry.update({"map50": m50, "map50_95": m50_95})
                        key = (round(m50, 4), round(m50_95, 4))
                        # patience counts epochs without a better mAP50; at equal mAP50 better boxes still win
                        stale = 0 if key[0] > best_key[0] else stale + 1
                        if p.snapshots > 1:
                            ranked = sorted(ranked + [(key, epoch + 1, ema.state_dict())], key=lambda r: r[:2], reverse=True)[:p.snapshots + 1]
                        if key > best_key:
                            best_key, best_state = key, ema.state_dict()
                            best = {"best_epoch": epoch + 1, "val_map50": m50, "val_map50_95": m50_95}
                    if self.epoch_hook is not None:  # benchmarks measure epochs-to-quality on other chips
                        entry.update(self.epoch_hook(self, entry) or {})
                    load_weights(self.model, train_state)
                history.append(entry)
                ctx.log(entry)
                minutes = (time.perf_counter() - t0) / 60
                # perfect on validation: anneal (see above) and stop; otherwise a couple of validation chips are a
                # noisy judge: no early stop before half the schedule
                if best_key[0] >= 0.999 and done >= min(total, p.anneal_after) and not anneal and done < end:
                    anneal.update(start=done, length=max(2 * steps, done // 2), factor=base(done))
                    end = min(total, done + int(anneal["length"]))
                patience = p.patience if done >= total // 2 and not anneal else 0
                if done >= end or (patience and validate and stale >= patience) or (p.max_minutes and minutes >= p.max_minutes):
                    if done < total:
                        best["stopped"] = ("validation mAP perfect: annealed" if anneal and done >= end else
                                           "no better validation mAP" if patience and stale >= patience else "time budget")
                    break
        if p.keep_epoch == "last" and history:  # the averaged weights where training ended
            best_state = None
            last = history[-1]
            best.update({"best_epoch": last["epoch"], "kept": "last"})
            if "map50" in last:
                best.update({"val_map50": last["map50"], "val_map50_95": last["map50_95"]})
        load_weights(self.model, best_state if best_state is not None else ema.state_dict())
        # the checkpoint ensemble: the kept epoch (the model) and the next best validated ones (later ones first at equal mAP)
        others = [(e, state) for _, e, state in ranked if e != best["best_epoch"]][:max(0, p.snapshots - 1)]
        self.snapshot_models = [self._snapshot(state) for _, state in others]
        if others:
            best["snapshot_epochs"] = [best["best_epoch"]] + [e for e, _ in others]
        best.update({"fit_seconds": time.perf_counter() - t0, "steps": done, "steps_per_epoch": steps})
        return history, best

    def _snapshot(self, state: dict[str, torch.Tensor]) -> torch.nn.Module:
        """A network of the same build holding one checkpoint's weights (for the checkpoint ensemble)."""
        assert self.model is not None
        net = copy.deepcopy(self.model)
        load_weights(net, state)
        return net.eval()

    # -- inference -----------------------------------------------------------------------
    def _members(self) -> list[torch.nn.Module]:
        """The networks whose boxes are fused: the model, then the snapshots kept from its training run."""
        if self.model is None:
            raise RuntimeError("retinanet: no model (fit or load first)")
        return [self.model, *self.snapshot_models]

    def _merge_iou(self) -> float:
        """Boxes overlapping more than this are one object (members' and views' boxes)."""
        return float(self.params.merge_iou) if self.params.box_merge == "wbf" else 0.55

    @torch.no_grad()
    def _variants(self, images: Sequence[np.ndarray], members: Sequence[torch.nn.Module],
                  views: Sequence[str] | None = None) -> list[list[dict[str, np.ndarray]]]:
        """Per image, the detections of every member network on every test-time view (member-major; boxes in the
        image's own pixels), after each network's own NMS (at `WBF_PRE_NMS` before a fusion)."""
        wbf = self.params.box_merge == "wbf"
        views = self._views() if views is None else tuple(views)
        outs: list[list[dict[str, np.ndarray]]] = []
        bs = max(1, self.params.batch)
        for i in range(0, len(images), bs):
            chunk = [self._tensor(im) for im in images[i:i + bs]]
            per_variant: list[list[dict[str, np.ndarray]]] = []
            for net in members:
                net.eval()
                # read at each detection; before a fusion only near-duplicates are suppressed (the fusion averages the rest)
                net.nms_thresh = WBF_PRE_NMS if wbf else float(self.params.merge_iou)  # type: ignore[assignment]
                for view in views:
                    transpose, fx, fy = VIEWS[view]
                    dims = [d for d, on in ((2, fx), (1, fy)) if on]
                    seen = [t.transpose(1, 2) if transpose else t for t in chunk]
                    found = net([t.flip(dims) if dims else t for t in seen])
                    per_variant.append([{"boxes": unview_boxes(o["boxes"].cpu().numpy(), t.shape[2], t.shape[1], view),
                                         "scores": o["scores"].cpu().numpy(), "labels": o["labels"].cpu().numpy()}
                                        for o, t in zip(found, chunk)])
            outs += [[v[j] for v in per_variant] for j in range(len(chunk))]
        return outs

    def _fuse_members(self, variants: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Detections of one view: weighted box fusion of its members' boxes (wbf, or several members), else as found."""
        if self.params.box_merge != "wbf" and len(variants) == 1:
            return variants[0]
        return fuse_variants(variants, iou=self._merge_iou())

    def _views_found(self, images: Sequence[np.ndarray], views: Sequence[str], floor: float) -> list[dict[str, dict[str, np.ndarray]]]:
        views = tuple(views)
        return [{view: self._fuse_members(variants[v::len(views)]) for v, view in enumerate(views)}
                for variants in self._variants(images, self._members(), views)]

    def _views_iou(self) -> float:
        return self._merge_iou()

    def _label_name(self, label: int) -> str:
        return super()._label_name(label - 1) if label > 0 else str(label)  # torchvision's labels: 0 is the background

    def _raw(self, images: Sequence[np.ndarray], floor: float | None = None) -> list[dict[str, np.ndarray]]:
        if not isinstance(self.params.tta, bool):
            return super()._raw(images, floor)
        # a model file from before the views (`tta` true / false): every variant fused at once, as it was scored
        found = [self._fuse_members(v) for v in self._variants(images, self._members())]
        if self._refining():  # box extents from the image's bright blobs (`box_refine`)
            p = self.params
            cfar = CfarSettings(window=p.cfar_window, k=p.cfar_k, min_area=p.cfar_min_area)
            found = [snap_to_blobs(f, bright_blobs(im, cfar), split=p.cfar_split) for f, im in zip(found, images)]
        return found

    def _raw_detections(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [np.concatenate([o["boxes"], o["scores"][:, None]], 1) for o in self._raw(images)]

    def predict_arrays(self, images: Sequence[np.ndarray]) -> list[list[Annotation]]:
        classes = self.classes
        shift = self._score_shift()
        result = []
        for o in self._raw(images):
            b, lab = o["boxes"], o["labels"]
            s = calibrate(o["scores"], shift) if shift else o["scores"].astype(np.float64)
            result.append([make_box(*b[k], classes[int(lab[k]) - 1] if 0 < lab[k] <= len(classes) else str(int(lab[k])), s[k])
                           for k in range(len(s)) if s[k] >= self.params.min_confidence])
        return result

    # -- persistence -----------------------------------------------------------------------
    def state_tensors(self) -> dict[str, Any]:
        if self.model is None:
            raise RuntimeError("retinanet: nothing to save (not fitted)")
        tensors = {k: v.contiguous() for k, v in self.model.state_dict().items()}
        for i, net in enumerate(self.snapshot_models, start=1):  # the checkpoint ensemble, one prefix per member
            tensors.update({f"{SNAPSHOT_PREFIX}{i}.{k}": v.contiguous() for k, v in net.state_dict().items()})
        return tensors

    def load_state_tensors(self, tensors: dict[str, Any]) -> None:
        if "scale" not in self.stats:
            raise DataError(".", "this RetinaNet model file predates the small-object pyramid (2026-11); train it again")
        self.model = self._build(len(self.classes), None)
        members: dict[int, dict[str, Any]] = {}
        own = {}
        for k, v in tensors.items():
            if k.startswith(SNAPSHOT_PREFIX):  # files from before the checkpoint ensemble have none
                i, _, name = k[len(SNAPSHOT_PREFIX):].partition(".")
                members.setdefault(int(i), {})[name] = v
            else:
                own[k] = v
        load_weights(self.model, own)
        self.model.eval()
        self.snapshot_models = [self._snapshot(members[i]) for i in sorted(members)]
