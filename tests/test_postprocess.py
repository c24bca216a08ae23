"""Post-processing: threshold, min area (in image pixels), verdicts, overlays, display range."""
from __future__ import annotations

import numpy as np
import pytest

from anomaly_gui.core import postprocess as pp


def _two_blobs() -> np.ndarray:
    m = np.zeros((64, 64), np.float32)
    m[5:8, 5:8] = 0.9  # 9 px, max 0.9
    m[30:40, 20:30] = 0.6  # 100 px
    m[35, 25] = 0.8
    return m


def test_threshold_and_min_area_remove_small_regions():
    m = _two_blobs()
    r = pp.postprocess(m, threshold=0.5, min_area=0)
    assert r.anomalous and len(r.regions) == 2
    assert sorted(reg.area for reg in r.regions) == [9.0, 100.0]
    assert r.regions[0].max_score == pytest.approx(0.9)  # sorted by max score
    r = pp.postprocess(m, threshold=0.5, min_area=10)
    assert [reg.area for reg in r.regions] == [100.0]
    assert r.regions[0].bbox == (20.0, 30.0, 30.0, 40.0)
    assert r.regions[0].max_score == pytest.approx(0.8)
    assert r.mask.sum() == 100 and not r.mask[6, 6]
    r = pp.postprocess(m, threshold=0.5, min_area=101)
    assert not r.anomalous and not r.mask.any() and r.regions == []
    # threshold above every score
    assert not pp.postprocess(m, threshold=0.95).anomalous
    # the boundary: score == threshold counts as anomalous, area == min_area survives
    assert pp.postprocess(m, threshold=0.9, min_area=9).anomalous


def test_min_area_is_in_image_pixels_when_map_is_smaller():
    m = _two_blobs()  # 64x64 map of a 256x256 image: one map pixel = 16 image pixels
    r = pp.postprocess(m, threshold=0.5, min_area=150, image_size=(256, 256))
    assert [reg.area for reg in r.regions] == [1600.0]
    assert r.regions[0].bbox == (80.0, 120.0, 120.0, 160.0)
    assert r.mask_at((256, 256)).sum() == 1600
    # 9 map px = 144 image px < 150
    assert sorted(r.area for r in pp.postprocess(m, 0.5, 144, (256, 256)).regions) == [144.0, 1600.0]
    fast = pp.threshold_mask(m, 0.5, 150, (256, 256))
    np.testing.assert_array_equal(fast, r.mask)


def test_threshold_mask_matches_full_postprocess_on_random_maps():
    rng = np.random.default_rng(0)
    for _ in range(5):
        m = rng.random((50, 70)).astype(np.float32)
        for t, a in [(0.7, 0), (0.8, 3), (0.6, 20), (0.99, 2)]:
            np.testing.assert_array_equal(pp.threshold_mask(m, t, a), pp.postprocess(m, t, a).mask)


def test_critical_threshold_is_where_the_verdict_flips():
    rng = np.random.default_rng(1)
    m = rng.random((32, 32)).astype(np.float32)
    for a in [0, 1, 5, 30, 200]:
        c = pp.critical_threshold(m, a)
        assert pp.postprocess(m, c, a).anomalous
        above = np.nextafter(np.float32(c), np.float32(np.inf))
        assert not pp.postprocess(m, float(above), a).anomalous
    assert pp.critical_threshold(m, 32 * 32 + 1) == float("-inf")


def test_verdict_cache_follows_sliders():
    rng = np.random.default_rng(2)
    maps = [rng.random((40, 40)).astype(np.float32) * 0.5 for _ in range(6)]
    maps[1][10:20, 10:20] = 0.9  # big defect
    maps[2][3, 3] = 0.95  # a single hot pixel
    cache = pp.VerdictCache(maps, exact=True)
    assert cache.has_critical(0) and not cache.has_critical(50)
    assert list(cache.verdicts(0.8, 0)) == [False, True, True, False, False, False]
    assert list(cache.verdicts(0.8, 50)) == [False, True, False, False, False, False]
    assert list(cache.verdicts(0.95, 0)) == [False, False, True, False, False, False]
    for t in [0.3, 0.49, 0.8, 0.9, 0.96]:
        for a in [0, 2, 50, 101]:
            expected = [pp.postprocess(m, t, a).anomalous for m in maps]
            assert list(cache.verdicts(t, a)) == expected, (t, a)
            assert list(pp.verdicts_from_critical(cache.critical(a), t)) == expected, (t, a)


def test_downsampled_cache_agrees_on_clear_cases():
    maps = [np.zeros((512, 512), np.float32) for _ in range(3)]
    maps[0][100:200, 100:200] = 1.0  # 10,000 px
    maps[1][10:14, 10:14] = 1.0  # 16 px: survives min area 0, removed at 1,000
    cache = pp.VerdictCache(maps, image_sizes=[(1024, 1024)] * 3, max_side=128)
    assert cache.small[0].shape == (128, 128)
    assert list(cache.verdicts(0.5, 0)) == [True, True, False]
    assert list(cache.verdicts(0.5, 4000)) == [True, False, False]  # 100x100 map px = 40,000 image px


def test_overlay_marks_anomalies_in_red_and_keeps_the_rest():
    img = np.full((100, 120), 128, np.uint8)  # grayscale image
    mask = np.zeros((25, 30), bool)  # at a quarter of the resolution
    mask[5:10, 5:10] = True
    out = pp.overlay(img, mask)
    assert out.shape == (100, 120, 3) and out.dtype == np.uint8
    inside = out[30, 30]
    assert inside[0] > 180 and inside[1] < 80 and inside[2] < 80
    np.testing.assert_array_equal(out[80, 100], [128, 128, 128])
    heat = pp.overlay(img, None, heat=np.ones((10, 10), np.float32))
    assert not np.array_equal(heat[0, 0], [128, 128, 128])


def test_contours_and_mask_image_in_image_pixels():
    mask = np.zeros((10, 10), bool)
    mask[2:5, 2:5] = True
    cs = pp.contours(mask, size=(100, 100))
    assert len(cs) == 1
    xs, ys = cs[0][:, 0], cs[0][:, 1]
    assert xs.min() == pytest.approx(25) and xs.max() == pytest.approx(45)
    mi = pp.mask_image(mask, (100, 100))
    assert mi.dtype == np.uint8 and set(np.unique(mi)) == {0, 255} and (mi > 0).sum() == 900


def test_display_normalisation_is_global_not_per_image():
    quiet = np.full((8, 8), 0.1, np.float32)
    quiet[0, 0] = 0.2
    loud = np.full((8, 8), 0.1, np.float32)
    loud[0, 0] = 2.0
    rng = pp.global_range([quiet, loud], 0.0, 1.0)
    assert (rng.lo, rng.hi) == pytest.approx((0.1, 2.0))
    # a good part stays cool: its small bump is not stretched to full red
    assert pp.normalize_for_display(quiet, rng).max() < 0.1
    assert pp.normalize_for_display(loud, rng).max() == pytest.approx(1.0)
    assert pp.normalized_score(1.0, threshold=1.0, rng=rng) == pytest.approx(0.5)
    assert pp.DisplayRange.from_dict(rng.to_dict()) == rng


def test_bad_map_shape_is_a_clear_error():
    with pytest.raises(ValueError, match="2-D"):
        pp.postprocess(np.zeros((2, 3, 4)), 0.5)
    assert pp.postprocess(np.zeros((1, 5, 5)), 0.5).mask.shape == (5, 5)
