"""Metrics. Image-level ones here; segmentation (pixel AUROC, AUPRO), detection (mAP) and video
(frame AUC) live in sibling modules. Anything written by hand is checked against a library in tests."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


def _clean(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.int64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels {y.shape} and scores {s.shape} differ in length")
    ok = np.isfinite(s)
    return y[ok], s[ok]


def auroc(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> float | None:
    """Area under the ROC curve; None when only one class is present."""
    from sklearn.metrics import roc_auc_score

    y, s = _clean(labels, scores)
    if len(np.unique(y)) < 2:
        return None
    return float(roc_auc_score(y, s))


@dataclass
class MetricReport:
    """A metric with the counts behind it: `n` items given, `n_dropped` left out (non-finite scores)."""

    value: float | None
    n: int
    n_dropped: int

    @property
    def warning(self) -> str:
        return f"{self.n_dropped} of {self.n} item(s) with a non-finite score left out" if self.n_dropped else ""


def auroc_report(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> MetricReport:
    """`auroc` plus how many items it used and how many it had to leave out (NaN/inf scores)."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    return MetricReport(auroc(labels, s), int(s.size), int((~np.isfinite(s)).sum()))


def roc_curve(labels: Sequence[int], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds)."""
    from sklearn.metrics import roc_curve as _roc

    y, s = _clean(labels, scores)
    fpr, tpr, thr = _roc(y, s)
    return fpr, tpr, thr


def pr_curve(labels: Sequence[int], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, thresholds)."""
    from sklearn.metrics import precision_recall_curve

    y, s = _clean(labels, scores)
    return precision_recall_curve(y, s)


def f1_max(labels: Sequence[int], scores: Sequence[float]) -> tuple[float | None, float | None]:
    """(best F1 over all thresholds, the threshold that gives it); (None, None) without positives."""
    y, s = _clean(labels, scores)
    if y.sum() == 0 or len(y) == 0:
        return None, None
    precision, recall, thr = pr_curve(y, s)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    f1 = f1[:-1]  # the last point has no threshold
    k = int(np.argmax(f1))
    return float(f1[k]), float(thr[k])


def confusion(labels: Sequence[int], predicted: Sequence[int]) -> dict[str, int]:
    """tp, fp, tn, fn counts."""
    y = np.asarray(labels, dtype=bool)
    p = np.asarray(predicted, dtype=bool)
    return {"tp": int((y & p).sum()), "fp": int((~y & p).sum()), "tn": int((~y & ~p).sum()), "fn": int((y & ~p).sum())}
