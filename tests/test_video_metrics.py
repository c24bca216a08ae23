"""Video metrics against scikit-learn and a direct threshold sweep; regularity and box sums."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from anomaly_gui.core.metrics.video import (
    coverage_value,
    equal_error_rate,
    frame_auc,
    per_clip_minmax,
    ucsd_detected,
    ucsd_pixel_auc,
)
from anomaly_gui.core.postprocess import regions
from anomaly_gui.core.metrics.segmentation import pixel_auroc
from anomaly_gui.engines.video_common.postprocess import (
    anomaly_from_errors,
    box_sum,
    regularity,
)


def test_frame_auc_pools_clips_like_sklearn():
    rng = np.random.default_rng(1)
    ys = [rng.random(50) > 0.6, rng.random(30) > 0.3]
    ss = [y * 0.5 + rng.random(len(y)) for y in ys]
    assert frame_auc(ys, ss) == pytest.approx(roc_auc_score(np.concatenate(ys), np.concatenate(ss)))
    assert frame_auc([np.zeros(5, bool)], [np.arange(5.0)]) is None  # one class only
    with pytest.raises(ValueError):
        frame_auc([np.zeros(3, bool)], [np.zeros(4)])


def test_regularity_follows_the_paper():
    e = np.array([2.0, 4.0, 6.0, 3.0])
    s = regularity(e)
    assert s.tolist() == pytest.approx([1.0, 0.5, 0.0, 0.75])  # s(t) = 1 - (e - min) / (max - min)
    assert anomaly_from_errors(e).tolist() == pytest.approx([0.0, 0.5, 1.0, 0.25])
    assert regularity(np.full(3, 7.0)).tolist() == [1.0, 1.0, 1.0]


def test_per_clip_minmax_is_the_one_normalisation_and_a_log_scale_changes_it_but_not_the_raw_auc():
    e = np.array([2.0, 4.0, 6.0, 3.0])
    assert per_clip_minmax(e).tolist() == pytest.approx([0.0, 0.5, 1.0, 0.25])
    assert per_clip_minmax(np.full(4, 3.0)).tolist() == [0.0] * 4 and per_clip_minmax(np.zeros(0)).size == 0
    assert anomaly_from_errors(e).tolist() == per_clip_minmax(e).tolist()  # the engines' option calls the core
    # one clip with a huge spike squashes its other anomalous frames on a linear scale, not on dB (Liu's PSNR)
    spike = np.array([1.0, 1.0, 1.0, 10.0, 10.0, 1000.0])
    calm = np.array([2.0, 2.0, 2.0, 2.5, 4.0, 4.0])
    ys = [np.array([0, 0, 0, 1, 1, 1]), np.array([0, 0, 0, 0, 1, 1])]
    lin = frame_auc(ys, [per_clip_minmax(spike), per_clip_minmax(calm)])
    db = frame_auc(ys, [per_clip_minmax(10 * np.log10(spike)), per_clip_minmax(10 * np.log10(calm))])
    assert lin < 1.0 == db
    assert frame_auc(ys, [spike, calm]) == frame_auc(ys, [10 * np.log10(spike), 10 * np.log10(calm)])


def test_box_sum_is_the_sum_over_a_k_by_k_box():
    rng = np.random.default_rng(0)
    err = rng.random((12, 15)).astype(np.float32)
    out = box_sum(err, 4)
    # OpenCV anchors an even box at (k/2, k/2): rows y-2 .. y+1
    y, x = 6, 7
    assert out[y, x] == pytest.approx(err[y - 2 : y + 2, x - 2 : x + 2].sum(), rel=1e-5)
    assert box_sum(err, 1).tolist() == err.tolist()
    assert box_sum(np.stack([err, err]), 3).shape == (2, 12, 15)


def test_regions_drop_small_components():
    m = np.zeros((20, 20), bool)
    m[2:4, 2:4] = True  # 4 px
    m[10:16, 10:16] = True  # 36 px
    kept, boxes = regions(m, min_area=10)
    assert kept.sum() == 36 and boxes == [(10, 10, 6, 6, 36)]


def test_pixel_auroc_matches_sklearn():
    rng = np.random.default_rng(2)
    masks = [rng.random((8, 8)) > 0.8 for _ in range(3)]
    maps = [m * 0.7 + rng.random((8, 8)) for m in masks]
    ref = roc_auc_score(np.concatenate([m.ravel() for m in masks]), np.concatenate([a.ravel() for a in maps]))
    assert pixel_auroc(maps, masks) == pytest.approx(ref)


def test_ucsd_pixel_criterion_matches_a_direct_threshold_sweep():
    rng = np.random.default_rng(3)
    labels, masks, maps = [], [], []
    for k in range(40):
        anom = k % 2 == 0
        m = np.zeros((16, 16), bool)
        if anom:
            m[4:10, 5:11] = True
        a = rng.random((16, 16)).astype(np.float32) + (m * rng.uniform(0.2, 1.5))
        labels.append(anom), masks.append(m if anom else None), maps.append(a)
    labels = np.array(labels)
    auc, eer = ucsd_pixel_auc(labels, masks, maps)
    # direct form: sweep thresholds, TPR = detected anomalous frames (>= 40 % of their pixels flagged), FPR = normal
    # frames with any flagged pixel; the area under that curve is the same number.
    # every value where a frame's outcome can switch: frame maxima and every pixel value inside a mask
    thr = np.unique(np.concatenate([[a.max() for a in maps]] + [a[m] for m, a in zip(masks, maps) if m is not None]))
    thr = np.concatenate([[thr[0] - 1], thr - 1e-6])
    tpr, fpr = [1.0], [1.0]
    for t in thr:
        tpr.append(np.mean([ucsd_detected(m, a > t) for y, m, a in zip(labels, masks, maps) if y]))
        fpr.append(np.mean([(a > t).any() for y, a in zip(labels, maps) if not y]))
    tpr.append(0.0), fpr.append(0.0)
    order = np.lexsort((tpr, fpr))  # along the curve: by FPR, then TPR (vertical steps)
    direct = np.trapezoid(np.array(tpr)[order], np.array(fpr)[order])
    assert auc == pytest.approx(direct, abs=0.01)
    assert 0.0 <= eer <= 1.0
    m = np.zeros((4, 4), bool)
    m[0, :] = True  # 4 pixels: 40 % coverage needs 2 of them above the threshold
    a = np.zeros((4, 4), np.float32)
    a[0] = [0.9, 0.5, 0.1, 0.0]
    assert coverage_value(m, a) == pytest.approx(0.5)


def test_equal_error_rate():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    assert equal_error_rate(y, np.arange(8.0)) == pytest.approx(0.0)
    assert equal_error_rate(y, -np.arange(8.0)) == pytest.approx(1.0)


def test_frame_error_variants():
    from anomaly_gui.engines.video_common.base import VideoAEParams, frame_errors

    err = np.zeros((5, 16, 16), np.float32)
    err[2, 4:8, 4:8] = 1.0  # a 4x4 blob in frame 2
    err[3, 0, 0] = 3.0  # one hot pixel in frame 3
    maps = box_sum(err, 4)
    e_sum = frame_errors(err, maps, VideoAEParams(frame_error="sum"))
    assert e_sum.tolist() == pytest.approx([0, 0, 16, 3, 0])
    e_box = frame_errors(err, maps, VideoAEParams(frame_error="max_box", box=4))
    assert e_box[2] == pytest.approx(16) and e_box[3] == pytest.approx(3)
    e_big = frame_errors(err, maps, VideoAEParams(frame_error="max_box", box=4, score_box=8))
    assert e_big[2] == pytest.approx(16) and e_big[3] == pytest.approx(3)
    e_smooth = frame_errors(err, maps, VideoAEParams(frame_error="sum", smooth=1.0))
    assert e_smooth[2] < 16 and e_smooth[1] > 0 and e_smooth.sum() == pytest.approx(19, rel=0.05)
    e_causal = frame_errors(err, maps, VideoAEParams(frame_error="sum", smooth=1.0, smooth_mode="causal"))
    assert e_causal[:2].tolist() == [0, 0]  # reads no future frame: frames before the blob are untouched
    assert 0 < e_causal[2] < 16 and e_causal[4] > 0 and e_causal.sum() == pytest.approx(19, rel=0.05)
    e_db = frame_errors(err, maps, VideoAEParams(frame_error="sum", frame_scale="log"))
    assert e_db[2] == pytest.approx(10 * np.log10(16)) and e_db[3] == pytest.approx(10 * np.log10(3))
    assert e_db[0] == pytest.approx(-60)  # an error of 0 sits at the floor (1e-6), not at -inf
