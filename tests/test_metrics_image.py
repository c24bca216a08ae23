"""Pixel AUROC and AUPRO, checked against scikit-learn and a brute-force reference."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from anomaly_gui.core.metrics import segmentation as seg


def _data(seed: int, n: int = 4, levels: int | None = None):
    rng = np.random.default_rng(seed)
    maps, masks = [], []
    for i in range(n):
        g = np.zeros((24, 24), bool)
        if i % 2 == 0:
            g[3:8, 3:9] = True
            g[15:22, 12:14] = True
        m = rng.random((24, 24)) + 0.8 * g + 0.3 * ndimage.binary_dilation(g)
        if levels:
            m = np.round(m * levels) / levels  # many ties between normal and defect pixels
        maps.append(m.astype(np.float32))
        masks.append(g)
    return maps, masks


def _brute_aupro(maps, masks, limit=0.3):
    """Every distinct value as a threshold, overlaps counted from the masks, trapezoid to the limit."""
    regions = []
    for m, g in zip(maps, masks):
        lab, n = ndimage.label(g, structure=np.ones((3, 3)))
        regions += [m[lab == k] for k in range(1, n + 1)]
    normal = np.concatenate([m[~g] for m, g in zip(maps, masks)])
    values = np.unique(np.concatenate([m.ravel() for m in maps]))[::-1]
    fpr = [0.0] + [float((normal >= t).mean()) for t in values]
    pro = [0.0] + [float(np.mean([(r >= t).mean() for r in regions])) for t in values]
    fpr, pro = np.array(fpr), np.array(pro)
    k = int(np.searchsorted(fpr, limit, side="right"))
    xs, ys = list(fpr[:k]), list(pro[:k])
    if k < len(fpr):
        ys.append(pro[k - 1] + (pro[k] - pro[k - 1]) * (limit - fpr[k - 1]) / (fpr[k] - fpr[k - 1]))
        xs.append(limit)
    return np.trapezoid(ys, xs) / limit


@pytest.mark.parametrize("levels", [None, 6])
def test_aupro_matches_brute_force(levels):
    maps, masks = _data(0, levels=levels)
    got = seg.aupro(maps, masks)
    assert got == pytest.approx(_brute_aupro(maps, masks), abs=1e-9)
    assert 0.3 < got < 1.0
    assert seg.aupro(maps, masks, fpr_limit=1.0) == pytest.approx(_brute_aupro(maps, masks, 1.0), abs=1e-9)


def test_aupro_perfect_and_subsampled_thresholds():
    maps, masks = _data(1)
    perfect = [g.astype(np.float32) + 0.01 * m for m, g in zip(maps, masks)]
    assert seg.aupro(perfect, masks) == pytest.approx(1.0, abs=1e-6)
    exact = seg.aupro(maps, masks)
    assert seg.aupro(maps, masks, max_steps=300) == pytest.approx(exact, abs=5e-3)


def test_pixel_auroc_matches_sklearn_and_skips_images_without_masks():
    maps, masks = _data(2)
    expected = roc_auc_score(np.concatenate([g.ravel() for g in masks]), np.concatenate([m.ravel() for m in maps]))
    assert seg.pixel_auroc(maps, masks) == pytest.approx(expected, abs=1e-12)
    # an image without a mask is excluded, not counted as defect-free
    hot = np.ones((24, 24), np.float32) * 5
    assert seg.pixel_auroc(maps + [hot], masks + [None]) == pytest.approx(expected, abs=1e-12)
    assert seg.aupro(maps + [hot], masks + [None]) == pytest.approx(seg.aupro(maps, masks), abs=1e-12)
    assert seg.pixel_auroc(maps, [None] * len(maps)) is None
    assert seg.aupro([maps[1]], [masks[1]]) is None  # no defect region at all


def test_shape_mismatch_and_mask_alignment():
    with pytest.raises(ValueError, match="align_mask"):
        seg.pixel_auroc([np.zeros((4, 4))], [np.zeros((8, 8), bool)])
    big = np.zeros((64, 64), np.uint8)
    big[8:24, 8:24] = 255
    small = seg.align_mask(big, (16, 16))
    assert small.shape == (16, 16) and small.sum() == 16
    assert seg.align_mask(small, (64, 64)).sum() == 256
