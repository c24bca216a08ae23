"""SAR imagery: single-band 8/16-bit (or float) input, display stretches and speckle filters.

SAR intensities span several orders of magnitude with a few very bright scatterers (ships, corner
reflectors), so a plain min-max scaling shows a black image. Two stretches are offered: percentile
(clip to the lo-hi percentiles of the band) and dB (10·log10 of intensity, or 20·log10 of amplitude,
then the percentile stretch in dB). Speckle filters: Lee (local statistics) and median.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

STRETCHES = ("none", "percentile", "db")
SPECKLE_FILTERS = ("none", "lee", "median")


@dataclass
class SarDisplay:
    """How to turn a SAR band into an 8-bit picture (for display and for the detector's input)."""

    stretch: str = "percentile"  # none | percentile | db
    low: float = 2.0  # lower percentile
    high: float = 99.5  # upper percentile
    amplitude: bool = True  # data is amplitude (20·log10) rather than intensity (10·log10) for the dB stretch
    speckle: str = "none"  # none | lee | median
    window: int = 5  # speckle filter window (odd)


def to_band(img: np.ndarray) -> np.ndarray:
    """A single band as float32: gray stays, RGB(A) is averaged (SAR exported as RGB has equal channels)."""
    arr = np.asarray(img)
    if arr.ndim == 3:
        arr = arr[:, :, :3].mean(axis=2) if arr.shape[2] >= 3 else arr[:, :, 0]
    if arr.ndim != 2:
        raise ValueError(f"expected a single-band or RGB image, got shape {arr.shape}")
    return arr.astype(np.float32, copy=False)


def _percentile_range(band: np.ndarray, low: float, high: float, sample: int = 1_000_000) -> tuple[float, float]:
    flat = band.ravel()
    if flat.size > sample:  # a strided sample keeps large scenes cheap
        flat = flat[:: flat.size // sample]
    finite = flat[np.isfinite(flat)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(finite, [low, high])
    if hi <= lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def stretch_percentile(band: np.ndarray, low: float = 2.0, high: float = 99.5,
                       limits: tuple[float, float] | None = None) -> np.ndarray:
    """uint8 image with the [low, high] percentiles (or the given `limits`) mapped to [0, 255]."""
    band = to_band(band)
    lo, hi = limits if limits is not None else _percentile_range(band, low, high)
    out = (band - lo) * (255.0 / (hi - lo))
    return np.clip(out, 0, 255).astype(np.uint8)


def to_db(band: np.ndarray, amplitude: bool = True) -> np.ndarray:
    """Decibels: 20·log10(amplitude) or 10·log10(intensity); zeros map to the smallest positive value."""
    band = to_band(band)
    positive = band[band > 0]
    eps = float(positive.min()) if positive.size else 1.0
    return (20.0 if amplitude else 10.0) * np.log10(np.maximum(band, eps))


def stretch_db(band: np.ndarray, low: float = 2.0, high: float = 99.5, amplitude: bool = True) -> np.ndarray:
    return stretch_percentile(to_db(band, amplitude), low, high)


def lee_filter(band: np.ndarray, window: int = 5, enl: float | None = None) -> np.ndarray:
    """Lee speckle filter: local mean plus the local deviation weighted by signal/(signal+noise) variance.

    `enl` (equivalent number of looks) sets the speckle's coefficient of variation (1/sqrt(enl)); when
    None it is estimated from the image (the median local variation, typical of homogeneous sea clutter).
    """
    import cv2

    band = to_band(band).astype(np.float32)
    k = max(3, int(window) | 1)
    mean = cv2.boxFilter(band, -1, (k, k), borderType=cv2.BORDER_REFLECT)
    sq = cv2.boxFilter(band * band, -1, (k, k), borderType=cv2.BORDER_REFLECT)
    var = np.maximum(sq - mean * mean, 0)
    if enl is None:
        cv2_ = var / np.maximum(mean * mean, 1e-12)
        cu2 = float(np.median(cv2_[mean > 0])) if np.any(mean > 0) else 0.0
    else:
        cu2 = 1.0 / float(enl)
    signal_var = np.maximum((var - mean * mean * cu2) / (1.0 + cu2), 0)
    weight = signal_var / np.maximum(var, 1e-12)
    return (mean + weight * (band - mean)).astype(np.float32)


def median_filter(band: np.ndarray, window: int = 5) -> np.ndarray:
    from scipy.ndimage import median_filter as _median

    return _median(to_band(band), size=max(3, int(window) | 1), mode="reflect").astype(np.float32)


_FILTERS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "none": lambda band, window: band,
    "lee": lee_filter,
    "median": median_filter,
}
_STRETCHES: dict[str, Callable[[np.ndarray, SarDisplay], np.ndarray]] = {
    "none": lambda band, d: stretch_percentile(band, 0.0, 100.0),
    "percentile": lambda band, d: stretch_percentile(band, d.low, d.high),
    "db": lambda band, d: stretch_db(band, d.low, d.high, d.amplitude),
}


def render(img: np.ndarray, display: SarDisplay | None = None) -> np.ndarray:
    """Filter and stretch a SAR image to HxW uint8."""
    d = display or SarDisplay()
    if d.speckle not in _FILTERS:
        raise ValueError(f"unknown speckle filter {d.speckle!r}; known: {', '.join(_FILTERS)}")
    if d.stretch not in _STRETCHES:
        raise ValueError(f"unknown stretch {d.stretch!r}; known: {', '.join(_STRETCHES)}")
    band = _FILTERS[d.speckle](to_band(img), d.window)
    return _STRETCHES[d.stretch](band, d)


def render_rgb(img: np.ndarray, display: SarDisplay | None = None) -> np.ndarray:
    """`render` replicated to HxWx3 (the detectors take 3-channel input)."""
    g = render(img, display)
    return np.repeat(g[:, :, None], 3, axis=2)


def is_single_band(img: np.ndarray) -> bool:
    """True for gray images and RGB images whose channels are equal (SAR saved as RGB JPEG)."""
    if img.ndim == 2:
        return True
    if img.ndim == 3 and img.shape[2] >= 3:
        sample = img[::16, ::16, :3].astype(np.int16)
        return bool(np.abs(sample[..., 0] - sample[..., 1]).max(initial=0) <= 8
                    and np.abs(sample[..., 1] - sample[..., 2]).max(initial=0) <= 8)
    return False
