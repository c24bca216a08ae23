"""Tiled inference for scenes larger than the model input.

The scene is read window by window (an uncompressed TIFF or `.npy` is memory-mapped, so a
10,000×10,000 scene never sits in memory whole), each overlapping tile goes through the detector, and
the boxes are merged: per-class NMS, then a cross-tile pass that keeps, of two boxes from different tiles
covering the same object (intersection over the smaller box ≥ `merge_ios`), the one not cut by an
interior tile edge (or the more confident). Memory is bounded by one tile plus the boxes found.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.formats.base import Annotation

DetectFn = Callable[[np.ndarray], list[Annotation]]
EDGE_MARGIN = 2.0  # pixels: a box this close to an interior tile edge is "cut"


@dataclass(frozen=True)
class Tile:
    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.y1 - self.y0, self.x1 - self.x0)


def tile_grid(width: int, height: int, tile: int = 800, overlap: int = 128) -> list[Tile]:
    """Overlapping tiles covering the scene; the last row/column is shifted back to stay full-size."""
    if tile <= 0 or overlap < 0 or overlap >= tile:
        raise ValueError(f"need tile > overlap >= 0 (tile={tile}, overlap={overlap})")
    step = tile - overlap

    def starts(n: int) -> list[int]:
        if n <= tile:
            return [0]
        s = list(range(0, n - tile, step)) + [n - tile]
        return sorted(set(s))

    return [Tile(x, y, min(x + tile, width), min(y + tile, height)) for y in starts(height) for x in starts(width)]


class Scene:
    """Window reader over a large image: memory-mapped where the file allows it, decoded once otherwise."""

    def __init__(self, source: str | Path | np.ndarray):
        self.path: Path | None = None
        self.memory_mapped = False
        self._mm: tuple[str, Any, int, tuple[int, ...]] | None = None  # file, dtype, offset, shape
        if isinstance(source, np.ndarray):
            self._arr = source
        else:
            self.path = Path(source)
            self._arr = self._open(self.path)

    def _open(self, path: Path) -> np.ndarray:
        if not path.is_file():
            raise DataError(path, "file not found")
        suffix = path.suffix.lower()
        if suffix == ".npy":
            try:
                arr = np.load(path, mmap_mode="r", allow_pickle=False)
            except ValueError as exc:
                raise DataError(path, f"not a numeric .npy array ({exc})") from exc
            return self._keep_map(arr)
        if suffix in (".tif", ".tiff"):
            import tifffile

            try:
                return self._keep_map(tifffile.memmap(path, mode="r"))
            except (ValueError, OSError, IndexError, KeyError, tifffile.TiffFileError):
                pass  # compressed or tiled TIFF: decoded below
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = None  # scenes are large on purpose
        from anomaly_gui.core.imageio import read_image

        return read_image(path)

    def _keep_map(self, arr: np.ndarray) -> np.ndarray:
        """Remember where the pixels lie; each window maps the file afresh and unmaps it after reading, so
        the pages read do not pile up in the process's resident memory."""
        if isinstance(arr, np.memmap) and arr.ndim >= 2 and arr.flags.c_contiguous:
            self._mm = (str(arr.filename), arr.dtype, int(arr.offset), tuple(arr.shape))
            self.memory_mapped = True
            shape = arr.shape
            del arr
            return _ShapeOnly(shape)  # type: ignore[return-value]
        return np.asarray(arr)

    @property
    def height(self) -> int:
        return int(self._arr.shape[0])

    @property
    def width(self) -> int:
        return int(self._arr.shape[1])

    def read(self, t: Tile) -> np.ndarray:
        """The pixels of one tile (a copy; a memory map is released at once)."""
        if self._mm is not None:
            filename, dtype, offset, shape = self._mm
            mm = np.memmap(filename, dtype=dtype, mode="r", offset=offset, shape=shape)
            try:
                return np.array(mm[t.y0 : t.y1, t.x0 : t.x1])
            finally:
                mm._mmap.close()  # type: ignore[attr-defined]  # unmap now, not at garbage collection
                del mm
        return np.array(self._arr[t.y0 : t.y1, t.x0 : t.x1])


class _ShapeOnly:
    """Stands in for a memory-mapped array that is mapped per window (only its shape is kept)."""

    def __init__(self, shape: tuple[int, ...]):
        self.shape = tuple(shape)


def _cut_flags(boxes: np.ndarray, t: Tile, width: int, height: int) -> np.ndarray:
    """True for boxes touching an edge of tile `t` that is not an edge of the scene."""
    m = EDGE_MARGIN
    left = (boxes[:, 0] <= t.x0 + m) & (t.x0 > 0)
    top = (boxes[:, 1] <= t.y0 + m) & (t.y0 > 0)
    right = (boxes[:, 2] >= t.x1 - m) & (t.x1 < width)
    bottom = (boxes[:, 3] >= t.y1 - m) & (t.y1 < height)
    return left | top | right | bottom


#: public name: batch scoring merges tiles that were detected on other workers
cut_flags = _cut_flags


