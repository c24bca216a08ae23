"""What a detector decides after its fit, on the fit's own validation images (never on test data):

- `box_refine` auto: whether snapping each box to the CFAR bright blob it overlaps (`cfar.snap_to_blobs`)
  scores a better validation mAP50 than the learnt boxes (`choose_refine`);
- the confidence calibration: the logit shift that makes the best-F1 cut-off 0.5
  (`calibration.best_f1_threshold`, `calibrate`).

Used by the YOLO engine; RetinaNet decides the same things inside its class (decision 0018 / 0023).
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from anomaly_gui.core.formats.base import Annotation
from anomaly_gui.engines.detection_common import TrainingSet
from anomaly_gui.engines.detection_common.calibration import best_f1_threshold, logit
from anomaly_gui.engines.detection_common.cfar import CfarSettings, bright_blobs, snap_to_blobs

REFINES = ["auto", "cfar", "none"]


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
