"""COCO detection JSON (`images`, `annotations`, `categories`; bbox `[x, y, w, h]` in pixels).

The root may be the JSON file itself or a folder holding it (top level or `annotations/`); several
JSON files are read together, the split taken from a file name holding train/val/test. Images are
looked up relative to the JSON's folder, its `images/` sub-folder, or the same one level up.
A one-part polygon `segmentation` becomes a polygon annotation, otherwise (RLE, several parts)
`bbox` a box; `score`
(results files) is kept. Images without annotations are kept (label `empty`). Annotations naming an
unknown image or category, malformed bboxes (clipped when outside the image) and missing image files
are reported, one problem each, and the import goes on.

COCO Camera Traps JSON (image-level species, optional boxes, `location`/`seq_id`/`datetime`) is
read by the `coco_camtrap` reader in `camtrap.py` with the same code.

Writer: `write_coco(items, out_dir, classes=None, json_name="annotations.json", camtrap=False)
-> Path` (the JSON path) copies images into `out_dir/images/` and writes one JSON with
`file_name` relative to `out_dir`; category ids start at 1; `split` is kept in each image record.
With `camtrap=True` every item gets an image-level annotation of its label (species) as well.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Sequence

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.formats.base import Annotation, DatasetItem, ImportResult, ProgressFn, register_format
from anomaly_gui.core.formats.common import (box_annotation, check_writable, class_list, clip_box, export_names, find_child,
                                             item_size, main_label, place_file, probe_size, tick)
from anomaly_gui.core.imageio import write_text

_PEEK = 1 << 16
_SPLIT_RE = re.compile(r"(train|validation|valid|val|test)")
_CAMTRAP_KEYS = ('"seq_id"', '"location"', '"datetime"', '"seq_num_frames"')


def json_files(root: Path) -> list[Path]:
    """COCO-looking JSON files at `root` (a file, or a folder's top level and `annotations/`)."""
    if root.is_file():
        return [root] if root.suffix.lower() == ".json" and _looks_coco(root) else []
    if not root.is_dir():
        return []
    cands = sorted(root.glob("*.json"))
    ann = find_child(root, "annotations")
    if ann is not None and ann.is_dir():
        cands += sorted(ann.glob("*.json"))
    return [p for p in cands if _looks_coco(p)]


def _head(path: Path, tail: bool = False) -> str:
    """The first (and with `tail` also the last) 64 KB of a file, without parsing a large JSON."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(_PEEK)
            if tail:
                size = fh.seek(0, 2)
                if size > 2 * _PEEK:
                    fh.seek(size - _PEEK)
                    data += fh.read(_PEEK)
            return data.decode("utf-8", errors="replace")
    except OSError:
        return ""


def _looks_coco(path: Path) -> bool:
    text = _head(path, tail=True)  # 'annotations' and 'categories' may follow a long 'images' list
    return '"images"' in text and ('"annotations"' in text or '"categories"' in text)


def is_camtrap_json(path: Path) -> bool:
    head = _head(path)
    return any(k in head for k in _CAMTRAP_KEYS)


@register_format
class COCOReader:
    name = "coco"
    title = "COCO JSON"
    priority = 70

    def detect(self, root: Path) -> bool:
        return bool(json_files(root))

    def read(self, root: Path, progress: ProgressFn | None = None) -> ImportResult:
        return read_coco(Path(root), self.name, progress, camtrap=False)


def read_coco(root: Path, fmt: str, progress: ProgressFn | None, camtrap: bool) -> ImportResult:
    files = json_files(root)
    result = ImportResult(format=fmt, root=root if root.is_dir() else root.parent)
    if not files:
        raise DataError(root, "no COCO JSON (with images and annotations) found")
    classes: list[str] = []
    for jf in files:
        m = _SPLIT_RE.search(jf.stem.lower())
        split = {"valid": "val", "validation": "val"}.get(m.group(1), m.group(1)) if m else ""
        _read_one(jf, split, result, classes, progress, camtrap)
    result.classes = classes
    return result


def _read_one(jf: Path, split: str, result: ImportResult, classes: list[str], progress: ProgressFn | None, camtrap: bool) -> None:
    try:
        data = json.loads(jf.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        result.problems.append(DataError(jf, f"malformed JSON ({exc})"))
        return
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        result.problems.append(DataError(jf, "not a COCO file (no 'images' list)"))
        return
    cats: dict[Any, str] = {}
    for c in data.get("categories") or []:
        if isinstance(c, dict) and "id" in c:
            cats[c["id"]] = str(c.get("name", c["id"]))
            if cats[c["id"]] not in classes and not (camtrap and cats[c["id"]] == "empty"):
                classes.append(cats[c["id"]])
    anns_by_image: dict[Any, list[dict[str, Any]]] = {}
    image_ids = {im.get("id") for im in data["images"] if isinstance(im, dict)}
    for n, a in enumerate(data.get("annotations") or []):
        if not isinstance(a, dict) or a.get("image_id") not in image_ids:
            result.problems.append(DataError(jf, f"annotation #{n} (id {a.get('id') if isinstance(a, dict) else '?'}): unknown image_id; skipped"))
            continue
        anns_by_image.setdefault(a["image_id"], []).append(a)
    bases: list[Path] = [jf.parent, jf.parent / "images", jf.parent.parent, jf.parent.parent / "images"]
    total = len(data["images"])
    for k, im in enumerate(data["images"], 1):
        tick(progress, k, total, f"reading {jf.name}")
        if not isinstance(im, dict) or not im.get("file_name"):
            result.problems.append(DataError(jf, f"image #{k - 1} has no file_name; skipped"))
            continue
        path = _find_image(str(im["file_name"]), bases)
        if path is None:
            result.problems.append(DataError(jf.parent / str(im["file_name"]), f"image listed in {jf.name} not found"))
            continue
        w, h = im.get("width"), im.get("height")
        if not (isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0):
            size = probe_size(path, result.problems)
            if size is None:
                continue
            w, h = size
        anns, species = _annotations(anns_by_image.get(im.get("id"), []), cats, w, h, jf, result.problems)
        meta = {k2: im[k2] for k2 in ("location", "seq_id", "frame_num", "datetime", "seq_num_frames") if k2 in im}
        label = (species[0] if species else "empty") if camtrap else main_label(anns)
        if camtrap and len(species) > 1:
            meta["species"] = species
        item_split = str(im.get("split") or split)
        result.items.append(DatasetItem(path=str(path), split=item_split, label=label, annotations=anns,
                                        width=w, height=h, meta=meta))


def _find_image(name: str, bases: list[Path]) -> Path | None:
    p = Path(name)
    if p.is_absolute():
        return p if p.is_file() else None
    for i, b in enumerate(bases):
        q = b / p
        if q.is_file():
            if i:
                bases.insert(0, bases.pop(i))  # the winning base is tried first next time
            return q
    return None


def _annotations(raw: list[dict[str, Any]], cats: dict[Any, str], w: int, h: int, jf: Path,
                 problems: list[DataError]) -> tuple[list[Annotation], list[str]]:
    anns: list[Annotation] = []
    species: list[str] = []
    for a in raw:
        if a.get("category_id") not in cats:
            problems.append(DataError(jf, f"annotation {a.get('id')}: unknown category_id {a.get('category_id')!r}; skipped"))
            continue
        label = cats[a["category_id"]]
        if label not in species:
            species.append(label)
        seg, bbox = a.get("segmentation"), a.get("bbox")
        score = float(a["score"]) if isinstance(a.get("score"), (int, float)) else None
        if isinstance(seg, list) and len(seg) == 1 and isinstance(seg[0], list) and len(seg[0]) >= 6:  # one part
            flat = seg[0]
            anns.append(Annotation("polygon", label, {"points": [[float(x), float(y)] for x, y in zip(flat[0::2], flat[1::2])]}, score=score))
            if a.get("iscrowd"):
                anns[-1].geometry["iscrowd"] = True
            continue
        if bbox is None:
            continue  # image-level label (Camera Traps)
        try:
            x, y, bw, bh = (float(v) for v in bbox)
        except (TypeError, ValueError):
            problems.append(DataError(jf, f"annotation {a.get('id')}: bbox must be [x, y, w, h]; skipped"))
            continue
        box, clipped = clip_box(x, y, x + bw, y + bh, w, h)
        if clipped:
            problems.append(DataError(jf, f"annotation {a.get('id')}: bbox outside the {w}x{h} image, clipped"))
        if box[2] <= box[0] or box[3] <= box[1]:
            problems.append(DataError(jf, f"annotation {a.get('id')}: empty bbox; skipped"))
            continue
        anns.append(box_annotation(label, *box, score=score))
        if a.get("iscrowd"):
            anns[-1].geometry["iscrowd"] = True  # a crowd region: ignored by mAP, not trained on
    return anns, species


def write_coco(items: Sequence[DatasetItem], out_dir: str | Path, classes: Sequence[str] | None = None,
               json_name: str = "annotations.json", camtrap: bool = False, *, link_images: bool = False) -> Path:
    """Write items as COCO (or COCO Camera Traps) JSON plus `images/` (see module doc). Returns the JSON path."""
    out = Path(out_dir)
    check_writable(items, "COCO")
    classes = class_list(items, classes)
    if camtrap:
        for lbl in sorted({it.label for it in items if it.label}):
            if lbl not in classes:
                classes.append(lbl)
    cat_id = {c: i + 1 for i, c in enumerate(classes)}
    images, annotations = [], []
    for img_id, (it, name) in enumerate(zip(items, export_names(items)), 1):
        w, h = item_size(it)
        place_file(it.path, out / "images" / name, link=link_images)
        rec: dict[str, Any] = {"id": img_id, "file_name": f"images/{name}", "width": w, "height": h}
        if it.split:
            rec["split"] = it.split
        if camtrap:
            rec.update({k: v for k, v in it.meta.items() if k in ("location", "seq_id", "frame_num", "datetime", "seq_num_frames")})
            rec.setdefault("location", "")
        images.append(rec)
        boxed: set[str] = set()
        for a in it.annotations:
            if a.kind not in ("box", "polygon") or a.label not in cat_id:
                continue
            x1, y1, x2, y2 = a.box()
            ann: dict[str, Any] = {"id": len(annotations) + 1, "image_id": img_id, "category_id": cat_id[a.label],
                                   "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1),
                                   "iscrowd": int(bool(a.geometry.get("iscrowd"))),
                                   "segmentation": [[c for p in a.geometry["points"] for c in p]] if a.kind == "polygon" else []}
            if a.score is not None:
                ann["score"] = a.score
            annotations.append(ann)
            boxed.add(a.label)
        if camtrap and it.label and it.label not in boxed and it.label in cat_id:
            annotations.append({"id": len(annotations) + 1, "image_id": img_id, "category_id": cat_id[it.label]})
    data = {"info": {"description": "written by anomaly_gui", "version": "1.0"},
            "categories": [{"id": i, "name": c} for c, i in cat_id.items()], "images": images, "annotations": annotations}
    path = out / json_name
    write_text(path, json.dumps(data, indent=1))
    return path
