"""Threshold choice on validation maps (with and without labelled anomalies) and the finetune curves."""
from __future__ import annotations

import numpy as np
import pytest

from anomaly_gui.core import postprocess as pp
from anomaly_gui.core import thresholds as th


def _maps(seed: int = 0) -> tuple[list[np.ndarray], list[int]]:
    rng = np.random.default_rng(seed)
    maps, labels = [], []
    for i in range(12):
        m = (rng.random((48, 48)) * 0.4).astype(np.float32)
        if i % 3 == 0:  # anomalous: a 10x10 block of high scores
            m[10:20, 10:20] = 0.6 + 0.02 * i
            labels.append(1)
        else:
            m[5, 5] = 0.55  # normal images may have one hot pixel
            labels.append(0)
        maps.append(m)
    return maps, labels


def test_best_f1_with_labelled_anomalies_separates_them():
    maps, labels = _maps()
    choice = th.pick_threshold(maps, labels, min_area=0)
    assert choice.method == "f1" and choice.f1 == pytest.approx(1.0)
    assert 0.55 < choice.threshold <= 0.6 + 1e-6
    # with a min area the hot pixels no longer matter and the threshold may go lower
    choice_a = th.pick_threshold(maps, labels, min_area=20, max_side=None)
    assert choice_a.f1 == pytest.approx(1.0)
    verdicts = [pp.postprocess(m, choice_a.threshold, 20).anomalous for m in maps]
    assert verdicts == [bool(v) for v in labels]


def test_normal_only_gives_the_smallest_threshold_without_false_alarms():
    maps, labels = _maps()
    normals = [m for m, y in zip(maps, labels) if y == 0]
    for area in [0, 1, 5, 40]:
        choice = th.pick_threshold(normals, None, min_area=area, max_side=None)
        assert choice.method == "normal_max" and choice.n_normal == len(normals)
        assert not any(pp.postprocess(m, choice.threshold, area).anomalous for m in normals)
        # and it is the smallest such: one float step lower flags at least one normal image
        lower = float(np.nextafter(np.float32(choice.threshold), np.float32(-np.inf)))
        assert any(pp.postprocess(m, lower, area).anomalous for m in normals)
    # the anomalies are still caught at min area 20 from normals alone
    choice = th.pick_threshold(normals, None, min_area=20, max_side=None)
    assert all(pp.postprocess(m, choice.threshold, 20).anomalous for m, y in zip(maps, labels) if y)


def test_normal_quantile_and_margin():
    scores = np.arange(100, dtype=np.float64)
    q = th.pick_threshold_from_scores(scores, None, normal_quantile=0.9)
    assert q.method == "normal_quantile" and q.threshold == pytest.approx(89.1, abs=1e-3)
    m = th.pick_threshold_from_scores(scores, [0] * 100, margin=1.0)
    assert m.threshold == pytest.approx(99 + np.std(scores), rel=1e-6)
    # unknown labels are ignored, not counted as normal
    u = th.pick_threshold_from_scores([1.0, 5.0, 2.0], [0, None, 0])
    assert u.threshold == pytest.approx(2.0, rel=1e-6) and u.n_normal == 2
    with pytest.raises(ValueError):
        th.pick_threshold([], None)


def test_region_curves_count_regions_and_areas():
    m = np.zeros((40, 40), np.float32)
    m[0:2, 0:2] = 0.5  # 4 px
    m[10:20, 10:20] = 0.8  # 100 px
    curves = th.region_curves([m, m], [0.4, 0.7, 0.9], max_side=None)
    assert list(curves["n_regions"]) == [4, 2, 0]
    assert curves["mean_area"][0] == pytest.approx(52.0) and curves["std_area"][0] == pytest.approx(48.0)
    assert curves["mean_area"][1] == pytest.approx(100.0) and np.isnan(curves["mean_area"][2])
    assert list(curves["n_anomalous_images"]) == [2, 2, 0]
    filtered = th.region_curves([m], [0.4], min_area=10, max_side=None)
    assert list(filtered["n_regions"]) == [1]
    scaled = th.region_curves([m], [0.4], image_sizes=[(80, 80)], max_side=None)
    assert scaled["mean_area"][0] == pytest.approx(208.0)  # x4 in image pixels
    areas = th.area_distribution([m, m], 0.4, max_side=None)
    assert sorted(areas) == [4, 4, 100, 100]
    counts, edges = th.area_histogram(areas, bins=5)
    assert counts.sum() == 4 and len(edges) == 6
    grid = th.threshold_grid([m], n=7, lo_q=0.0)
    assert len(grid) == 7 and grid[0] == pytest.approx(0.0) and grid[-1] == pytest.approx(0.8)


def test_score_histograms_split_by_label():
    h = th.score_histograms([0.1, 0.2, 0.9, 0.5], [0, 0, 1, None], bins=4)
    assert h["normal"].sum() == 2 and h["anomalous"].sum() == 1 and h["unlabelled"].sum() == 1
    assert len(h["edges"]) == 5
