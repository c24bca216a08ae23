"""Choosing the threshold on validation data, and the curves of the original "finetune" step.

The decision rule is the one of `core.postprocess`: an image is anomalous at threshold t with minimum
area A when a region of pixels with raw score >= t has at least A image pixels. For each image and a
fixed A there is one *critical threshold* c (the largest t at which it is still anomalous), so at every t
the verdict is simply ``c >= t``; c plays the role of the image score at that minimum area.

- With labelled anomalies in the validation data: the t that maximises image-level F1 of ``c >= t``.
- With normal images only: by default the smallest threshold at which *no* normal validation image keeps
  a region of at least A pixels (just above the largest c); ``normal_quantile`` < 1 allows that fraction of
  false alarms on validation instead (useful when the validation set holds an odd outlier), and ``margin``
  raises the threshold by a fraction of the spread of normal c values.

The curve functions return numpy arrays for pyqtgraph plots (no Qt here).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from anomaly_gui.core import postprocess as pp


@dataclass
class ThresholdChoice:
    threshold: float
    min_area: float
    method: str  # "f1" | "normal_max" | "normal_quantile"
    f1: float | None = None
    n_normal: int = 0
    n_anomalous: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "min_area": self.min_area, "method": self.method, "f1": self.f1,
                "n_normal": self.n_normal, "n_anomalous": self.n_anomalous, **self.details}


def critical_thresholds(maps: Sequence[np.ndarray], min_area: float = 0.0,
                        image_sizes: Sequence[pp.Size | None] | None = None, max_side: int | None = 256) -> np.ndarray:
    """Per map, the largest threshold at which it is anomalous with `min_area` (see module doc).

    Maps are downsampled to `max_side` for speed when min_area > 0 (None: exact)."""
    out = np.empty(len(maps), np.float64)
    for i, raw in enumerate(maps):
        size = image_sizes[i] if image_sizes is not None else None
        m = np.asarray(raw, np.float32)
        if size is None:
            size = (m.shape[-1], m.shape[-2])
        if min_area > 0 and max_side is not None:
            m = pp.downsample_map(m, max_side)
        out[i] = pp.critical_threshold(m, min_area, size) if min_area > 0 else float(np.max(m))
    return out


def pick_threshold(maps: Sequence[np.ndarray], labels: Sequence[int | bool | None] | None = None, min_area: float = 0.0,
                   image_sizes: Sequence[pp.Size | None] | None = None, normal_quantile: float = 1.0,
                   margin: float = 0.0, max_side: int | None = 256) -> ThresholdChoice:
    """The threshold for `min_area` from validation maps (labels: 1 anomalous, 0 normal, None unknown)."""
    if len(maps) == 0:
        raise ValueError("no validation maps to choose a threshold from")
    crit = critical_thresholds(maps, min_area, image_sizes, max_side)
    return pick_threshold_from_scores(crit, labels, min_area, normal_quantile, margin)


def pick_threshold_from_scores(scores: Sequence[float] | np.ndarray, labels: Sequence[int | bool | None] | None = None,
                               min_area: float = 0.0, normal_quantile: float = 1.0, margin: float = 0.0) -> ThresholdChoice:
    """Same rule on image scores already computed (critical thresholds, or plain max scores when min_area is 0)."""
    from anomaly_gui.core.metrics import f1_max

    s = np.asarray(scores, np.float64)
    if labels is None:
        lab = np.zeros(len(s), np.int64)
        known = np.ones(len(s), bool)
    else:
        known = np.array([v is not None for v in labels], bool)
        lab = np.array([int(bool(v)) if v is not None else 0 for v in labels], np.int64)
    finite = np.isfinite(s)
    n_anom = int((lab[known] == 1).sum())
    normal = s[known & (lab == 0) & finite]
    if n_anom and len(normal):
        f1, thr = f1_max(lab[known], np.where(finite[known], s[known], -1e30))
        assert thr is not None
        return ThresholdChoice(float(thr), float(min_area), "f1", f1=f1, n_normal=len(normal), n_anomalous=n_anom)
    if len(normal) == 0:
        if n_anom:
            # anomalies only: the lowest threshold still flags every one of them
            return ThresholdChoice(float(np.min(s[known & finite])), float(min_area), "anomalous_min", n_anomalous=n_anom)
        raise ValueError("no usable validation scores (all maps empty or smaller than the minimum area)")
    top = float(np.max(normal)) if normal_quantile >= 1.0 else float(np.quantile(normal, normal_quantile))
    spread = float(np.std(normal)) if len(normal) > 1 else abs(top) * 0.05
    thr = top + margin * spread
    # verdict is `score >= t`: step just above the top normal score so that it stays normal
    thr = float(np.nextafter(np.float32(thr), np.float32(np.inf)))
    method = "normal_max" if normal_quantile >= 1.0 else "normal_quantile"
    return ThresholdChoice(thr, float(min_area), method, n_normal=len(normal),
                           details={"normal_quantile": normal_quantile, "margin": margin,
                                    "normal_score_mean": float(np.mean(normal)), "normal_score_std": spread})


# -- curves for the finetune plots --------------------------------------------------------------------
def threshold_grid(maps: Sequence[np.ndarray], n: int = 60, lo_q: float = 0.5, hi_q: float = 1.0) -> np.ndarray:
    """`n` thresholds spanning the pooled map values between two quantiles (a sensible x axis)."""
    rng = pp.global_range(list(maps), lo_q, hi_q)
    return np.linspace(rng.lo, rng.hi, n)


def region_curves(maps: Sequence[np.ndarray], thresholds: Sequence[float] | np.ndarray,
                  image_sizes: Sequence[pp.Size | None] | None = None, min_area: float = 0.0,
                  max_side: int | None = 256) -> dict[str, np.ndarray]:
    """Per threshold, over all maps: number of regions (>= min_area), mean and std of their area (image
    pixels; NaN where there is none) and the number of anomalous images. Arrays of len(thresholds)."""
    ts = np.asarray(thresholds, np.float64)
    small, sizes = _prepared(maps, image_sizes, max_side)
    n_regions = np.zeros(len(ts), np.int64)
    mean_area = np.full(len(ts), np.nan)
    std_area = np.full(len(ts), np.nan)
    n_images = np.zeros(len(ts), np.int64)
    for j, t in enumerate(ts):
        all_areas = []
        for m, size in zip(small, sizes):
            a = pp.region_areas(m, float(t), size)
            a = a[a >= min_area - 1e-9]
            if len(a):
                n_images[j] += 1
                all_areas.append(a)
        if all_areas:
            cat = np.concatenate(all_areas)
            n_regions[j] = len(cat)
            mean_area[j] = float(cat.mean())
            std_area[j] = float(cat.std())
    return {"thresholds": ts, "n_regions": n_regions, "mean_area": mean_area, "std_area": std_area,
            "n_anomalous_images": n_images}


def area_distribution(maps: Sequence[np.ndarray], threshold: float, image_sizes: Sequence[pp.Size | None] | None = None,
                      max_side: int | None = 256) -> np.ndarray:
    """Areas (image pixels) of every region at `threshold` over all maps, for the area histogram."""
    small, sizes = _prepared(maps, image_sizes, max_side)
    parts = [pp.region_areas(m, threshold, s) for m, s in zip(small, sizes)]
    return np.concatenate(parts) if parts else np.zeros(0)


def area_histogram(areas: np.ndarray, bins: int = 30, log: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(counts, edges) of region areas; logarithmic bins by default (areas span decades)."""
    a = np.asarray(areas, np.float64)
    a = a[a > 0]
    if len(a) == 0:
        return np.zeros(bins, np.int64), np.linspace(0, 1, bins + 1)
    if log and a.max() > a.min():
        edges = np.geomspace(a.min(), a.max(), bins + 1)
    else:
        edges = np.linspace(a.min(), a.max() + 1e-9, bins + 1)
    counts, edges = np.histogram(a, bins=edges)
    return counts, edges


