"""Crops of animals (or any object) from box annotations, MegaDetector CSVs or detections.

A `CropSpec` names an image, a pixel box (or None for the whole image) and a label. `load_crop`
decodes only what it needs: large JPEGs (camera traps are 12 MP) are decoded at a reduced scale with
Pillow's draft mode when the crop is wanted small, which makes embedding thousands of photos practical.
Qt-free.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.formats.base import Annotation, DatasetItem
from anomaly_gui.core.imageio import image_size, read_image, to_rgb8

Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels
#: labels detectors give to "some animal": the item's own label (species) is more informative
GENERIC_LABELS = frozenset({"", "animal", "1", "object", "detection"})
_JPEG = frozenset({".jpg", ".jpeg"})


@dataclass
class CropSpec:
    """One crop: the image, the box in pixel coordinates (None = whole image), its label."""

    path: str
    box: Box | None = None
    label: str = ""
    item_index: int = 0  # index of the item in the list crops were made from
    item_id: int | None = None
    score: float | None = None  # detector confidence when the box came from a detector
    meta: dict[str, Any] = field(default_factory=dict)


def species_from_filename(path: str | Path) -> str:
    """Species as the file name's last word (`2021-05-28_SYFR0041_deer.JPG` -> `deer`)."""
    stem = Path(path).stem
    words = [w for w in re.split(r"[_\-\s]+", stem) if w]
    return words[-1].lower() if words else stem.lower()


def padded_box(box: Box, pad: float, width: int, height: int, square: bool = False) -> tuple[int, int, int, int]:
    """Grow `box` by `pad` (a fraction of its width/height on each side), optionally to a square,
    and clip to the image. Returns integer pixel bounds (x1, y1, x2, y2) with x2 > x1, y2 > y1."""
    x1, y1, x2, y2 = (float(v) for v in box)
    if x2 < x1:
        x1, x2 = x2, x1
    if y2 < y1:
        y1, y2 = y2, y1
    bw, bh = x2 - x1, y2 - y1
    x1, x2 = x1 - pad * bw, x2 + pad * bw
    y1, y2 = y1 - pad * bh, y2 + pad * bh
    if square:
        side = max(x2 - x1, y2 - y1)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        x1, x2, y1, y2 = cx - side / 2, cx + side / 2, cy - side / 2, cy + side / 2
    ix1 = int(np.clip(np.floor(x1), 0, max(width - 1, 0)))
    iy1 = int(np.clip(np.floor(y1), 0, max(height - 1, 0)))
    ix2 = int(np.clip(np.ceil(x2), ix1 + 1, width))
    iy2 = int(np.clip(np.ceil(y2), iy1 + 1, height))
    return ix1, iy1, ix2, iy2


def read_megadetector_csv(path: str | Path, min_conf: float = 0.0, categories: Sequence[str] = ("1",)) -> dict[str, list[tuple[Box, float]]]:
    """Boxes of a MegaDetector-style CSV (animl manifest): file name -> [((x, y, w, h) normalised, conf)].

    Columns: a file column (`filename`, `file` or `filepath`), `bbox_x, bbox_y, bbox_w, bbox_h`
    (normalised, top-left origin), optional `conf` and `category` (1 = animal). Rows without a box are
    images without detections. Raises DataError naming the file when it is not such a CSV.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(path, f"cannot read CSV ({exc})") from exc
    if not rows:
        return {}
    cols = set(rows[0])
    need = {"bbox_x", "bbox_y", "bbox_w", "bbox_h"}
    if not need <= cols:
        raise DataError(path, f"not a MegaDetector CSV: missing columns {sorted(need - cols)}")
    name_col = next((c for c in ("filename", "file", "filepath", "image") if c in cols), None)
    if name_col is None:
        raise DataError(path, "not a MegaDetector CSV: no filename/file/filepath column")
    out: dict[str, list[tuple[Box, float]]] = {}
    for line, row in enumerate(rows, start=2):
        name = Path(str(row[name_col]).replace("\\", "/")).name
        out.setdefault(name, [])
        if not str(row.get("bbox_x", "")).strip():
            continue
        if "category" in row and categories and str(row["category"]).strip() not in categories:
            continue
        try:
            x, y, w, h = (float(row[k]) for k in ("bbox_x", "bbox_y", "bbox_w", "bbox_h"))
            conf = float(row.get("conf") or row.get("max_detection_conf") or 1.0)
        except ValueError as exc:
            raise DataError(path, f"line {line}: bad number ({exc})") from exc
        if conf >= min_conf and w > 0 and h > 0:
            out[name].append(((x, y, w, h), conf))
    return out


def attach_megadetector_boxes(items: Sequence[DatasetItem], csv_path: str | Path, min_conf: float = 0.0,
                              label: str = "animal") -> int:
    """Add the CSV's boxes to matching items (by file name) as pixel box annotations; returns how many."""
    table = read_megadetector_csv(csv_path, min_conf=min_conf)
    n = 0
    for it in items:
        dets = table.get(Path(it.path).name)
        if not dets:
            continue
        w, h = (it.width, it.height) if it.width and it.height else image_size(it.path)
        for (x, y, bw, bh), conf in dets:
            geom = {"x1": x * w, "y1": y * h, "x2": (x + bw) * w, "y2": (y + bh) * h}
            it.annotations.append(Annotation("box", label, geom, score=conf, source="import"))
            n += 1
    return n


