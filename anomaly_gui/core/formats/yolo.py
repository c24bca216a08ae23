"""YOLO (Ultralytics / Darknet) detection layout.

Recognised: a `data.yaml` (or any `*.yaml` with `names`) giving `path`, `train`/`val`/`test` (image
folders or list files) and `names` (list or {id: name}); or, without YAML, `images/` + `labels/`
(flat, or with `train/val/test` sub-folders), or Roboflow's `train/images` + `train/labels`.
Class names without YAML come from `classes.txt` / `obj.names`, else the class id as text.

A label file sits where the image path has its last `images` part replaced by `labels`, suffix `.txt`.
Line `cls cx cy w h` (normalised centre/size) becomes a pixel box (image size from the header only);
`cls cx cy w h conf` keeps the confidence as score; `cls x1 y1 x2 y2 ...` (more than five values, odd
count) is a segmentation polygon. Malformed lines, unknown class ids and out-of-range coordinates
(clipped) are reported with file and line; images without a label file are background (no problem).

Writer: `write_yolo(items, out_dir, classes=None) -> Path` writes `images/<split>/`, `labels/<split>/`
(items without split go to train) and `data.yaml` (splits relative to the yaml's folder, `names` as {id: name}).
Numbers are written with 12 significant digits (pixel error below 1e-8 px for usual sizes).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import yaml

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.formats.base import Annotation, DatasetItem, ImportResult, ProgressFn, register_format
from anomaly_gui.core.formats.common import (SPLIT_NAMES, box_annotation, check_writable, class_list, clip_box, export_names,
                                             find_child, item_size, list_images, main_label, place_file, probe_size,
                                             subdirs, tick)
from anomaly_gui.core.imageio import write_text

_NAME_FILES = ("classes.txt", "obj.names", "labels.txt")
_LABEL_DIRS = {"images": "labels", "Images": "Labels", "IMAGES": "LABELS"}


def _yaml_files(root: Path) -> list[Path]:
    if root.is_file() and root.suffix.lower() in (".yaml", ".yml"):
        return [root]
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in (".yaml", ".yml"))


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"malformed YAML ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from exc
    if not isinstance(data, dict):
        raise DataError(path, "YAML is not a mapping")
    return data


def _data_yaml(root: Path) -> Path | None:
    files = _yaml_files(root)
    for p in files:
        if p.stem.lower() in ("data", "dataset"):
            return p
    for p in files:
        try:
            text = p.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if "names" in text and ("train" in text or "val" in text):
            return p
    return None


@register_format
class YOLOReader:
    name = "yolo"
    title = "YOLO"
    priority = 90

    def detect(self, root: Path) -> bool:
        if _data_yaml(root) is not None:
            return True
        if not root.is_dir():
            return False
        images, labels = find_child(root, "images"), find_child(root, "labels")
        if images is not None and labels is not None and images.is_dir() and labels.is_dir():
            return any(labels.rglob("*.txt"))
        return any((d / "images").is_dir() and (d / "labels").is_dir() for d in subdirs(root) if d.name.lower() in SPLIT_NAMES)

    def read(self, root: Path, progress: ProgressFn | None = None) -> ImportResult:
        root = Path(root)
        result = ImportResult(format=self.name, root=root if root.is_dir() else root.parent)
        yml = _data_yaml(root)
        names: list[str] = []
        sources: list[tuple[str, list[Path]]] = []
        if yml is not None:
            try:
                data = _load_yaml(yml)
            except DataError as exc:
                result.problems.append(exc)
                data = {}
            names = _names(data.get("names"), yml, result.problems)
            base = yml.parent / str(data["path"]) if data.get("path") else yml.parent
            if not base.is_dir():
                base = yml.parent
            for key in ("train", "val", "test"):
                spec = data.get(key)
                for s in ([spec] if isinstance(spec, str) else spec or []):
                    sources.append((SPLIT_NAMES.get(key, key), _resolve_images(base, str(s), yml, result.problems)))
        if not sources:
            sources = _sources_without_yaml(result.root)
        if not names:
            names = _names_from_files(result.root, result.problems)
        jobs = [(split, img) for split, imgs in sources for img in imgs]
        seen: set[Path] = set()
        used_ids: set[int] = set()
        for k, (split, img) in enumerate(jobs, 1):
            tick(progress, k, len(jobs), "reading YOLO labels")
            if img in seen:
                continue
            seen.add(img)
            size = probe_size(img, result.problems)
            if size is None:
                continue
            lbl = _label_path(img)
            anns = _read_labels(lbl, size, names, used_ids, result.problems) if lbl.is_file() else []
            result.items.append(DatasetItem(path=str(img), split=split, label=main_label(anns), annotations=anns,
                                            width=size[0], height=size[1]))
        _report_orphans(result.root, seen, result.problems)
        result.classes = names or [str(i) for i in sorted(used_ids)]
        if yml is not None:
            result.meta["data_yaml"] = str(yml)
        return result


def _names(spec: Any, yml: Path, problems: list[DataError]) -> list[str]:
    if isinstance(spec, list):
        return [str(n) for n in spec]
    if isinstance(spec, dict):
        try:
            ids = sorted(int(k) for k in spec)
        except (TypeError, ValueError):
            problems.append(DataError(yml, "names: keys must be class ids"))
            return []
        return [str(spec.get(i, spec.get(str(i), i))) for i in range(max(ids) + 1)] if ids else []
    if spec is not None:
        problems.append(DataError(yml, "names must be a list or a mapping"))
    return []


def _names_from_files(root: Path, problems: list[DataError]) -> list[str]:
    for name in _NAME_FILES:
        p = root / name
        if p.is_file():
            try:
                return [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(DataError(p, f"cannot read class names ({exc})"))
    return []


def _resolve_images(base: Path, spec: str, yml: Path, problems: list[DataError]) -> list[Path]:
    p = Path(spec)
    p = p if p.is_absolute() else base / p
    if p.is_dir():
        return list_images(p, recursive=True)
    if p.is_file() and p.suffix.lower() == ".txt":
        out = []
        for line in p.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line:
                q = Path(line)
                q = q if q.is_absolute() else (base / q)
                out.append(q)
        return out
    problems.append(DataError(yml, f"split folder {spec!r} not found (looked in {p})"))
    return []


def _sources_without_yaml(root: Path) -> list[tuple[str, list[Path]]]:
    images = find_child(root, "images")
    if images is not None and images.is_dir():
        out = []
        flat = list_images(images)
        if flat:
            out.append(("", flat))
        for d in subdirs(images):
            out.append((SPLIT_NAMES.get(d.name.lower(), ""), list_images(d, recursive=True)))
        return out
    return [(SPLIT_NAMES[d.name.lower()], list_images(d / "images", recursive=True))
            for d in subdirs(root) if d.name.lower() in SPLIT_NAMES and (d / "images").is_dir()]


def _label_path(img: Path) -> Path:
    """Ultralytics' rule: the last `/images/` of the path becomes `/labels/`, the suffix `.txt`."""
    s = str(img)
    stem = os.path.splitext(s)[0]
    best = max(((stem.rfind(f"{os.sep}{name}{os.sep}"), name) for name in _LABEL_DIRS), default=(-1, ""))
    k, name = best
    if k >= 0:
        return Path(f"{stem[:k]}{os.sep}{_LABEL_DIRS[name]}{os.sep}{stem[k + len(name) + 2:]}.txt")
    return Path(stem + ".txt")


