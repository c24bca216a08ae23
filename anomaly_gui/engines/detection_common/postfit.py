"""What a detector decides after its fit, on the fit's own validation images (never on test data):

- `box_refine` auto: whether snapping each box to the CFAR bright blob it overlaps (`cfar.snap_to_blobs`)
  scores a better validation mAP50 than the learnt boxes (`choose_refine`);
- the confidence calibration: the logit shift that makes the best-F1 cut-off 0.5
  (`calibration.best_f1_threshold`, `calibrate`).

Both engines decide them in `decide_views`, from one network pass per test-time view (`tta.VIEWS`) over the
validation images: `box_refine` with the model's own views, and one calibration per view set and fusion
(`score_shifts`), so that switching `tta` on a fitted model keeps the meaning of 0.5 (decision 0018, session 7).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from anomaly_gui.core.formats.base import Annotation
from anomaly_gui.engines.detection_common import TrainingSet
from anomaly_gui.engines.detection_common.calibration import best_f1_threshold, logit
from anomaly_gui.engines.detection_common.cfar import CfarSettings, bright_blobs, snap_to_blobs

REFINES = ["auto", "cfar", "none"]
CALIBRATION_FLOOR = 0.001  # raw scores from this up are matched when calibrating


def validation_map(predict: Callable[[Sequence[np.ndarray]], list[list[Annotation]]], images: Sequence[np.ndarray],
                   val: TrainingSet) -> tuple[float, float]:
    """(mAP50, mAP50-95) of `predict` on the validation images."""
    from anomaly_gui.core.metrics.detection import Boxes, mean_average_precision

    preds = predict(images)
    res = mean_average_precision([Boxes(b, lab) for b, lab in zip(val.boxes, val.labels)],
                                 [Boxes.from_annotations(pb, with_scores=True) for pb in preds])
    return float(res.map50), float(res.map50_95)


def choose_refine(evaluate: Callable[[str], tuple[float, float]], val: TrainingSet) -> tuple[str, dict[str, list[float]]]:
    """`box_refine` auto for one model: (cfar or none, the validation (mAP50, mAP50-95) of each). `evaluate(option)`
    scores the validation images with that option. cfar is kept unless it lowers the validation mAP50 (mAP50-95
    does not decide: on 2-3 validation chips it misled RetinaNet in one CV fold, decision 0023); without a
    validation object: none."""
    if not any(len(b) for b in val.boxes):
        return "none", {}
    scores = {option: [round(v, 4) for v in evaluate(option)] for option in ("none", "cfar")}
    return ("cfar" if scores["cfar"][0] >= scores["none"][0] else "none"), scores


def snap_all(found: list[dict[str, np.ndarray]], images: Sequence[np.ndarray], settings: CfarSettings,
             split: bool) -> list[dict[str, np.ndarray]]:
    """Each image's detections (boxes, scores, labels; any order) snapped to that image's CFAR blobs."""
    out = []
    for f, im in zip(found, images):
        order = np.argsort(-np.asarray(f["scores"]), kind="mergesort")
        f = {k: np.asarray(v)[order] for k, v in f.items()}
        out.append(snap_to_blobs(f, bright_blobs(im, settings), split=split))
    return out


def score_shift(gt: Sequence[np.ndarray], dets: Sequence[np.ndarray]) -> dict[str, float]:
    """The calibration from raw detections (rows x1, y1, x2, y2, raw score) on validation images:
    score_shift (logit of the best-F1 raw threshold; calibrated = sigmoid(logit(raw) - shift)),
    raw_threshold and calibration_f1."""
    thr, f1 = best_f1_threshold(gt, dets)
    return {"score_shift": float(logit(thr)), "raw_threshold": float(thr), "calibration_f1": float(f1)}


def above(found: dict[str, np.ndarray], floor: float) -> dict[str, np.ndarray]:
    """The detections with a score of at least `floor`."""
    keep = np.asarray(found["scores"]) >= floor
    return {k: np.asarray(v)[keep] for k, v in found.items()}


def fused_views(views_found: Sequence[dict[str, dict[str, np.ndarray]]], views: Sequence[str], iou: float, merge: str,
                floor: float = 0.0) -> list[dict[str, np.ndarray]]:
    """Per image, its detections on `views` (each view's raw scores from `floor` up; `views_found`: per image,
    view name -> detections in the image's pixels) fused by `tta.fuse_views`."""
    from anomaly_gui.engines.detection_common.tta import fuse_views

    return [fuse_views([above(pv[v], floor) for v in views], iou, merge) for pv in views_found]


def decide_views(views_found: Sequence[dict[str, dict[str, np.ndarray]]], images: Sequence[np.ndarray], ref: TrainingSet,
                 label_name: Callable[[int], str], *, tta: str, merge: str, iou: float, refine: str, cfar: CfarSettings,
                 split: bool, min_confidence: float, calibrate: bool, floor: float = 0.001) -> dict[str, Any]:
    """The post-fit decisions from one network pass per D4 view over the validation images (`views_found`: per
    image, every view of `tta.VIEWS` -> its raw detections): `box_refine` auto with the model's own views (`tta`,
    `merge`; raw scores from `min_confidence` up, as before the calibration), then a calibration for every view set
    and fusion (`score_shifts`, keyed as `DetectionEngine._tta_key`), so that a user who changes `tta` on the
    fitted model keeps a 0.5 cut-off that means the same. Returns the stats to record."""
    from anomaly_gui.core.metrics.detection import Boxes, mean_average_precision
    from anomaly_gui.engines.detection_common.tta import TTA_MERGES, VIEW_SETS

    blobs: list[np.ndarray] = []

    def snapped(found: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        if not blobs:
            blobs.extend(bright_blobs(im, cfar) for im in images)
        out = []
        for f, b in zip(found, blobs):
            order = np.argsort(-np.asarray(f["scores"]), kind="mergesort")
            out.append(snap_to_blobs({k: np.asarray(v)[order] for k, v in f.items()}, b, split=split))
        return out

    stats: dict[str, Any] = {"box_refine": refine if refine != "auto" else "none"}
    if refine == "auto":
        own = fused_views(views_found, VIEW_SETS[tta], iou, merge, min_confidence)

        def evaluate(option: str) -> tuple[float, float]:
            found = [above(f, min_confidence) for f in (snapped(own) if option == "cfar" else own)]
            res = mean_average_precision([Boxes(b, lab) for b, lab in zip(ref.boxes, ref.labels)],
                                         [Boxes(f["boxes"], [label_name(int(c)) for c in f["labels"]], f["scores"]) for f in found])
            return float(res.map50), float(res.map50_95)

        stats["box_refine"], stats["box_refine_validation"] = choose_refine(evaluate, ref)
    if calibrate:
        shifts: dict[str, float] = {}
        own_key = "none" if len(VIEW_SETS[tta]) == 1 else f"{tta}/{merge}"
        for name, views in VIEW_SETS.items():
            for m in (TTA_MERGES if len(views) > 1 else TTA_MERGES[:1]):
                key = "none" if len(views) == 1 else f"{name}/{m}"
                found = fused_views(views_found, views, iou, m, floor)
                if stats["box_refine"] == "cfar":
                    found = snapped(found)
                cal = score_shift(ref.boxes, [np.concatenate([f["boxes"], f["scores"][:, None]], 1) for f in found])
                shifts[key] = float(cal["score_shift"])
                if key == own_key:
                    stats.update(cal)
        stats.update({"score_shifts": shifts, "calibrated_views": own_key})
    return stats
