"""Video metrics: frame-level AUC and the UCSD pixel-level criterion (Mahadevan et al. 2010).

UCSD pixel criterion: at a pixel threshold, an anomalous frame counts as detected when at least 40 % of
its ground-truth anomalous pixels are flagged; a normal frame is a false positive when any pixel is flagged.
Sweeping the threshold gives a ROC; for each frame the threshold where it switches is known in closed form
(its 40 %-coverage value for anomalous frames, its map maximum for normal ones), so the curve is a plain ROC
over those per-frame values and its area is computed by scikit-learn. Pixel AUROC is the one of
`core.metrics.segmentation`.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from anomaly_gui.core.metrics import auroc, roc_curve

UCSD_COVERAGE = 0.4


def per_clip_minmax(errors: np.ndarray) -> np.ndarray:
    """(e(t) - min e) / (max e - min e) over ONE clip: the per-clip normalisation of the video papers (Hasan et al.
    2016's 1 - regularity, Liu et al. 2018's min-max of PSNR). It needs the whole clip, so it is a statistic of the
    scored clip: `frame_auc_raw` is the deployable figure. All zeros for a constant clip. The one implementation:
    the evaluator, the run metrics, the batch importer and the engines' `normalise` option all call it."""
    e = np.asarray(errors, dtype=np.float64)
    if e.size == 0:
        return e.astype(np.float32)
    lo, hi = float(np.min(e)), float(np.max(e))
    if hi - lo < 1e-12:
        return np.zeros_like(e, dtype=np.float32)
    return ((e - lo) / (hi - lo)).astype(np.float32)


def frame_auc(labels: Sequence[np.ndarray], scores: Sequence[np.ndarray]) -> float | None:
    """AUC over all frames of all clips pooled (labels and scores given per clip)."""
    if len(labels) != len(scores):
        raise ValueError("labels and scores must list the same clips")
    for y, s in zip(labels, scores):
        if len(y) != len(s):
            raise ValueError(f"a clip has {len(y)} labels but {len(s)} scores")
    if not labels:
        return None
    return auroc(np.concatenate([np.asarray(y, int) for y in labels]), np.concatenate([np.asarray(s, float) for s in scores]))


def equal_error_rate(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """EER: the error where false positive rate equals miss rate (UCSD papers report it)."""
    y = np.asarray(labels, int)
    if len(np.unique(y)) < 2:
        return None
    fpr, tpr, _ = roc_curve(y, scores)
    fnr = 1.0 - tpr
    k = int(np.nanargmin(np.abs(fnr - fpr)))
    return float((fpr[k] + fnr[k]) / 2.0)


def coverage_value(mask: np.ndarray, amap: np.ndarray, coverage: float = UCSD_COVERAGE) -> float:
    """Largest threshold at which >= `coverage` of the mask's pixels are still above it (strictly)."""
    vals = np.sort(np.asarray(amap, np.float32)[np.asarray(mask, bool)])[::-1]
    if vals.size == 0:
        return float("nan")
    k = int(np.ceil(coverage * vals.size)) - 1
    return float(vals[max(k, 0)])


def ucsd_pixel_scores(labels: np.ndarray, masks: Sequence[np.ndarray | None], maps: Sequence[np.ndarray],
                      coverage: float = UCSD_COVERAGE) -> tuple[np.ndarray, np.ndarray]:
    """(labels, switch values) for the UCSD pixel ROC; anomalous frames without mask pixels are left out."""
    ys, vs = [], []
    for y, m, a in zip(labels, masks, maps):
        if y:
            if m is None or not np.any(m):
                continue
            ys.append(1)
            vs.append(coverage_value(m, a, coverage))
        else:
            ys.append(0)
            vs.append(float(np.max(a)))
    return np.asarray(ys, int), np.asarray(vs, float)


def ucsd_pixel_auc(labels: np.ndarray, masks: Sequence[np.ndarray | None], maps: Sequence[np.ndarray],
                   coverage: float = UCSD_COVERAGE) -> tuple[float | None, float | None]:
    """(AUC, EER) of the UCSD pixel-level criterion."""
    y, v = ucsd_pixel_scores(labels, masks, maps, coverage)
    return auroc(y, v), equal_error_rate(y, v)


def ucsd_detected(mask: np.ndarray, flagged: np.ndarray, coverage: float = UCSD_COVERAGE) -> bool:
    """Direct form of the criterion for one frame: >= coverage of the anomalous pixels are flagged."""
    m = np.asarray(mask, bool)
    if not m.any():
        return False
    return bool(np.asarray(flagged, bool)[m].mean() >= coverage)
