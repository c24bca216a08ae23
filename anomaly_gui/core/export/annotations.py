"""Annotation exporters: Pascal VOC, YOLO, COCO, labelme JSON (engineer A's writers in `core/formats/`)
and mask PNGs (here: they carry the brush masks, stored run-length encoded).

Each exporter writes a complete dataset folder (images beside the labels, names made unique) into a
temporary folder that replaces the target only when everything is written (`export_annotations`).
Shapes a format cannot carry are converted (masks become polygons, or bounding boxes in VOC; VOC
polygons become boxes) or skipped (points outside labelme), and each case is listed in `ExportResult.notes`.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from anomaly_gui.core.export.common import ExportResult, unique_stems
from anomaly_gui.core.export.masks import annotation_mask, rasterize
from anomaly_gui.core.formats.base import Annotation, DatasetItem

Exporter = Callable[[Sequence[DatasetItem], list[str], Path, ExportResult], None]
EXPORTERS: dict[str, Exporter] = {}
TITLES: dict[str, str] = {}


def register_exporter(name: str, title: str) -> Callable[[Exporter], Exporter]:
    """Decorator: `fn(items, classes, folder, result)` writes `items` (with annotations) into `folder`."""
    def deco(fn: Exporter) -> Exporter:
        EXPORTERS[name] = fn
        TITLES[name] = title
        return fn

    return deco


def _class_list(items: Sequence[DatasetItem], classes: Sequence[str]) -> list[str]:
    out = list(classes)
    for it in items:
        for a in it.annotations:
            if a.label and a.label not in out:
                out.append(a.label)
    return out


def formats_writer(fmt: str) -> Callable[..., object]:
    """Engineer A's `write_<fmt>(items, out_dir, ...)` from `core/formats/<fmt>.py`."""
    import importlib

    writer = getattr(importlib.import_module(f"anomaly_gui.core.formats.{fmt}"), f"write_{fmt}", None)
    if writer is None:
        raise RuntimeError(f"core/formats/{fmt}.py has no write_{fmt}")
    return writer


def mask_to_polygons(it: DatasetItem, a: Annotation) -> list[Annotation]:
    """The outer contours of a mask annotation as polygons (holes are filled)."""
    import cv2

    from anomaly_gui.core.formats.common import item_size

    m = annotation_mask(a, item_size(it)).astype(np.uint8)
    found, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = []
    for c in found:
        pts = c.reshape(-1, 2)
        if len(pts) >= 3:
            out.append(Annotation("polygon", a.label, {"points": [[float(x), float(y)] for x, y in pts]},
                                  score=a.score, source=a.source, status=a.status))
    return out


def _mask_as_box(it: DatasetItem, a: Annotation) -> Annotation | None:
    from anomaly_gui.core.formats.common import item_size

    m = annotation_mask(a, item_size(it))
    ys, xs = np.nonzero(m)
    if not xs.size:
        return None
    geom = {"x1": float(xs.min()), "y1": float(ys.min()), "x2": float(xs.max() + 1), "y2": float(ys.max() + 1)}
    return Annotation("box", a.label, geom, score=a.score, source=a.source, status=a.status)


def _prepare(items: Sequence[DatasetItem], result: ExportResult, fmt_title: str, points: bool,
             boxes_only: bool) -> list[DatasetItem]:
    """Items with what the format can carry: masks become polygons (or boxes), points are dropped when the
    format has none, and each conversion is noted."""
    prepared = []
    for it in items:
        anns: list[Annotation] = []
        for a in it.annotations:
            if a.kind == "point" and not points:
                result.notes.append(f"{it.name}: point '{a.label}' skipped ({fmt_title} has no points)")
                continue
            if a.kind == "mask":
                conv = [b for b in [_mask_as_box(it, a)] if b is not None] if boxes_only else mask_to_polygons(it, a)
                result.notes.append(f"{it.name}: mask '{a.label}' exported as {len(conv)} "
                                    f"{'bounding box' if boxes_only else 'polygon(s)'}")
                anns.extend(conv)
                continue
            if a.kind == "polygon" and boxes_only:
                result.notes.append(f"{it.name}: polygon '{a.label}' exported as its bounding box")
            anns.append(a)
        result.n_annotations += len(anns)
        result.n_items += 1
        prepared.append(dataclasses.replace(it, annotations=anns))
    return prepared


def _delegating(fmt: str, title: str, points: bool = False, boxes_only: bool = False) -> Exporter:
    def export(items: Sequence[DatasetItem], classes: list[str], folder: Path, result: ExportResult) -> None:
        prepared = _prepare(items, result, title, points, boxes_only)
        writer = formats_writer(fmt)
        if fmt == "labelme":
            writer(prepared, folder)
        else:
            writer(prepared, folder, _class_list(prepared, classes))

    export.__doc__ = f"{title} through core/formats/{fmt}.py (masks converted, unsupported shapes noted)."
    return export


register_exporter("voc", "Pascal VOC (XML)")(_delegating("voc", "Pascal VOC", boxes_only=True))
register_exporter("yolo", "YOLO (txt, boxes and polygons)")(_delegating("yolo", "YOLO"))
register_exporter("coco", "COCO (JSON)")(_delegating("coco", "COCO"))
register_exporter("labelme", "labelme JSON (one file per image)")(_delegating("labelme", "labelme", points=True))


# -- mask PNGs ------------------------------------------------------------------------------------
@register_exporter("masks", "Mask PNGs (MVTec-style ground truth)")
def export_masks(items: Sequence[DatasetItem], classes: list[str], folder: Path, result: ExportResult) -> None:
    """One binary PNG (255 = defect) per item with shapes, named like the image; `classes.txt` alongside.

    Also writes `class_masks/` with each pixel's class index (1-based order of classes.txt) so
    multi-class labels survive.
    """
    from anomaly_gui.core.formats.common import item_size
    from anomaly_gui.core.imageio import write_image

    (folder / "masks").mkdir()
    (folder / "class_masks").mkdir()
    names = _class_list(items, classes)
    index = {n: k + 1 for k, n in enumerate(names)}
    stems = unique_stems(items)
    for it in items:
        shapes = [a for a in it.annotations if a.kind != "point"]
        skipped = len(it.annotations) - len(shapes)
        if skipped:
            result.notes.append(f"{it.name}: {skipped} point(s) skipped (no area)")
        if not shapes:
            continue
        size = item_size(it)
        stem = stems[int(it.id or 0)]
        write_image(folder / "masks" / f"{stem}.png", rasterize(shapes, size))
        write_image(folder / "class_masks" / f"{stem}.png", rasterize(shapes, size, class_index=index))
        result.n_annotations += len(shapes)
        result.n_items += 1
    (folder / "classes.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    (folder / "items.json").write_text(
        json.dumps({stems[int(it.id or 0)]: str(it.path) for it in items if any(a.kind != "point" for a in it.annotations)}, indent=1),
        encoding="utf-8",
    )


def analyst_annotations(anns: Sequence[Annotation]) -> list[Annotation]:
    """What the analyst stands behind: user and imported shapes, and model output that was accepted."""
    out = []
    for a in anns:
        if a.status == "rejected":
            continue
        if a.source == "model" and a.status != "accepted":
            continue
        out.append(a)
    return out
