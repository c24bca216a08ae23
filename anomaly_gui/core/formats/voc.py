"""Pascal VOC: `JPEGImages/`, `Annotations/*.xml`, `ImageSets/Main/{train,val,trainval,test}.txt`.

Reader: a VOC folder, or a `VOCdevkit/` holding several (`VOC2007/`, `VOC2012/`); one item per image (images without an XML are kept, without boxes, and reported); boxes
are read as written (no 1-based shift, floats allowed), ordered and clipped to the image with a
problem per clipped box; objects missing their name or box are skipped and reported; an XML whose
image is missing is reported. A `labels.txt` / `classes.txt` / `class_names.txt` at the root is the
class list (objects of other classes are kept and reported); otherwise the classes are the names seen.
`difficult`/`truncated` go into the box geometry.

Writer: `write_voc(items, out_dir, classes=None) -> Path` copies each image into
`JPEGImages/` (unique names; `copy_images=False` leaves them in place inside `out_dir`), writes `Annotations/<stem>.xml` (box annotations; polygons as their
bounding box), `ImageSets/Main/<split>.txt` (items without split go to train) and `labels.txt`.
Coordinates are written as the shortest exact decimal, so reading back gives the same floats.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Sequence

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.formats.base import Annotation, DatasetItem, ImportResult, ProgressFn, register_format
from anomaly_gui.core.formats.common import (box_annotation, check_writable, class_list, clip_box, export_names, find_child,
                                             fmt_num, item_size, list_images, main_label, natural_key, place_file, probe_size, subdirs, tick)
from anomaly_gui.core.imageio import write_text

CLASS_FILES = ("labels.txt", "classes.txt", "class_names.txt")
_SPLIT_FILES = (("train", "train"), ("val", "val"), ("test", "test"), ("trainval", "train"))


@register_format
class VOCReader:
    name = "voc"
    title = "Pascal VOC"
    priority = 88

    def detect(self, root: Path) -> bool:
        return bool(_voc_roots(root))

    def read(self, root: Path, progress: ProgressFn | None = None) -> ImportResult:
        root = Path(root)
        result = ImportResult(format=self.name, root=root)
        roots = _voc_roots(root)
        if not roots:
            raise DataError(root, "no Annotations folder (Pascal VOC)")
        classes: list[str] = []
        for voc_root in roots:  # VOCdevkit/ holds VOC2007/, VOC2012/ ...
            known = self._read_one(voc_root, result, progress)
            classes += [c for c in known if c not in classes]
        seen = sorted({a.label for it in result.items for a in it.annotations})
        result.classes = classes + [c for c in seen if c not in classes] if classes else seen
        return result

    def _read_one(self, root: Path, result: ImportResult, progress: ProgressFn | None) -> list[str]:
        ann_dir = find_child(root, "Annotations")
        assert ann_dir is not None
        img_dir = find_child(root, "JPEGImages", "images") or root
        images = {p.stem: p for p in list_images(img_dir, recursive=img_dir != root)}
        splits = _read_splits(root, result.problems)
        known = _read_classes(root, result.problems)
        xmls = sorted(ann_dir.glob("*.xml"), key=lambda p: natural_key(p.name))
        done: set[str] = set()
        total = len(xmls) + len(images)
        items: list[DatasetItem] = []
        for k, xml in enumerate(xmls, 1):
            tick(progress, k, total, f"reading {root.name} annotations")
            item = self._read_xml(xml, img_dir, images, known, result.problems)
            if item is None:
                continue
            stem = Path(item.path).stem
            done.add(stem)
            item.split = splits.get(stem, "")
            items.append(item)
        for k, (stem, img) in enumerate(sorted(images.items(), key=lambda kv: natural_key(kv[0])), len(xmls) + 1):
            tick(progress, k, total, f"reading {root.name} images")
            if stem in done:
                continue
            size = probe_size(img, result.problems)
            if size is None:
                continue
            result.problems.append(DataError(img, "no annotation file (imported without boxes)"))
            items.append(DatasetItem(path=str(img), split=splits.get(stem, ""), label="empty",
                                     width=size[0], height=size[1]))
        items.sort(key=lambda it: natural_key(Path(it.path).name))
        result.items.extend(items)
        return known

    @staticmethod
    def _read_xml(xml: Path, img_dir: Path, images: dict[str, Path], known: list[str], problems: list[DataError]) -> DatasetItem | None:
        try:
            tree = ET.parse(xml).getroot()
        except (ET.ParseError, OSError) as exc:
            problems.append(DataError(xml, f"malformed XML ({exc})"))
            return None
        fname = (tree.findtext("filename") or "").strip()
        img = images.get(Path(fname).stem) if fname else None
        if img is None:
            img = images.get(xml.stem)
        if img is None and (tree.findtext("path") or "").strip():
            alt = xml.parent.parent / (tree.findtext("path") or "").strip()  # relative to the dataset root
            if alt.is_file():
                img = alt
        if img is None:
            problems.append(DataError(xml, f"annotation without image ({fname or xml.stem} not in {img_dir.name}/)"))
            return None
        w = _int(tree.findtext("size/width"))
        h = _int(tree.findtext("size/height"))
        if not w or not h:
            size = probe_size(img, problems)
            if size is None:
                return None
            w, h = size
        anns: list[Annotation] = []
        for n, obj in enumerate(tree.findall("object"), 1):
            name = (obj.findtext("name") or "").strip()
            bb = obj.find("bndbox")
            coords = [_float(bb.findtext(t)) if bb is not None else None for t in ("xmin", "ymin", "xmax", "ymax")]
            if not name or None in coords:
                missing = "name" if not name else "bndbox/xmin..ymax"
                problems.append(DataError(xml, f"object {n}: missing or invalid {missing}; skipped"))
                continue
            if known and name not in known:
                problems.append(DataError(xml, f"object {n}: unknown class {name!r}"))
            (x1, y1, x2, y2), clipped = clip_box(*coords, w, h)  # type: ignore[arg-type]
            if clipped:
                problems.append(DataError(xml, f"object {n} ({name}): box outside the {w}x{h} image, clipped"))
            if x2 <= x1 or y2 <= y1:
                problems.append(DataError(xml, f"object {n} ({name}): empty box; skipped"))
                continue
            extra = {}
            for flag in ("difficult", "truncated"):
                if _int(obj.findtext(flag)):
                    extra[flag] = True
            anns.append(box_annotation(name, x1, y1, x2, y2, **extra))
        return DatasetItem(path=str(img), label=main_label(anns), annotations=anns, width=w, height=h)


def _has_annotations(folder: Path) -> bool:
    ann = find_child(folder, "Annotations")
    return ann is not None and ann.is_dir() and any(ann.glob("*.xml"))


def _voc_roots(root: Path) -> list[Path]:
    """`root` when it is a VOC folder, else its VOC sub-folders (a VOCdevkit), else []."""
    if not root.is_dir():
        return []
    if _has_annotations(root):
        return [root]
    return [d for d in subdirs(root) if _has_annotations(d)]


def _int(text: str | None) -> int | None:
    try:
        return int(float(text)) if text is not None and text.strip() else None
    except ValueError:
        return None


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text is not None and text.strip() else None
    except ValueError:
        return None


def _read_splits(root: Path, problems: list[DataError]) -> dict[str, str]:
    main = root / "ImageSets" / "Main"
    out: dict[str, str] = {}
    for fname, split in _SPLIT_FILES:
        p = main / f"{fname}.txt"
        if not p.is_file():
            continue
        try:
            lines = p.read_text(encoding="utf-8").split()
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(DataError(p, f"cannot read split file ({exc})"))
            continue
        for stem in lines:
            out.setdefault(stem, split)
    return out


def _read_classes(root: Path, problems: list[DataError]) -> list[str]:
    for name in CLASS_FILES:
        p = root / name
        if p.is_file():
            try:
                names = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(DataError(p, f"cannot read class list ({exc})"))
                return []
            return [n for n in names if n not in ("__ignore__", "_background_")]
    return []


def write_voc(items: Sequence[DatasetItem], out_dir: str | Path, classes: Sequence[str] | None = None,
              copy_images: bool = True, *, link_images: bool = False) -> Path:
    """Write items as a Pascal VOC folder (see module doc). Returns `out_dir`.

    With `copy_images=False` the images stay where they are (they must lie inside `out_dir`, e.g. a
    YOLO `images/` folder) and each XML's `<path>` holds the image path relative to `out_dir`.
    """
    out = Path(out_dir)
    check_writable(items, "Pascal VOC")
    classes = class_list(items, classes)
    names = export_names(items) if copy_images else [Path(it.path).name for it in items]
    by_split: dict[str, list[str]] = {}
    for it, name in zip(items, names):
        w, h = item_size(it)
        if copy_images:
            place_file(it.path, out / "JPEGImages" / name, link=link_images)
            folder, rel = "JPEGImages", f"JPEGImages/{name}"
        else:
            rel = Path(it.path).resolve().relative_to(out.resolve()).as_posix()
            folder = str(Path(rel).parent.as_posix())
        stem = Path(name).stem
        by_split.setdefault(it.split or "train", []).append(stem)
        root = ET.Element("annotation")
        ET.SubElement(root, "folder").text = folder
        ET.SubElement(root, "filename").text = name
        ET.SubElement(root, "path").text = rel
        size = ET.SubElement(root, "size")
        for tag, v in (("width", w), ("height", h), ("depth", 3)):
            ET.SubElement(size, tag).text = str(v)
        ET.SubElement(root, "segmented").text = "0"
        for a in it.annotations:
            if a.kind not in ("box", "polygon"):
                continue
            obj = ET.SubElement(root, "object")
            ET.SubElement(obj, "name").text = a.label
            ET.SubElement(obj, "pose").text = "Unspecified"
            ET.SubElement(obj, "truncated").text = "1" if a.geometry.get("truncated") else "0"
            ET.SubElement(obj, "difficult").text = "1" if a.geometry.get("difficult") else "0"
            bb = ET.SubElement(obj, "bndbox")
            for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), a.box()):
                ET.SubElement(bb, tag).text = fmt_num(v)
        ET.indent(root)
        write_text(out / "Annotations" / f"{stem}.xml", ET.tostring(root, encoding="unicode") + "\n")
    for split, stems in by_split.items():
        write_text(out / "ImageSets" / "Main" / f"{split}.txt", "\n".join(stems) + "\n")
    write_text(out / "labels.txt", "\n".join(classes) + ("\n" if classes else ""))
    return out
