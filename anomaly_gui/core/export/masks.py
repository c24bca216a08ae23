"""Masks as stored in the project (run-length encoded in the annotation's geometry) and rasterising shapes.

Mask geometry: `{"rle": {"size": [h, w], "counts": [n0, n1, ...]}}`, counts alternate background and
foreground runs over the row-major pixels and start with background (a first count may be 0). Masks
imported from files keep `{"path": "file.png"}`; both are read by `annotation_mask`.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from anomaly_gui.core.formats.base import Annotation


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """Run-length encode a 2-D boolean mask (row-major, background first)."""
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D, got {m.shape}")
    flat = m.ravel().astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        counts = [0] + counts
    return {"size": [int(m.shape[0]), int(m.shape[1])], "counts": [int(c) for c in counts]}


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """The boolean mask of an RLE made by `rle_encode`."""
    h, w = (int(v) for v in rle["size"])
    counts = np.asarray(rle["counts"], dtype=np.int64)
    if counts.sum() != h * w:
        raise ValueError(f"RLE counts sum to {int(counts.sum())}, expected {h * w}")
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    return np.repeat(values, counts).reshape(h, w)


def mask_geometry(mask: np.ndarray) -> dict[str, Any]:
    """Geometry for a mask annotation, with its bounding box for quick listing."""
    m = np.asarray(mask, dtype=bool)
    ys, xs = np.nonzero(m)
    bbox = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1] if xs.size else [0, 0, 0, 0]
    return {"rle": rle_encode(m), "bbox": bbox, "area": int(m.sum())}


def annotation_mask(ann: Annotation, size: tuple[int, int], base_dir: str | Path | None = None) -> np.ndarray:
    """Boolean (h, w) mask of any annotation kind at image size (w, h); points give an empty mask."""
    import cv2

    w, h = size
    out = np.zeros((h, w), dtype=np.uint8)
    g = ann.geometry
    if ann.kind == "mask":
        if "rle" in g:
            m = rle_decode(g["rle"])
        elif "path" in g:
            from anomaly_gui.core.imageio import read_image, to_gray8

            p = Path(g["path"])
            if not p.is_absolute() and base_dir is not None:
                p = Path(base_dir) / p
            m = to_gray8(read_image(p)) > 0
        else:
            raise ValueError("mask annotation without rle or path")
        if m.shape != (h, w):
            m = cv2.resize(m.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
        return m
    if ann.kind == "box":
        x1, y1, x2, y2 = ann.box()
        out[max(0, int(round(y1))):max(0, int(round(y2))), max(0, int(round(x1))):max(0, int(round(x2)))] = 1
    elif ann.kind == "polygon":
        pts = np.round(np.asarray(g["points"], dtype=np.float64)).astype(np.int32)
        if len(pts) >= 3:
            cv2.fillPoly(out, [pts.reshape(-1, 1, 2)], 1)
    return out.astype(bool)


def rasterize(anns: Sequence[Annotation], size: tuple[int, int], class_index: dict[str, int] | None = None,
              base_dir: str | Path | None = None) -> np.ndarray:
    """uint8 (h, w) image: 255 where any shape is (binary), or each shape's class index when given."""
    w, h = size
    out = np.zeros((h, w), dtype=np.uint8)
    for ann in anns:
        if ann.kind == "point":
            continue
        m = annotation_mask(ann, size, base_dir)
        out[m] = 255 if class_index is None else class_index.get(ann.label, 0)
    return out


def read_mask_png(path: str | Path) -> np.ndarray:
    """A mask PNG as a boolean array (any non-zero pixel is foreground)."""
    from anomaly_gui.core.imageio import read_image, to_gray8

    return to_gray8(read_image(path)) > 0