def _read_labels(path: Path, size: tuple[int, int], names: list[str], used: set[int], problems: list[DataError]) -> list[Annotation]:
    w, h = size
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(DataError(path, f"cannot read label file ({exc})"))
        return []
    anns: list[Annotation] = []
    for n, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            cid = int(float(fields[0]))
            vals = [float(v) for v in fields[1:]]
        except ValueError:
            problems.append(DataError(path, f"line {n}: not numbers ({line.strip()[:40]!r}); skipped"))
            continue
        if len(vals) < 4 or (len(vals) > 5 and len(vals) % 2):
            problems.append(DataError(path, f"line {n}: expected 'class cx cy w h' or a polygon, got {len(vals) + 1} values; skipped"))
            continue
        if cid < 0 or (names and cid >= len(names)):
            problems.append(DataError(path, f"line {n}: class id {cid} not in the {len(names)} names; skipped"))
            continue
        used.add(cid)
        label = names[cid] if names else str(cid)
        if len(vals) in (4, 5):
            cx, cy, bw, bh = vals[:4]
            box, clipped = clip_box((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h, w, h)
            if clipped:
                problems.append(DataError(path, f"line {n}: box reaches outside the image, clipped"))
            if box[2] <= box[0] or box[3] <= box[1]:
                problems.append(DataError(path, f"line {n}: empty box; skipped"))
                continue
            anns.append(box_annotation(label, *box, score=vals[4] if len(vals) == 5 else None))
        else:
            pts = [[min(max(x, 0.0), 1.0) * w, min(max(y, 0.0), 1.0) * h] for x, y in zip(vals[0::2], vals[1::2])]
            if any(not (0 <= v <= 1) for v in vals):
                problems.append(DataError(path, f"line {n}: polygon reaches outside the image, clipped"))
            anns.append(Annotation("polygon", label, {"points": pts}))
    return anns


def _report_orphans(root: Path, seen: set[Path], problems: list[DataError]) -> None:
    labels = find_child(root, "labels")
    if labels is None or not labels.is_dir():
        return
    wanted = {_label_path(p) for p in seen}
    for txt in sorted(labels.rglob("*.txt")):
        if txt not in wanted and txt.name not in _NAME_FILES:
            problems.append(DataError(txt, "label file without an image"))


def write_yolo(items: Sequence[DatasetItem], out_dir: str | Path, classes: Sequence[str] | None = None, *,
               link_images: bool = False) -> Path:
    """Write items as a YOLO dataset with data.yaml (see module doc). Returns `out_dir`."""
    out = Path(out_dir)
    check_writable(items, "YOLO")
    classes = class_list(items, classes)
    index = {c: i for i, c in enumerate(classes)}
    names = export_names(items)
    splits: set[str] = set()
    for it, name in zip(items, names):
        split = it.split or "train"
        splits.add(split)
        w, h = item_size(it)
        place_file(it.path, out / "images" / split / name, link=link_images)
        lines = []
        for a in it.annotations:
            if a.kind not in ("box", "polygon") or a.label not in index:
                continue
            if a.kind == "polygon":
                coords = " ".join(f"{x / w:.12g} {y / h:.12g}" for x, y in a.geometry["points"])
                lines.append(f"{index[a.label]} {coords}")
                continue
            x1, y1, x2, y2 = a.box()
            vals = [(x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h]
            if a.score is not None:
                vals.append(a.score)
            lines.append(f"{index[a.label]} " + " ".join(f"{v:.12g}" for v in vals))
        write_text(out / "labels" / split / f"{Path(name).stem}.txt", "".join(ln + "\n" for ln in lines))
    # No `path` key: Ultralytics then resolves the splits against this yaml's folder (`path: .` would be
    # taken relative to its own datasets directory).
    data: dict[str, Any] = {}
    for split in ("train", "val", "test"):
        if split in splits:
            data[split] = f"images/{split}"
    if "val" not in data and "train" in data:
        data["val"] = data["train"]  # Ultralytics needs a val entry
    data["names"] = {i: c for i, c in enumerate(classes)}
    write_text(out / "data.yaml", yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return out
