"""SAR: 8/16-bit single band, percentile and dB stretches, Lee and median speckle filters."""
from __future__ import annotations

import numpy as np
import pytest

from anomaly_gui.core import sar
from anomaly_gui.engines.detection_common import prepare_image


def _speckled(shape=(128, 128), seed=0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    clean = np.full(shape, 1000.0)
    clean[40:50, 50:70] = 20000.0  # a bright ship (1% of the scene)
    return (clean * rng.gamma(4.0, 0.25, shape)).clip(0, 65535).astype(np.uint16), clean


def test_percentile_stretch_16bit_uses_the_range():
    img, _ = _speckled()
    out = sar.stretch_percentile(img, 2, 98)
    assert out.dtype == np.uint8 and out.shape == img.shape
    assert out.min() == 0 and out.max() == 255
    assert np.mean(out == 255) < 0.15  # only the bright tail saturates
    naive = (img / 256).astype(np.uint8)  # what a plain 16->8 bit shift shows: a dark sea
    assert out[:30].mean() > 3 * naive[:30].mean()


def test_db_stretch_compresses_dynamic_range():
    img, _ = _speckled()
    db = sar.to_db(img, amplitude=True)
    assert db.max() - db.min() < 20 * np.log10(65535)
    out = sar.stretch_db(img)
    # ship and sea both keep structure in dB: the sea spreads over more grey levels than in a linear stretch
    assert len(np.unique(out[:30])) > len(np.unique(sar.stretch_percentile(img, 0, 100)[:30]))


@pytest.mark.parametrize("fn", [sar.lee_filter, sar.median_filter])
def test_speckle_filters_reduce_variance_keep_edges(fn):
    img, clean = _speckled()
    out = fn(img, 7)
    sea_before = img[:30].astype(float).std() / img[:30].mean()
    sea_after = out[:30].std() / out[:30].mean()
    assert sea_after < 0.6 * sea_before
    assert out[43:47, 55:65].mean() > 5 * out[:30].mean()  # the ship stays bright


def test_render_single_band_and_rgb_inputs():
    img, _ = _speckled()
    rgb = sar.render_rgb(img, sar.SarDisplay(stretch="db", speckle="lee"))
    assert rgb.shape == (*img.shape, 3) and rgb.dtype == np.uint8
    assert sar.is_single_band(rgb) and not sar.is_single_band(np.dstack([img, img * 0, img]).astype(np.uint16))
    with pytest.raises(ValueError, match="unknown stretch"):
        sar.render(img, sar.SarDisplay(stretch="gamma"))
    # detector input: 8-bit stays as it is, 16-bit is stretched
    g8 = (np.arange(64 * 64) % 256).astype(np.uint8).reshape(64, 64)
    assert np.array_equal(prepare_image(g8)[:, :, 0], g8)
    assert prepare_image(img).max() == 255
