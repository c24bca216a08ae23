"""Mask PNGs: rasterise an item's regions (ground-truth mask, polygons, boxes, mask annotations).

`rasterize(item, classes=None) -> ndarray (H, W) uint8`: binary (0/255) when `classes` is None,
else class index + 1 per pixel (0 = background; later annotations paint over earlier ones).
`write_masks(items, out_dir, classes=None, suffix="_mask") -> list[Path]` writes one PNG per item,
`<stem><suffix>.png` (unique stems), plus `labels.txt` (index 1 = first class) in class mode.
`read_mask(path) -> ndarray` reads one back (bool for binary masks, uint8 class indices otherwise).
Writes are atomic.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from anomaly_gui.core.formats.base import DatasetItem
from anomaly_gui.core.formats.common import check_writable, export_names, item_size
from anomaly_gui.core.imageio import read_image, write_image, write_text


def rasterize(item: DatasetItem, classes: Sequence[str] | None = None) -> np.ndarray:
    """The item's regions as one uint8 mask (see module doc); unknown classes are skipped in class mode."""
    w, h = item_size(item)
    out = np.zeros((h, w), np.uint8)
    fg = 255
    index = {c: i + 1 for i, c in enumerate(classes)} if classes is not None else None
    if item.mask_path and index is None:
        gt = read_image(item.mask_path)
        gt = gt if gt.ndim == 2 else gt.max(axis=2)
        if gt.shape != out.shape:
            gt = cv2.resize(gt.astype(np.uint8) if gt.dtype == np.bool_ else gt, (w, h), interpolation=cv2.INTER_NEAREST)
        out[gt > 0] = fg
    for a in item.annotations:
        if index is not None:
            if a.label not in index:
                continue
            fg = index[a.label]
        if a.kind == "polygon":
            pts = np.round(np.asarray(a.geometry["points"], np.float64)).astype(np.int32).reshape(-1, 1, 2)
            cv2.fillPoly(out, [pts], int(fg))
        elif a.kind == "box":
            x1, y1, x2, y2 = a.box()
            out[int(round(y1)):int(round(y2)), int(round(x1)):int(round(x2))] = fg
        elif a.kind == "mask" and a.geometry.get("path"):
            m = read_image(a.geometry["path"])
            m = m if m.ndim == 2 else m.max(axis=2)
            if m.shape != out.shape:
                m = cv2.resize(m.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
            out[m > 0] = fg
    return out


def write_masks(items: Sequence[DatasetItem], out_dir: str | Path, classes: Sequence[str] | None = None,
                suffix: str = "_mask") -> list[Path]:
    """Write one mask PNG per item (see module doc). Returns the paths in item order."""
    out = Path(out_dir)
    check_writable(items, "mask export")
    paths = []
    for it, name in zip(items, export_names(items)):
        p = out / f"{Path(name).stem}{suffix}.png"
        write_image(p, rasterize(it, classes))
        paths.append(p)
    if classes is not None:
        write_text(out / "labels.txt", "\n".join(["_background_", *classes]) + "\n")
    return paths


def read_mask(path: str | Path) -> np.ndarray:
    """A mask PNG as bool (binary 0/255 masks) or uint8 class indices."""
    m = read_image(path)
    m = m if m.ndim == 2 else m.max(axis=2)
    values = np.unique(m)
    if set(values.tolist()) <= {0, 255}:
        return m > 0
    return m.astype(np.uint8)
