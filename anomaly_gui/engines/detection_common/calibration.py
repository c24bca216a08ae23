"""Confidence calibration for detectors, on validation images.

Focal-loss detectors give true ships raw scores of 0.2-0.4, so a user's cut-off of 0.5 shows nothing.
We find the raw score at which F1 (detections matched at IoU 0.5 against validation boxes) is highest
and shift scores in logit space so that this point becomes 0.5: calibrated = sigmoid(logit(s) - logit(t)).
The transform is monotone, so mAP is unchanged; only the meaning of the slider's default moves.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from anomaly_gui.core.metrics.detection import box_iou


def match_detections(gt: Sequence[np.ndarray], dets: Sequence[np.ndarray], iou: float = 0.5) -> tuple[np.ndarray, np.ndarray, int]:
    """Greedy matching per image (highest score first). dets rows: x1, y1, x2, y2, score.
    Returns (scores, is_true_positive, number of ground-truth boxes)."""
    scores, tps = [], []
    n_gt = 0
    for g, d in zip(gt, dets):
        g = np.asarray(g, np.float64).reshape(-1, 4)
        d = np.asarray(d, np.float64).reshape(-1, 5)
        n_gt += len(g)
        order = np.argsort(-d[:, 4])
        d = d[order]
        ious = box_iou(d[:, :4], g)
        used = np.zeros(len(g), bool)
        for i in range(len(d)):
            j = int(np.argmax(ious[i])) if len(g) else -1
            ok = j >= 0 and ious[i, j] >= iou and not used[j]
            if ok:
                used[j] = True
            scores.append(d[i, 4])
            tps.append(ok)
    return np.array(scores, np.float64), np.array(tps, bool), n_gt


def best_f1_threshold(gt: Sequence[np.ndarray], dets: Sequence[np.ndarray], iou: float = 0.5,
                      bounds: tuple[float, float] = (0.02, 0.98)) -> tuple[float, float]:
    """(raw score threshold with the highest F1, that F1); (0.5, 0.0) when nothing can be matched."""
    scores, tps, n_gt = match_detections(gt, dets, iou)
    if not len(scores) or n_gt == 0 or not tps.any():
        return 0.5, 0.0
    order = np.argsort(-scores)
    s, tp = scores[order], tps[order]
    ctp = np.cumsum(tp)
    prec = ctp / np.arange(1, len(s) + 1)
    rec = ctp / n_gt
    f1 = 2 * prec * rec / np.maximum(prec + rec, 1e-9)
    # only cut between distinct scores: the last index of each run of equal scores
    last = np.r_[s[1:] != s[:-1], True]
    k = int(np.argmax(np.where(last, f1, -1)))
    nxt = s[k + 1] if k + 1 < len(s) else 0.0
    thr = float(np.clip((s[k] + nxt) / 2, *bounds))  # halfway to the next (rejected) score
    return thr, float(f1[k])


def logit(p: float | np.ndarray) -> float | np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def calibrate(scores: np.ndarray, shift: float) -> np.ndarray:
    """Raw scores to calibrated ones: sigmoid(logit(s) - shift)."""
    return 1.0 / (1.0 + np.exp(-(logit(np.asarray(scores, np.float64)) - shift)))
