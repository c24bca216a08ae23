"""Post-processing of raw anomaly maps: threshold, minimum defect area, verdicts, overlays, contours.

Pure numpy/OpenCV, no Qt and no torch, fast enough to follow a slider (see `benchmarks/bench_image.py`).

Conventions (the whole app follows them):
- A pixel is anomalous when its **raw** score is ``>= threshold`` (one global threshold; never a
  per-image min-max stretch for the decision).
- ``min_area`` is in pixels of the *image*. When the map is smaller than the image (model resolution or a
  downsampled cache), the area is scaled by the ratio of pixel counts, and region areas/boxes are reported
  in image pixels.
- Regions are 8-connected components of the thresholded map; those with area < ``min_area`` are removed.
  An image is anomalous when at least one region survives.
- Per-image normalisation exists only for display (`normalize_for_display`, with a *global* range).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np

Size = tuple[int, int]  # (width, height), as OpenCV and Qt count


@dataclass
class Region:
    """One connected defect region, in image pixels."""

    area: float  # image pixels (scaled when the map is smaller than the image)
    bbox: tuple[float, float, float, float]  # x1, y1, x2, y2 (exclusive) in image pixels
    max_score: float
    centroid: tuple[float, float]  # x, y in image pixels

    def to_dict(self) -> dict[str, object]:
        return {"area": self.area, "bbox": list(self.bbox), "max_score": self.max_score, "centroid": list(self.centroid)}


@dataclass
class PostResult:
    """What post-processing one map gives: the kept mask (map resolution), its regions and the verdict."""

    mask: np.ndarray  # bool (h, w) at map resolution, only the regions that survived min_area
    regions: list[Region] = field(default_factory=list)
    anomalous: bool = False
    max_score: float = float("-inf")
    scale: tuple[float, float] = (1.0, 1.0)  # image pixels per map pixel (x, y)

    def mask_at(self, size: Size) -> np.ndarray:
        """The kept mask resized (nearest) to `size` = (width, height); bool."""
        return resize_mask(self.mask, size)


def _as_map(raw: np.ndarray) -> np.ndarray:
    m = np.asarray(raw)
    if m.ndim == 3 and 1 in (m.shape[0], m.shape[-1]):
        m = m.reshape(m.shape[1:] if m.shape[0] == 1 else m.shape[:2])
    if m.ndim != 2:
        raise ValueError(f"an anomaly map must be 2-D, got shape {m.shape}")
    if m.dtype != np.float32:
        m = m.astype(np.float32)
    return m


def map_scale(map_shape: tuple[int, int], image_size: Size | None) -> tuple[float, float]:
    """Image pixels per map pixel along x and y."""
    h, w = map_shape[:2]
    if image_size is None:
        return 1.0, 1.0
    return image_size[0] / w, image_size[1] / h


def area_in_map(min_area: float, map_shape: tuple[int, int], image_size: Size | None) -> float:
    """`min_area` (image pixels) expressed in map pixels."""
    sx, sy = map_scale(map_shape, image_size)
    return float(min_area) / (sx * sy)


def resize_map(raw: np.ndarray, size: Size, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Resize a raw map to `size` = (width, height), float32 (bilinear by default)."""
    m = _as_map(raw)
    if (m.shape[1], m.shape[0]) == tuple(size):
        return m
    return cv2.resize(m, (int(size[0]), int(size[1])), interpolation=interpolation)


def regions(mask: np.ndarray, min_area: float = 0.0) -> tuple[np.ndarray, list[tuple[int, int, int, int, int]]]:
    """Connected components (8-connected) of a bool mask without those smaller than `min_area` pixels.

    Returns (kept mask, [(x, y, w, h, area), ...]).
    """
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = np.zeros(n, dtype=bool)
    boxes = []
    for i in range(1, n):
        x, y, w, h, a = (int(v) for v in stats[i])
        if a >= min_area:
            keep[i] = True
            boxes.append((x, y, w, h, a))
    return keep[lab], boxes


def resize_mask(mask: np.ndarray, size: Size) -> np.ndarray:
    """Resize a boolean mask (nearest neighbour) to `size` = (width, height)."""
    if (mask.shape[1], mask.shape[0]) == tuple(size):
        return mask.astype(bool, copy=False)
    out = cv2.resize(mask.astype(np.uint8), (int(size[0]), int(size[1])), interpolation=cv2.INTER_NEAREST)
    return out.astype(bool)