def merge_boxes(
    boxes: np.ndarray, scores: np.ndarray, labels: Sequence[str], tile_ids: np.ndarray, cut: np.ndarray,
    iou: float = 0.5, merge_ios: float = 0.6,
) -> np.ndarray:
    """Indices of the boxes to keep: class-wise NMS, then the cross-tile duplicate pass."""
    import torch
    from torchvision.ops import batched_nms

    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    names = sorted(set(labels))
    cls = torch.tensor([names.index(n) for n in labels])
    # a box cut by an interior tile edge ranks below any whole box it overlaps (the whole one is kept)
    rank = np.asarray(scores, dtype=np.float64) - 2.0 * np.asarray(cut, dtype=np.float64)
    keep = batched_nms(torch.as_tensor(boxes, dtype=torch.float32), torch.as_tensor(rank, dtype=torch.float32),
                       cls, iou).numpy()
    # cross-tile duplicates: an object cut by a tile edge has a partial box whose IoU with the full box
    # can be low, but it lies (mostly) inside it. Vectorised over the boxes kept so far (scenes give tens
    # of thousands of boxes).
    order = sorted(keep.tolist(), key=lambda i: (bool(cut[i]), -float(scores[i])))
    b = np.asarray(boxes, dtype=np.float64)
    area = np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1e-9)
    lab = np.array([names.index(n) for n in labels])
    kept_mask = np.zeros(len(b), dtype=bool)
    kept: list[int] = []
    for i in order:
        cand = np.flatnonzero(kept_mask & (lab == lab[i]) & (tile_ids != tile_ids[i]))
        if len(cand):
            c = b[cand]
            iw = np.minimum(b[i, 2], c[:, 2]) - np.maximum(b[i, 0], c[:, 0])
            ih = np.minimum(b[i, 3], c[:, 3]) - np.maximum(b[i, 1], c[:, 1])
            inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
            if np.any(inter / np.minimum(area[i], area[cand]) >= merge_ios):
                continue
        kept_mask[i] = True
        kept.append(i)
    return np.array(sorted(kept), dtype=np.int64)


def tiled_detect(
    scene: Scene | str | Path | np.ndarray,
    detect: DetectFn,
    tile: int = 800,
    overlap: int = 128,
    iou: float = 0.5,
    ctx: Any = None,
    prepare: Callable[[np.ndarray], np.ndarray] | None = None,
) -> list[Annotation]:
    """Run `detect` over overlapping tiles of a scene and return merged boxes in scene coordinates.

    `prepare` turns a raw tile into the detector's input (e.g. the SAR stretch); `ctx` is a RunContext
    (progress per tile, cancel between tiles).
    """
    sc = scene if isinstance(scene, Scene) else Scene(scene)
    tiles = tile_grid(sc.width, sc.height, tile, overlap)
    all_boxes: list[np.ndarray] = []
    scores: list[float] = []
    labels: list[str] = []
    tile_ids: list[int] = []
    cut: list[np.ndarray] = []
    for k, t in enumerate(tiles):
        if ctx is not None:
            ctx.check()
        pixels = sc.read(t)
        if prepare is not None:
            pixels = prepare(pixels)
        found = detect(pixels)
        if found:
            b = np.array([a.box() for a in found], dtype=np.float64) + [t.x0, t.y0, t.x0, t.y0]
            all_boxes.append(b)
            cut.append(_cut_flags(b, t, sc.width, sc.height))
            scores.extend(float(a.score or 0.0) for a in found)
            labels.extend(a.label for a in found)
            tile_ids.extend([k] * len(found))
        if ctx is not None:
            ctx.progress(k + 1, len(tiles), f"tile {k + 1}/{len(tiles)}")
    if not all_boxes:
        return []
    boxes = np.concatenate(all_boxes)
    keep = merge_boxes(boxes, np.array(scores), labels, np.array(tile_ids), np.concatenate(cut), iou=iou)
    return [
        Annotation(kind="box", label=labels[i], score=float(scores[i]), source="model",
                   geometry={"x1": float(boxes[i, 0]), "y1": float(boxes[i, 1]), "x2": float(boxes[i, 2]), "y2": float(boxes[i, 3])})
        for i in keep
    ]


def synthetic_scene(path: str | Path, size: int = 10_000, n_ships: int = 200, seed: int = 0,
                    dtype: Any = np.uint16, ship: int = 12) -> list[tuple[int, int, int, int]]:
    """Write a large SAR-like scene (gamma speckle sea, bright rectangular ships) as an uncompressed TIFF,
    row block by row block (bounded memory). Returns the ships' boxes (x1, y1, x2, y2)."""
    import tifffile

    rng = np.random.default_rng(seed)
    out = tifffile.memmap(str(path), shape=(size, size), dtype=dtype, photometric="minisblack")
    hi = 60000 if np.dtype(dtype) == np.uint16 else 250
    sea = 600 if np.dtype(dtype) == np.uint16 else 40
    block = 1000
    for y in range(0, size, block):
        rows = min(block, size - y)
        out[y : y + rows] = np.clip(rng.gamma(2.0, sea / 2.0, (rows, size)), 0, hi).astype(dtype)
    boxes = []
    for _ in range(n_ships):
        w, h = int(rng.integers(ship, ship * 3)), int(rng.integers(ship, ship * 2))
        x, y = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
        out[y : y + h, x : x + w] = np.clip(rng.normal(hi * 0.8, hi * 0.05, (h, w)), 0, hi).astype(dtype)
        boxes.append((x, y, x + w, y + h))
    out.flush()
    del out
    return boxes
