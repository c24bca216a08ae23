"""Plain image folder, read recursively (the fallback when no other layout matches).

The first sub-folder below the root names an image's label, skipping containers (`images`, `data`,
`imgs`) and split folders; a path part called train/val/test (or training/validation/testing) sets
its split. Labels `good`/`normal`/`ok` mean normal; when such a label exists, every other label counts
as anomalous, otherwise `is_anomalous` stays unknown (None). Folders of masks (`masks`,
`ground_truth`, `gt`) are not read as images: a mask at the same relative path under a `Masks/` tree
beside `Images/` (VisA's `Data/Images/Anomaly/000.JPG` -> `Data/Masks/Anomaly/000.png`) becomes the
item's `mask_path`. A single image file may be given as the root too.
"""
from __future__ import annotations

from pathlib import Path

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.formats.base import DatasetItem, ImportResult, ProgressFn, register_format
from anomaly_gui.core.formats.common import SPLIT_NAMES, is_image, is_normal_label, list_images, probe_size, split_from_parts, tick

_SCAN_LIMIT = 5000
_CONTAINERS = frozenset({"images", "image", "imgs", "img", "data", "pictures", "photos"})
_MASK_DIRS = frozenset({"masks", "mask", "ground_truth", "groundtruth", "gt", "labels", "annotations"})
_MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")


@register_format
class FolderReader:
    name = "folder"
    title = "Image folder"
    priority = 0

    def detect(self, root: Path) -> bool:
        if root.is_file():
            return is_image(root)
        seen = 0
        for p in root.rglob("*"):
            seen += 1
            if p.is_file() and is_image(p):
                return True
            if seen > _SCAN_LIMIT:
                break
        return False

    def read(self, root: Path, progress: ProgressFn | None = None) -> ImportResult:
        root = Path(root)
        result = ImportResult(format=self.name, root=root)
        if root.is_file():
            files, base = [root], root.parent
        elif root.is_dir():
            files, base = list_images(root, recursive=True), root
        else:
            raise DataError(root, "path not found")
        entries: list[tuple[Path, str, str]] = []
        for f in files:
            parts = f.relative_to(base).parts[:-1]
            if any(p.lower() in _MASK_DIRS for p in parts):
                continue
            split = split_from_parts(parts)
            label_parts = [p for p in parts if p.lower() not in SPLIT_NAMES and p.lower() not in _CONTAINERS]
            entries.append((f, split, label_parts[0] if label_parts else ""))
        has_normal = any(is_normal_label(lbl) for _, _, lbl in entries)
        labels: set[str] = set()
        for k, (f, split, label) in enumerate(entries, 1):
            tick(progress, k, len(entries), "reading image folder")
            size = probe_size(f, result.problems)
            if size is None:
                continue
            if is_normal_label(label):
                anomalous: bool | None = False
            elif has_normal and label:
                anomalous = True
            else:
                anomalous = None
            if label:
                labels.add(label)
            mask = _parallel_mask(f, base)
            result.items.append(DatasetItem(path=str(f), split=split, label=label, is_anomalous=anomalous,
                                            mask_path=None if mask is None else str(mask), width=size[0], height=size[1]))
        result.classes = sorted(labels)
        return result


def _parallel_mask(img: Path, base: Path) -> Path | None:
    """The mask of `img` in a `Masks/` (or `masks/`, `ground_truth/`) tree parallel to its `Images/` folder."""
    parts = img.relative_to(base).parts
    for i in range(len(parts) - 2, -1, -1):
        if parts[i].lower() in ("images", "image", "imgs"):
            head = base.joinpath(*parts[:i])
            tail = Path(*parts[i + 1:])
            for mdir in ("Masks", "masks", "ground_truth", "Mask", "mask"):
                folder = head / mdir / tail.parent
                if not folder.is_dir():
                    continue
                for stem in (tail.stem, f"{tail.stem}_mask"):
                    for suf in _MASK_SUFFIXES:
                        cand = folder / f"{stem}{suf}"
                        if cand.is_file():
                            return cand
            return None
    return None