def score_histograms(scores: Sequence[float], labels: Sequence[int | bool | None], bins: int = 40
                     ) -> dict[str, np.ndarray]:
    """Histograms of image scores for normal and anomalous items on shared bin edges (None labels skipped)."""
    s = np.asarray(scores, np.float64)
    known = np.array([v is not None for v in labels], bool)
    lab = np.array([bool(v) if v is not None else False for v in labels], bool)
    ok = np.isfinite(s)
    if not ok.any():
        edges = np.linspace(0, 1, bins + 1)
    else:
        lo, hi = float(s[ok].min()), float(s[ok].max())
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    normal, _ = np.histogram(s[ok & known & ~lab], bins=edges)
    anomalous, _ = np.histogram(s[ok & known & lab], bins=edges)
    unknown, _ = np.histogram(s[ok & ~known], bins=edges)
    return {"edges": edges, "normal": normal, "anomalous": anomalous, "unlabelled": unknown}


def _prepared(maps: Sequence[np.ndarray], image_sizes: Sequence[pp.Size | None] | None,
              max_side: int | None) -> tuple[list[np.ndarray], list[pp.Size]]:
    small, sizes = [], []
    for i, raw in enumerate(maps):
        m = np.asarray(raw, np.float32)
        size = image_sizes[i] if image_sizes is not None and image_sizes[i] is not None else (m.shape[-1], m.shape[-2])
        small.append(pp.downsample_map(m, max_side) if max_side else m)
        sizes.append((int(size[0]), int(size[1])))
    return small, sizes
