"""labelme JSON: one `<image stem>.json` per image (`shapes`, `imagePath`, `imageWidth`, `imageHeight`).

Reader (`labelme`): every JSON with `shapes` in the folder (recursively); `rectangle` -> box,
`polygon` -> polygon, `point` -> point, `circle` -> box around it, `linestrip`/`line` -> polygon;
the image is `imagePath` relative to the JSON (or the same stem beside it). `imageData` is never
decoded (it only duplicates the file). Malformed JSON, shapes without points and JSON without an image
are reported; the item label is its most frequent shape label, `flags` set to true become `meta`.

Writer: `write_labelme(items, out_dir) -> Path` copies each image into `out_dir` (into
`out_dir/<split>/` when the item has a split, which the reader gives back) and writes `<stem>.json` beside it (labelme 5 format, `imageData: null`), which labelme and X-AnyLabeling open.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.formats.base import (
    Annotation,
    DatasetItem,
    ImportResult,
    ProgressFn,
    register_format,
)
from anomaly_gui.core.formats.common import (
    SPLIT_NAMES,
    box_annotation,
    check_writable,
    clip_box,
    export_names,
    is_image,
    item_size,
    main_label,
    natural_key,
    place_file,
    probe_size,
    split_from_parts,
    tick,
)
from anomaly_gui.core.imageio import write_text

LABELME_VERSION = "5.4.1"


def _labelme_jsons(root: Path, limit: int | None = None) -> list[Path]:
    out = []
    for p in sorted(root.rglob("*.json"), key=lambda q: natural_key(str(q))) if root.is_dir() else []:
        try:
            with open(p, "rb") as fh:
                head = fh.read(4096).decode("utf-8", errors="replace")
        except OSError:
            continue
        if '"shapes"' in head or '"imagePath"' in head:
            out.append(p)
            if limit and len(out) >= limit:
                break
    return out


@register_format
class LabelmeReader:
    name = "labelme"
    title = "labelme JSON"
    priority = 86

    def detect(self, root: Path) -> bool:
        if not root.is_dir():
            return False
        folders = [root] + [d for d in root.iterdir() if d.is_dir() and d.name.lower() in SPLIT_NAMES]
        has_imgs = any(p.is_file() and is_image(p) for d in folders for p in d.iterdir())
        return has_imgs and bool(_labelme_jsons(root, limit=1))

    def read(self, root: Path, progress: ProgressFn | None = None) -> ImportResult:
        root = Path(root)
        result = ImportResult(format=self.name, root=root)
        files = _labelme_jsons(root)
        labels: set[str] = set()
        for k, jf in enumerate(files, 1):
            tick(progress, k, len(files), "reading labelme JSON")
            item = _read_one(jf, result.problems)
            if item is None:
                continue
            item.split = split_from_parts(jf.relative_to(root).parts[:-1])
            labels.update(a.label for a in item.annotations)
            result.items.append(item)
        result.classes = sorted(labels)
        return result


def _read_one(jf: Path, problems: list[DataError]) -> DatasetItem | None:
    try:
        data = json.loads(jf.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        problems.append(DataError(jf, f"malformed JSON ({exc})"))
        return None
    if not isinstance(data, dict) or not isinstance(data.get("shapes", []), list):
        problems.append(DataError(jf, "not a labelme file ('shapes' must be a list)"))
        return None
    img = None
    if data.get("imagePath"):
        cand = jf.parent / str(data["imagePath"]).replace("\\", "/")
        img = cand if cand.is_file() else None
    if img is None:
        img = next((p for p in sorted(jf.parent.glob(jf.stem + ".*")) if is_image(p)), None)
    if img is None:
        problems.append(DataError(jf, f"image {data.get('imagePath')!r} not found"))
        return None
    w, h = data.get("imageWidth"), data.get("imageHeight")
    if not (isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0):
        size = probe_size(img, problems)
        if size is None:
            return None
        w, h = size
    anns: list[Annotation] = []
    for n, shape in enumerate(data.get("shapes") or [], 1):
        ann = _shape(shape, w, h)
        if isinstance(ann, str):
            problems.append(DataError(jf, f"shape {n}: {ann}; skipped"))
        else:
            anns.append(ann)
    meta: dict[str, Any] = {}
    flags = [k for k, v in (data.get("flags") or {}).items() if v] if isinstance(data.get("flags"), dict) else []
    if flags:
        meta["flags"] = flags
    return DatasetItem(path=str(img), label=main_label(anns), annotations=anns, width=w, height=h, meta=meta)


def _shape(shape: Any, w: int, h: int) -> Annotation | str:
    if not isinstance(shape, dict):
        return "not an object"
    label = str(shape.get("label") or "").strip()
    kind = shape.get("shape_type") or "polygon"
    try:
        pts = [[float(x), float(y)] for x, y in shape.get("points") or []]
    except (TypeError, ValueError):
        return "points must be [[x, y], ...]"
    if not label:
        return "no label"
    if not pts:
        return "no points"
    score = shape.get("score") if isinstance(shape.get("score"), (int, float)) else None
    if kind == "rectangle" and len(pts) >= 2:
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        box, _ = clip_box(min(xs), min(ys), max(xs), max(ys), w, h)
        return box_annotation(label, *box, score=score)
    if kind == "circle" and len(pts) == 2:
        (cx, cy), (px, py) = pts
        r = ((px - cx) ** 2 + (py - cy) ** 2) ** 0.5
        box, _ = clip_box(cx - r, cy - r, cx + r, cy + r, w, h)
        return box_annotation(label, *box, score=score)
    if kind == "point":
        return Annotation("point", label, {"x": pts[0][0], "y": pts[0][1]}, score=score)
    if kind in ("polygon", "linestrip", "line") and len(pts) >= 2:
        return Annotation("polygon", label, {"points": pts}, score=score)
    return f"unsupported shape_type {kind!r} with {len(pts)} point(s)"


def write_labelme(items: Sequence[DatasetItem], out_dir: str | Path, *, link_images: bool = False) -> Path:
    """Write each item's image and a labelme JSON beside it (see module doc). Returns `out_dir`."""
    out = Path(out_dir)
    check_writable(items, "labelme")
    for it, name in zip(items, export_names(items)):
        w, h = item_size(it)
        folder = out / it.split if it.split else out
        place_file(it.path, folder / name, link=link_images)
        shapes = []
        for a in it.annotations:
            if a.kind == "box":
                x1, y1, x2, y2 = a.box()
                pts, kind = [[x1, y1], [x2, y2]], "rectangle"
            elif a.kind == "polygon":
                pts, kind = [list(map(float, p)) for p in a.geometry["points"]], "polygon"
            elif a.kind == "point":
                pts, kind = [[float(a.geometry["x"]), float(a.geometry["y"])]], "point"
            else:
                continue
            shape: dict[str, Any] = {"label": a.label, "points": pts, "group_id": None, "description": "",
                                     "shape_type": kind, "flags": {}, "mask": None}
            if a.score is not None:
                shape["score"] = a.score
            shapes.append(shape)
        doc = {"version": LABELME_VERSION, "flags": {}, "shapes": shapes, "imagePath": name, "imageData": None,
               "imageHeight": h, "imageWidth": w}
        write_text(folder / f"{Path(name).stem}.json", json.dumps(doc, indent=2))
    return out