def item_label(item: DatasetItem) -> str:
    """The species of an item: its label, else the file name's last word."""
    return item.label or species_from_filename(item.path)


def crop_specs(items: Sequence[DatasetItem], min_score: float = 0.0, detections: dict[int, list[Annotation]] | None = None,
               largest_only: bool = False, whole_image_fallback: bool = True) -> list[CropSpec]:
    """One CropSpec per box of each item (annotations, plus `detections[item index]`), or per item
    when it has no box. Rejected review annotations and boxes below `min_score` are skipped."""
    out: list[CropSpec] = []
    for idx, it in enumerate(items):
        anns = [a for a in it.annotations if a.kind in ("box", "polygon") and a.status != "rejected"]
        if detections and idx in detections:
            anns += list(detections[idx])
        anns = [a for a in anns if a.score is None or a.score >= min_score]
        specs = []
        for a in anns:
            label = a.label if a.label.lower() not in GENERIC_LABELS else item_label(it)
            specs.append(CropSpec(it.path, a.box(), label, idx, it.id, a.score))
        if largest_only and len(specs) > 1:
            specs = [max(specs, key=lambda s: (s.box[2] - s.box[0]) * (s.box[3] - s.box[1]))]  # type: ignore[index]
        if not specs and whole_image_fallback:
            specs = [CropSpec(it.path, None, item_label(it), idx, it.id)]
        out.extend(specs)
    return out


def load_crop(spec: CropSpec, pad: float = 0.1, size: int | None = None, square: bool = False) -> np.ndarray:
    """The crop as HxWx3 uint8 RGB; resized to size x size when `size` is given.

    JPEGs are decoded at the smallest scale (1/2, 1/4, 1/8) that still gives at least `size` pixels
    across the padded box. Raises DataError naming the file when it cannot be read.
    """
    path = Path(spec.path)
    if size and path.suffix.lower() in _JPEG:
        arr, scale = _read_jpeg_reduced(path, spec.box, pad, size)
    else:
        arr, scale = to_rgb8(read_image(path)), 1.0
    h, w = arr.shape[:2]
    if spec.box is not None:
        box = tuple(v * scale for v in spec.box)
        x1, y1, x2, y2 = padded_box(box, pad, w, h, square)  # type: ignore[arg-type]
        if x2 - x1 < 1 or y2 - y1 < 1:
            raise DataError(path, f"box {spec.box} lies outside the {w}x{h} image")
        arr = arr[y1:y2, x1:x2]
    if size:
        arr = resize_rgb(arr, size, size)
    return np.ascontiguousarray(arr)


def resize_rgb(arr: np.ndarray, width: int, height: int) -> np.ndarray:
    import cv2

    interp = cv2.INTER_AREA if arr.shape[1] > width else cv2.INTER_LINEAR
    return cv2.resize(arr, (int(width), int(height)), interpolation=interp)


def _read_jpeg_reduced(path: Path, box: Box | None, pad: float, size: int) -> tuple[np.ndarray, float]:
    """Decode a JPEG with draft mode; returns (RGB array in display orientation, scale vs full size)."""
    from PIL import Image, ImageOps

    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        with Image.open(path) as im:
            orientation = im.getexif().get(0x0112, 1)
            w0, h0 = im.size
            dw, dh = (h0, w0) if orientation in (5, 6, 7, 8) else (w0, h0)
            if box is not None:
                span = min(abs(box[2] - box[0]), abs(box[3] - box[1])) * (1 + 2 * pad)
            else:
                span = min(dw, dh)
            factor = max(span / float(size), 1.0)
            im.draft("RGB", (max(1, int(w0 / factor)), max(1, int(h0 / factor))))
            im = ImageOps.exif_transpose(im).convert("RGB")
            arr = np.asarray(im)
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(path, f"cannot decode image ({type(exc).__name__}: {exc})") from exc
    return arr, arr.shape[1] / float(dw)


def load_crops(specs: Iterable[CropSpec], size: int, pad: float = 0.1, square: bool = False,
               progress: Any = None, check: Any = None) -> tuple[np.ndarray, list[int], list[DataError]]:
    """Crops as an (n, size, size, 3) uint8 array, the indices of `specs` they come from, and the
    problems (unreadable files are left out and reported, never embedded as blanks). A spec's own
    `meta['pad']` overrides `pad`."""
    specs = list(specs)
    out = np.zeros((len(specs), size, size, 3), np.uint8)
    kept: list[int] = []
    problems: list[DataError] = []
    for k, s in enumerate(specs):
        if check is not None:
            check()
        try:
            out[len(kept)] = load_crop(s, pad=float(s.meta.get("pad", pad)), size=size, square=square)
            kept.append(k)
        except DataError as exc:
            problems.append(exc)
        if progress is not None:
            progress(k + 1, len(specs), f"crops {k + 1}/{len(specs)}")
    return out[: len(kept)], kept, problems
