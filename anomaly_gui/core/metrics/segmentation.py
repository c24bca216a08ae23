"""Pixel-level metrics for anomaly maps: pixel AUROC and AUPRO (as in MVTec AD / anomalib).

`masks[i] is None` means "no ground truth for this image": the image is left out of pixel metrics
(never treated as defect-free). A known-good image gets an all-zero mask from its caller.
Maps and masks must have the same shape per image (`align_mask` resizes a mask to a map).

AUPRO: ground-truth regions are the 8-connected components of each mask; at a threshold t, a region's
overlap is the fraction of its pixels with score >= t, PRO is the mean overlap over all regions, FPR is the
fraction of normal pixels (over all images with a mask) with score >= t. The PRO-vs-FPR curve is
integrated from FPR 0 to `fpr_limit` (0.3; the last segment interpolated) and divided by `fpr_limit`, so 1.0
is perfect. The integration is exact for the step curve (ties between normal and region pixels give
diagonal segments, as in a ROC curve); with more than `max_steps` distinct normal scores the thresholds
are sub-sampled (FPR stays exact at each one).
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from anomaly_gui.core.metrics import auroc


#: how ground truth meets a smaller map (every JSON output with pixel metrics states it)
PIXEL_GT_RULE = "mask shrunk to the map size; a map pixel is a defect when any image pixel under it is"


def align_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A ground-truth mask (any non-zero = defect) resized to `shape` = (h, w) as bool.

    Shrinking keeps every defect pixel (`PIXEL_GT_RULE`): a scratch thinner than a map pixel still marks the
    map pixels it crosses, instead of vanishing under an area average; enlarging is nearest-neighbour."""
    m = np.asarray(mask)
    if m.ndim == 3:
        m = m.max(axis=2)
    b = (m > 0).astype(np.float32)
    if b.shape == tuple(shape):
        return b > 0.5
    if b.shape[0] > shape[0] or b.shape[1] > shape[1]:
        return cv2.resize(b, (shape[1], shape[0]), interpolation=cv2.INTER_AREA) > 1e-6
    return cv2.resize(b, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0.5


def _pairs(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray | None]) -> list[tuple[np.ndarray, np.ndarray]]:
    if len(maps) != len(masks):
        raise ValueError(f"{len(maps)} maps but {len(masks)} masks")
    out = []
    for i, (m, g) in enumerate(zip(maps, masks)):
        if g is None:
            continue
        m = np.asarray(m, np.float32)
        g = np.asarray(g).astype(bool)
        if m.shape != g.shape:
            raise ValueError(f"image {i}: map {m.shape} and mask {g.shape} differ (use align_mask)")
        out.append((m, g))
    return out


def pixel_auroc(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray | None], max_pixels: int | None = None
                ) -> float | None:
    """AUROC over all pixels of the images that have a mask; None without both classes. Above `max_pixels`
    every k-th pixel is used (the same curve up to sampling, far less memory)."""
    pairs = _pairs(maps, masks)
    if not pairs:
        return None
    y = np.concatenate([g.ravel() for _, g in pairs])
    s = np.concatenate([m.ravel() for m, _ in pairs])
    if max_pixels is not None and y.size > max_pixels:
        step = -(-y.size // max_pixels)
        y, s = y[::step], s[::step]
    return auroc(y, s)


def pro_curve(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray | None], fpr_limit: float = 1.0,
              max_steps: int = 20000) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(fpr, pro, thresholds) with thresholds decreasing from +inf; None without regions or normal pixels.

    Two points per threshold step (just above and at the threshold) so the step curve is represented exactly.
    """
    pairs = _pairs(maps, masks)
    regions: list[np.ndarray] = []
    normal_parts: list[np.ndarray] = []
    for m, g in pairs:
        normal_parts.append(m[~g])
        if g.any():
            n, labels = cv2.connectedComponents(g.view(np.uint8), connectivity=8)
            flat_l = labels.ravel()
            flat_m = m.ravel()
            order = np.argsort(flat_l, kind="stable")
            sl, sm = flat_l[order], flat_m[order]
            bounds = np.searchsorted(sl, np.arange(1, n + 1))
            for k in range(1, n):
                regions.append(np.sort(sm[bounds[k - 1]:bounds[k]]))
    normal = np.concatenate(normal_parts) if normal_parts else np.zeros(0, np.float32)
    if not regions or normal.size == 0:
        return None
    normal = np.sort(normal)[::-1]  # descending
    n_normal = normal.size
    # distinct normal values, highest first, down to the one where FPR passes the limit
    uniq_desc = np.unique(normal)[::-1]
    fpr_at = (n_normal - np.searchsorted(normal[::-1], uniq_desc, side="left")) / n_normal
    cut = int(np.searchsorted(fpr_at, fpr_limit, side="left")) + 1
    thr = uniq_desc[:cut]
    if len(thr) > max_steps:
        idx = np.unique(np.linspace(0, len(thr) - 1, max_steps).round().astype(np.int64))
        thr = thr[idx]
    fpr = (n_normal - np.searchsorted(normal[::-1], thr, side="left")) / n_normal
    fpr_above = (n_normal - np.searchsorted(normal[::-1], thr, side="right")) / n_normal
    pro = np.zeros(len(thr))
    pro_above = np.zeros(len(thr))
    for r in regions:
        pro += (r.size - np.searchsorted(r, thr, side="left")) / r.size
        pro_above += (r.size - np.searchsorted(r, thr, side="right")) / r.size
    pro /= len(regions)
    pro_above /= len(regions)
    # interleave: (just above t_k) then (at t_k)
    f = np.concatenate([[0.0], np.stack([fpr_above, fpr], 1).ravel()])
    p = np.concatenate([[0.0], np.stack([pro_above, pro], 1).ravel()])
    t = np.concatenate([[np.inf], np.repeat(thr, 2)])
    return f, p, t


def aupro(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray | None], fpr_limit: float = 0.3,
          max_steps: int = 20000) -> float | None:
    """Area under the PRO curve up to `fpr_limit`, normalised to [0, 1]; None when it is undefined."""
    curve = pro_curve(maps, masks, fpr_limit, max_steps)
    if curve is None:
        return None
    f, p, _ = curve
    return integrate_to_limit(f, p, fpr_limit) / fpr_limit


def integrate_to_limit(x: np.ndarray, y: np.ndarray, limit: float) -> float:
    """Trapezoid area under y(x) (x non-decreasing) from x[0] to `limit`, interpolating the last segment."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    inside = x <= limit
    xs, ys = x[inside], y[inside]
    k = int(inside.sum())
    if k < len(x) and k > 0 and x[k] > x[k - 1]:
        y_lim = y[k - 1] + (y[k] - y[k - 1]) * (limit - x[k - 1]) / (x[k] - x[k - 1])
        xs = np.append(xs, limit)
        ys = np.append(ys, y_lim)
    return float(np.trapezoid(ys, xs)) if len(xs) > 1 else 0.0
