"""Annotation exporters: Pascal VOC, YOLO, COCO, mask PNGs (labelme JSON is in `labelme.py`).

Each exporter writes a complete dataset folder (images copied beside the labels, names made unique)
into a temporary folder that replaces the target only when everything is written (`export_annotations`).
Shapes a format cannot carry are converted (VOC: polygons and masks become their bounding boxes) or
skipped, and each such case is listed in `ExportResult.notes`.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from anomaly_gui.core.export.common import ExportResult, copy_item_image, image_suffix, unique_stems
from anomaly_gui.core.export.masks import annotation_mask, rasterize, rle_encode
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


def formats_writer(fmt: str) -> Callable[..., object] | None:
    """Engineer A's `write_<fmt>(items, out_dir, classes)` from `core/formats/<fmt>.py`, when it exists."""
    import importlib

    try:
        mod = importlib.import_module(f"anomaly_gui.core.formats.{fmt}")
    except ModuleNotFoundError:
        return None
    return getattr(mod, f"write_{fmt}", None)


def _mask_as_box(it: DatasetItem, a: Annotation) -> Annotation | None:
    from anomaly_gui.core.export.common import item_size

    m = annotation_mask(a, item_size(it))
    ys, xs = np.nonzero(m)
    if not xs.size:
        return None
    geom = {"x1": float(xs.min()), "y1": float(ys.min()), "x2": float(xs.max() + 1), "y2": float(ys.max() + 1)}
    return Annotation("box", a.label, geom, score=a.score, source=a.source, status=a.status)


# -- Pascal VOC (engineer A's writer) -------------------------------------------------------------
@register_exporter("voc", "Pascal VOC (XML)")
def export_voc(items: Sequence[DatasetItem], classes: list[str], folder: Path, result: ExportResult) -> None:
    """VOC carries boxes only: polygons and masks are written as their bounding boxes, points skipped."""
    writer = formats_writer("voc")
    if writer is None:
        raise RuntimeError("the Pascal VOC writer (core/formats/voc.py) is missing")
    prepared = []
    for it in items:
        anns = []
        for a in it.annotations:
            if a.kind == "point":
                result.notes.append(f"{it.name}: point '{a.label}' skipped (VOC has no points)")
                continue
            if a.kind != "box":
                result.notes.append(f"{it.name}: {a.kind} '{a.label}' exported as its bounding box")
            if a.kind == "mask":
                box = _mask_as_box(it, a)
                if box is None:
                    continue
                a = box
            anns.append(a)
        result.n_annotations += len(anns)
        result.n_items += 1
        prepared.append(dataclasses.replace(it, annotations=anns))
    writer(prepared, folder, _class_list(items, classes))


# -- YOLO ------------------------------------------------------------------------------------------
@register_exporter("yolo", "YOLO (txt, boxes and polygons)")
def export_yolo(items: Sequence[DatasetItem], classes: list[str], folder: Path, result: ExportResult) -> None:
    (folder / "images").mkdir()
    (folder / "labels").mkdir()
    names = _class_list(items, classes)
    index = {n: k for k, n in enumerate(names)}
    stems = unique_stems(items)
    for it in items:
        stem = stems[int(it.id or 0)]
        w, h = copy_item_image(it, folder / "images" / (stem + image_suffix(it)))
        lines = []
        for a in it.annotations:
            c = index[a.label] if a.label in index else 0
            if a.kind == "box":
                x1, y1, x2, y2 = a.box()
                lines.append(f"{c} {(x1 + x2) / 2 / w:.8f} {(y1 + y2) / 2 / h:.8f} {(x2 - x1) / w:.8f} {(y2 - y1) / h:.8f}")
            elif a.kind == "polygon":
                pts = " ".join(f"{x / w:.8f} {y / h:.8f}" for x, y in a.geometry["points"])
                lines.append(f"{c} {pts}")
            else:
                result.notes.append(f"{it.name}: {a.kind} '{a.label}' skipped (YOLO has boxes and polygons)")
                continue
            result.n_annotations += 1
        (folder / "labels" / f"{stem}.txt").write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
        result.n_items += 1
    (folder / "classes.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    yaml_names = "\n".join(f"  {k}: {json.dumps(n)}" for k, n in enumerate(names))
    (folder / "data.yaml").write_text(f"path: .\ntrain: images\nval: images\nnames:\n{yaml_names}\n", encoding="utf-8")


# -- COCO ------------------------------------------------------------------------------------------
@register_exporter("coco", "COCO (JSON)")
def export_coco(items: Sequence[DatasetItem], classes: list[str], folder: Path, result: ExportResult) -> None:
    (folder / "images").mkdir()
    names = _class_list(items, classes)
    cat_id = {n: k + 1 for k, n in enumerate(names)}
    images, anns = [], []
    stems = unique_stems(items)
    for k, it in enumerate(items, start=1):
        fname = stems[int(it.id or 0)] + image_suffix(it)
        w, h = copy_item_image(it, folder / "images" / fname)
        images.append({"id": k, "file_name": f"images/{fname}", "width": w, "height": h})
        for a in it.annotations:
            rec = {"id": len(anns) + 1, "image_id": k, "category_id": cat_id.get(a.label, 1), "iscrowd": 0}
            if a.kind == "box":
                x1, y1, x2, y2 = a.box()
                rec.update(bbox=[x1, y1, x2 - x1, y2 - y1], area=(x2 - x1) * (y2 - y1), segmentation=[])
            elif a.kind == "polygon":
                pts = [float(v) for p in a.geometry["points"] for v in p]
                x1, y1, x2, y2 = a.box()
                rec.update(bbox=[x1, y1, x2 - x1, y2 - y1], area=_polygon_area(a.geometry["points"]), segmentation=[pts])
            elif a.kind == "mask":
                m = annotation_mask(a, (w, h))
                ys, xs = np.nonzero(m)
                if not xs.size:
                    continue
                # COCO's uncompressed RLE runs over the pixels in column-major order.
                rle = rle_encode(m.T)
                rle["size"] = [h, w]
                rec.update(bbox=[float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)],
                           area=float(m.sum()), segmentation=rle, iscrowd=1)
            else:
                result.notes.append(f"{it.name}: point '{a.label}' skipped (COCO keypoints need a skeleton)")
                continue
            if a.score is not None:
                rec["score"] = float(a.score)
            anns.append(rec)
            result.n_annotations += 1
        result.n_items += 1
    doc = {
        "info": {"description": "exported by anomaly_gui"},
        "images": images,
        "annotations": anns,
        "categories": [{"id": i, "name": n, "supercategory": ""} for n, i in cat_id.items()],
    }
    (folder / "annotations.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")


def _polygon_area(points: Sequence[Sequence[float]]) -> float:
    p = np.asarray(points, dtype=np.float64)
    if len(p) < 3:
        return 0.0
    x, y = p[:, 0], p[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


# -- mask PNGs ------------------------------------------------------------------------------------
@register_exporter("masks", "Mask PNGs (MVTec-style ground truth)")
def export_masks(items: Sequence[DatasetItem], classes: list[str], folder: Path, result: ExportResult) -> None:
    """One binary PNG (255 = defect) per item with shapes, named like the image; `classes.txt` alongside.

    Also writes `class_masks/` with each pixel's class index (1-based order of classes.txt) so
    multi-class labels survive.
    """
    from anomaly_gui.core.export.common import item_size
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
