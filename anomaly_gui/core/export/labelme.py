"""labelme JSON: one `<image>.json` beside each image, the format labelme and X-AnyLabeling open.

Every shape kind survives: rectangle, polygon, point, and mask (labelme >= 5.3: the shape's two points
are the mask's bounding box and `mask` is a base64 PNG of that crop). A reader is included so exports
can be opened again (`read_labelme_folder`) and checked.
"""
from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.export.annotations import register_exporter
from anomaly_gui.core.export.common import ExportResult, copy_item_image, image_suffix, unique_stems
from anomaly_gui.core.export.masks import annotation_mask, mask_geometry
from anomaly_gui.core.formats.base import Annotation, DatasetItem, ImportResult

LABELME_VERSION = "5.4.1"


def _png_b64(mask: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).convert("1").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _b64_png(text: str) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(text))) as im:
        return np.asarray(im.convert("L")) > 0


def shape_of(a: Annotation, size: tuple[int, int]) -> dict[str, Any] | None:
    """The labelme shape dict of one annotation (None for an empty mask)."""
    base = {"label": a.label, "group_id": None, "description": "", "flags": {}, "mask": None}
    g = a.geometry
    if a.kind == "box":
        x1, y1, x2, y2 = a.box()
        return {**base, "shape_type": "rectangle", "points": [[x1, y1], [x2, y2]]}
    if a.kind == "polygon":
        return {**base, "shape_type": "polygon", "points": [[float(x), float(y)] for x, y in g["points"]]}
    if a.kind == "point":
        return {**base, "shape_type": "point", "points": [[float(g["x"]), float(g["y"])]]}
    m = annotation_mask(a, size)
    ys, xs = np.nonzero(m)
    if not xs.size:
        return None
    x1, y1, x2, y2 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    return {**base, "shape_type": "mask", "points": [[x1, y1], [x2 - 1, y2 - 1]], "mask": _png_b64(m[y1:y2, x1:x2])}


def annotation_of(shape: dict[str, Any], size: tuple[int, int], path: Path) -> Annotation:
    """Back from a labelme shape to our annotation; raises DataError naming `path` for bad shapes."""
    kind = shape.get("shape_type") or "polygon"
    pts = shape.get("points") or []
    label = str(shape.get("label", ""))
    try:
        if kind == "rectangle":
            (xa, ya), (xb, yb) = pts[0], pts[1]
            return Annotation("box", label, {"x1": min(xa, xb), "y1": min(ya, yb), "x2": max(xa, xb), "y2": max(ya, yb)}, source="import")
        if kind == "polygon":
            return Annotation("polygon", label, {"points": [[float(x), float(y)] for x, y in pts]}, source="import")
        if kind == "point":
            return Annotation("point", label, {"x": float(pts[0][0]), "y": float(pts[0][1])}, source="import")
        if kind == "mask":
            crop = _b64_png(shape["mask"])
            x1, y1 = int(round(pts[0][0])), int(round(pts[0][1]))
            w, h = size
            full = np.zeros((h, w), dtype=bool)
            full[y1:y1 + crop.shape[0], x1:x1 + crop.shape[1]] = crop[: h - y1, : w - x1]
            return Annotation("mask", label, mask_geometry(full), source="import")
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise DataError(path, f"bad {kind} shape '{label}' ({exc})") from exc
    raise DataError(path, f"shape type {kind!r} is not supported (rectangle, polygon, point, mask)")


@register_exporter("labelme", "labelme JSON (one file per image)")
def export_labelme(items: Sequence[DatasetItem], classes: list[str], folder: Path, result: ExportResult) -> None:
    stems = unique_stems(items)
    for it in items:
        stem = stems[int(it.id or 0)]
        img_name = stem + image_suffix(it)
        w, h = copy_item_image(it, folder / img_name)
        shapes = [s for s in (shape_of(a, (w, h)) for a in it.annotations) if s is not None]
        doc = {"version": LABELME_VERSION, "flags": {}, "shapes": shapes, "imagePath": img_name, "imageData": None,
               "imageHeight": h, "imageWidth": w}
        (folder / f"{stem}.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
        result.n_annotations += len(shapes)
        result.n_items += 1


def read_labelme_file(path: str | Path) -> DatasetItem:
    """One labelme JSON as an item (image path resolved beside the JSON)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(path, f"not a readable labelme JSON ({exc})") from exc
    if not isinstance(doc, dict) or "shapes" not in doc:
        raise DataError(path, "not a labelme JSON (no 'shapes')")
    img = path.parent / str(doc.get("imagePath") or (path.stem + ".png"))
    w, h = int(doc.get("imageWidth") or 0), int(doc.get("imageHeight") or 0)
    if not (w and h):
        from anomaly_gui.core.imageio import image_size

        w, h = image_size(img)
    anns = [annotation_of(s, (w, h), path) for s in doc["shapes"]]
    return DatasetItem(path=str(img.resolve()), annotations=anns, width=w, height=h)


def read_labelme_folder(root: str | Path) -> ImportResult:
    """All labelme JSONs in a folder; a bad file is a problem, not a stop."""
    root = Path(root)
    result = ImportResult(format="labelme", root=root)
    for p in sorted(root.glob("*.json")):
        try:
            it = read_labelme_file(p)
        except DataError as exc:
            result.problems.append(exc)
            continue
        result.items.append(it)
        for a in it.annotations:
            if a.label and a.label not in result.classes:
                result.classes.append(a.label)
    return result