def _components(binary: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """(n labels incl. background, labels int32, area per label). Labelling without OpenCV's stats and
    counting with bincount is ~3x faster than connectedComponentsWithStats at 1024x1024."""
    n, labels = cv2.connectedComponentsWithAlgorithm(binary, 8, cv2.CV_32S, cv2.CCL_DEFAULT)
    areas = np.bincount(labels.ravel(), minlength=n)
    return n, labels, areas


def threshold_mask(raw: np.ndarray, threshold: float, min_area: float = 0.0, image_size: Size | None = None) -> np.ndarray:
    """Fast path for a slider: the kept mask (map resolution, bool), without the region list."""
    m = _as_map(raw)
    binary = (m >= threshold).view(np.uint8)
    a = area_in_map(min_area, m.shape, image_size)
    if a <= 1.0 or not binary.any():
        return binary.view(bool)
    n, labels, areas = _components(binary)
    keep = areas >= a - 1e-9
    keep[0] = False
    if keep[1:].all():
        return binary.view(bool)
    return keep[labels]


def postprocess(
    raw: np.ndarray,
    threshold: float,
    min_area: float = 0.0,
    image_size: Size | None = None,
    with_regions: bool = True,
) -> PostResult:
    """Threshold a raw map, remove regions smaller than `min_area` (image pixels), list what survives.

    `image_size` = (width, height) of the image the map belongs to (None: the map's own size).
    """
    m = _as_map(raw)
    sx, sy = map_scale(m.shape, image_size)
    a = float(min_area) / (sx * sy)
    binary = (m >= threshold).view(np.uint8)
    max_score = float(m.max()) if m.size else float("-inf")
    if not binary.any():
        return PostResult(mask=np.zeros(m.shape, bool), max_score=max_score, scale=(sx, sy))
    n, labels, areas = _components(binary)
    keep = areas >= a - 1e-9
    keep[0] = False
    kept = np.flatnonzero(keep)
    mask = keep[labels]
    regions: list[Region] = []
    if with_regions and len(kept):
        from scipy import ndimage

        flat = np.flatnonzero(mask)
        lab = labels.ravel()[flat]
        maxima = np.full(n, -np.inf, np.float32)
        np.maximum.at(maxima, lab, m.ravel()[flat])
        ys, xs = np.divmod(flat, m.shape[1])
        cx = np.bincount(lab, weights=xs, minlength=n)
        cy = np.bincount(lab, weights=ys, minlength=n)
        slices = ndimage.find_objects(np.where(mask, labels, 0))
        for k in kept:
            sl_y, sl_x = slices[k - 1]
            area = float(areas[k])
            regions.append(Region(
                area=area * sx * sy,
                bbox=(sl_x.start * sx, sl_y.start * sy, sl_x.stop * sx, sl_y.stop * sy),
                max_score=float(maxima[k]),
                centroid=((cx[k] / area + 0.5) * sx, (cy[k] / area + 0.5) * sy),
            ))
        regions.sort(key=lambda r: -r.max_score)
    return PostResult(mask=mask, regions=regions, anomalous=bool(len(kept)), max_score=max_score, scale=(sx, sy))


def region_areas(raw: np.ndarray, threshold: float, image_size: Size | None = None) -> np.ndarray:
    """Areas (image pixels) of every connected region at `threshold`, no min-area filter."""
    m = _as_map(raw)
    sx, sy = map_scale(m.shape, image_size)
    binary = (m >= threshold).view(np.uint8)
    if not binary.any():
        return np.zeros(0, np.float64)
    _, _, areas = _components(binary)
    return areas[1:].astype(np.float64) * sx * sy


def critical_threshold(raw: np.ndarray, min_area: float = 0.0, image_size: Size | None = None) -> float:
    """The largest threshold at which a region of at least `min_area` (image pixels) survives.

    Superlevel sets are nested, so the largest region's area never grows with the threshold: the image is
    anomalous at threshold t exactly when ``t <= critical_threshold``. With min_area 0 it is the max score;
    -inf when even the whole map is smaller than min_area. Binary search over the map's sorted values.
    """
    m = _as_map(raw)
    a = area_in_map(min_area, m.shape, image_size)
    if m.size == 0:
        return float("-inf")
    if a <= 1.0:
        return float(m.max())
    if a > m.size + 1e-9:
        return float("-inf")
    values = np.unique(m)
    # a region of area >= a needs at least ceil(a) pixels >= t, so t cannot exceed the ceil(a)-th largest value
    n = int(np.ceil(a - 1e-9))
    kth = np.partition(m.ravel(), m.size - n)[m.size - n]
    k_hi = int(np.searchsorted(values, kth, side="left"))
    lo, hi = 0, k_hi  # values[lo] always qualifies (whole map); find the largest qualifying index
    if _has_region(m, values[hi], a):
        return float(values[hi])
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _has_region(m, values[mid], a):
            lo = mid
        else:
            hi = mid
    return float(values[lo])


def _has_region(m: np.ndarray, t: float, a: float) -> bool:
    binary = (m >= t).view(np.uint8)
    n, _, areas = _components(binary)
    return bool(n > 1 and areas[1:].max() >= a - 1e-9)


def downsample_map(raw: np.ndarray, max_side: int = 128) -> np.ndarray:
    """A smaller copy for verdict caches (area-averaging keeps the levels; the max is kept separately)."""
    m = _as_map(raw)
    h, w = m.shape
    s = max(h, w)
    if s <= max_side:
        return m
    f = max_side / s
    return cv2.resize(m, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)


class VerdictCache:
    """Every item's verdict as the threshold and min-area sliders move, from cached raw maps.

    Holds each item's max score and a downsampled map. ``verdicts(t, a)``: an item whose max score is
    below t is normal without labelling anything; the rest are checked with connected components on the
    small map (area scaled to image pixels). With ``exact=True`` the full-resolution maps are kept and used.
    For a fixed min area, ``critical(a)`` gives per item the largest threshold at which it is anomalous, so
    a threshold slider then costs one comparison per item (`verdicts_from_critical`).
    """

    def __init__(self, maps: Sequence[np.ndarray], image_sizes: Sequence[Size | None] | None = None,
                 max_side: int = 128, exact: bool = False) -> None:
        self.image_sizes: list[Size] = []
        self.small: list[np.ndarray] = []
        maxima = []
        for i, raw in enumerate(maps):
            m = _as_map(raw)
            size = image_sizes[i] if image_sizes is not None and image_sizes[i] is not None else (m.shape[1], m.shape[0])
            self.image_sizes.append((int(size[0]), int(size[1])))
            maxima.append(float(m.max()) if m.size else float("-inf"))
            self.small.append(m if exact else downsample_map(m, max_side))
        self.max_scores = np.asarray(maxima, np.float32)  # float32 like the maps, so comparisons agree
        self._critical: dict[float, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.small)

    def verdicts(self, threshold: float, min_area: float = 0.0) -> np.ndarray:
        out = self.max_scores >= np.float32(threshold)
        if min_area <= 0:
            return out
        for i in np.flatnonzero(out):
            m = self.small[i]
            a = area_in_map(min_area, m.shape, self.image_sizes[i])
            if a <= 1.0:
                continue
            out[i] = _has_region(m, threshold, a)
        return out

    def has_critical(self, min_area: float) -> bool:
        """Whether `critical(min_area)` is already computed (then a threshold slider is instant)."""
        return float(min_area) <= 0 or float(min_area) in self._critical

    def critical(self, min_area: float = 0.0) -> np.ndarray:
        """Per item: the largest threshold at which it is anomalous for this min area (cached)."""
        key = float(min_area)
        if key not in self._critical:
            if key <= 0:
                self._critical[key] = self.max_scores.copy()
            else:
                self._critical[key] = np.asarray(
                    [critical_threshold(m, key, s) for m, s in zip(self.small, self.image_sizes)], np.float32)
        return self._critical[key]


def verdicts_from_critical(critical: np.ndarray, threshold: float) -> np.ndarray:
    """Anomalous flags from `VerdictCache.critical` values at a threshold."""
    return np.asarray(critical, np.float32) >= np.float32(threshold)


# -- display ---------------------------------------------------------------------------------------
@dataclass
class DisplayRange:
    """A global range for showing maps (the same for every item of a run)."""

    lo: float
    hi: float

    def to_dict(self) -> dict[str, float]:
        return {"lo": self.lo, "hi": self.hi}

    @classmethod
    def from_dict(cls, d: dict[str, float]) -> "DisplayRange":
        return cls(float(d["lo"]), float(d["hi"]))


def global_range(maps_or_values: Sequence[np.ndarray] | np.ndarray, lo_q: float = 0.0, hi_q: float = 0.999,
                 max_samples: int = 2_000_000) -> DisplayRange:
    """A display range over many maps (quantiles of their pooled values, sub-sampled for speed)."""
    if isinstance(maps_or_values, np.ndarray):
        arrays = [maps_or_values.ravel()]
    else:
        arrays = [np.asarray(m, np.float32).ravel() for m in maps_or_values]
    total = sum(a.size for a in arrays)
    if total == 0:
        return DisplayRange(0.0, 1.0)
    step = max(1, total // max_samples)
    pooled = np.concatenate([a[::step] for a in arrays]).astype(np.float64)
    pooled = pooled[np.isfinite(pooled)]
    if pooled.size == 0:
        return DisplayRange(0.0, 1.0)
    lo, hi = np.quantile(pooled, [lo_q, hi_q])
    if hi - lo < 1e-12:
        hi = lo + 1.0
    return DisplayRange(float(lo), float(hi))


def normalize_for_display(raw: np.ndarray, rng: DisplayRange) -> np.ndarray:
    """Map raw scores into [0, 1] with a global range (display only, never for the decision)."""
    m = _as_map(raw)
    return np.clip((m - rng.lo) / max(rng.hi - rng.lo, 1e-12), 0.0, 1.0)


def normalized_score(score: float | np.ndarray, threshold: float, rng: DisplayRange) -> float | np.ndarray:
    """Score rescaled so that the threshold sits at 0.5 (anomalib's convention) for display, clipped to [0, 1]."""
    s = np.asarray(score, np.float64)
    below = 0.5 * (s - rng.lo) / max(threshold - rng.lo, 1e-12)
    above = 0.5 + 0.5 * (s - threshold) / max(rng.hi - threshold, 1e-12)
    out = np.clip(np.where(s < threshold, below, above), 0.0, 1.0)
    return float(out) if out.ndim == 0 else out


def colorize(map01: np.ndarray, colormap: int = cv2.COLORMAP_JET) -> np.ndarray:
    """[0, 1] map -> RGB uint8 heat image."""
    u8 = (np.clip(map01, 0, 1) * 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(u8, colormap), cv2.COLOR_BGR2RGB)


def contours(mask: np.ndarray, size: Size | None = None) -> list[np.ndarray]:
    """Outlines of a boolean mask as (N, 2) float arrays of x, y in image pixels (`size` = image size)."""
    m = mask.astype(np.uint8)
    found, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    sx, sy = map_scale(m.shape, size)
    out = []
    for c in found:
        pts = c.reshape(-1, 2).astype(np.float64)
        pts[:, 0] = (pts[:, 0] + 0.5) * sx
        pts[:, 1] = (pts[:, 1] + 0.5) * sy
        out.append(pts)
    return out


def overlay(image: np.ndarray, mask: np.ndarray | None, heat: np.ndarray | None = None, alpha: float = 0.45,
            color: tuple[int, int, int] = (255, 0, 0), heat_alpha: float = 0.4, outline: bool = True) -> np.ndarray:
    """The image (any depth/channels) as RGB uint8 with anomalies in red (filled + outlined).

    `mask`: bool at any resolution (resized to the image); `heat`: optional [0, 1] map blended as a colour map.
    """
    from anomaly_gui.core.imageio import to_rgb8

    rgb = to_rgb8(np.asarray(image)).copy()
    h, w = rgb.shape[:2]
    if heat is not None:
        hm = colorize(resize_map(heat, (w, h)))
        rgb = cv2.addWeighted(rgb, 1.0 - heat_alpha, hm, heat_alpha, 0.0)
    if mask is not None:
        m = resize_mask(np.asarray(mask, bool), (w, h))
        if m.any():
            col = np.asarray(color, np.float32)
            rgb[m] = (rgb[m].astype(np.float32) * (1 - alpha) + col * alpha).astype(np.uint8)
            if outline:
                found, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
                cv2.drawContours(rgb, found, -1, tuple(int(c) for c in color), max(1, round(min(h, w) / 400)))
    return rgb


def mask_image(mask: np.ndarray, size: Size | None = None) -> np.ndarray:
    """A binary mask as uint8 0/255 (resized to `size` when given), for `<name>_mask.png`."""
    m = resize_mask(mask, size) if size is not None else mask.astype(bool)
    return m.astype(np.uint8) * 255
