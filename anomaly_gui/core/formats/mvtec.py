"""MVTec AD layout: `train/good`, `test/<defect>`, `ground_truth/<defect>/NNN_mask.png`.

The root may be one category or the whole download (`bottle/`, `cable/` ...: each item's `group`
is its category). Also reads a folder holding just `train/` and `test/` class folders, and MVTec AD 2 (`validation/`,
`test_public/<class>` with `test_public/ground_truth/`, unlabelled `test_private[_mixed]/`: split test,
`is_anomalous` None). A test image without a mask has `mask_path=None` — meaning "no pixel metric for it",
never "defect-free"; `is_anomalous` always comes from the folder name (`good`/`normal`/`ok` = normal).

Writer: `write_mvtec(items, out_dir) -> Path` puts normal training images in `train/good`, test items
in `test/<label>` and their masks in `ground_truth/<label>/<stem>_mask.png` (binary 0/255 PNG).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.formats.base import DatasetItem, ImportResult, ProgressFn, register_format
from anomaly_gui.core.formats.common import (check_writable, export_names, find_child, has_images, is_normal_label,
                                             list_images, natural_key, place_file, probe_size, subdirs, tick)
from anomaly_gui.core.imageio import read_image, write_image

_SPLITS = (("train", "train"), ("validation", "val"), ("val", "val"), ("test", "test"), ("test_public", "test"))
_UNLABELLED = ("test_private", "test_private_mixed")  # MVTec AD 2: flat folders without ground truth
_GT_NAMES = ("ground_truth", "ground-truth", "gt")
_MASK_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")


def _split_dirs(root: Path) -> list[tuple[str, Path]]:
    out = []
    for name, split in _SPLITS:
        p = root / name  # lower case on purpose: UCSD's Train/Test belong to the frames reader
        if p.is_dir():
            out.append((split, p))
    return out


@register_format
class MVTecReader:
    name = "mvtec"
    title = "MVTec AD"
    priority = 80

    def detect(self, root: Path) -> bool:
        return bool(_categories(root))

    def read(self, root: Path, progress: ProgressFn | None = None) -> ImportResult:
        root = Path(root)
        result = ImportResult(format=self.name, root=root)
        cats = _categories(root)
        if not cats:
            raise DataError(root, "no MVTec AD layout (train/good, test/<defect>)")
        labels: set[str] = set()
        for cat in cats:  # the dataset's root holds one folder per category (bottle/, cable/ ...)
            labels |= self._read_category(cat, result, progress, group="" if cat == root else cat.name)
        result.classes = sorted(labels, key=lambda s: (not is_normal_label(s), natural_key(s)))
        n_masks = sum(1 for it in result.items if it.mask_path)
        n_anom = sum(1 for it in result.items if it.is_anomalous)
        result.meta = {"n_masks": n_masks, "n_anomalous": n_anom,
                       "n_anomalous_without_mask": sum(1 for it in result.items if it.is_anomalous and not it.mask_path)}
        if len(cats) > 1 or cats[0] != root:
            result.meta["categories"] = [c.name for c in cats]
        return result

    @staticmethod
    def _read_category(root: Path, result: ImportResult, progress: ProgressFn | None, group: str) -> set[str]:
        root_gt = find_child(root, *_GT_NAMES)
        gt_roots = [root_gt] if root_gt is not None else []
        jobs: list[tuple[str, str, Path, Path | None]] = []
        for split, folder in _split_dirs(root):
            gt = find_child(folder, *_GT_NAMES)  # MVTec AD 2 keeps it inside test_public/
            if gt is not None:
                gt_roots.append(gt)
            gt = gt or root_gt
            for cls_dir in subdirs(folder):
                if cls_dir.name.lower() in _GT_NAMES:
                    continue
                for img in list_images(cls_dir):
                    jobs.append((split, cls_dir.name, img, gt))
        for name in _UNLABELLED:
            for img in list_images(root / name):
                jobs.append(("test", "", img, None))
        used_masks: set[Path] = set()
        labels: set[str] = set()
        for k, (split, label, img, gt) in enumerate(jobs, 1):
            tick(progress, k, len(jobs), f"reading {group or 'MVTec AD layout'}")
            size = probe_size(img, result.problems)
            if size is None:
                continue
            normal = is_normal_label(label)
            mask = None if normal or gt is None or not label else _find_mask(gt / label, img.stem)
            if mask is not None:
                used_masks.add(mask.resolve())
            if label:
                labels.add(label)
            result.items.append(DatasetItem(path=str(img), split=split, label=label, is_anomalous=(not normal) if label else None,
                                            mask_path=None if mask is None else str(mask), width=size[0], height=size[1],
                                            group=group, meta={"subset": img.parent.name} if not label else {}))
        for gt_root in gt_roots:
            for cls_dir in subdirs(gt_root):
                for m in list_images(cls_dir):
                    if m.resolve() not in used_masks:
                        result.problems.append(DataError(m, "mask without a matching test image"))
        return labels


def _is_category(root: Path) -> bool:
    train = root / "train"
    tests = [root / n for n in ("test", "test_public") if (root / n).is_dir()]
    if not (train.is_dir() and tests):
        return False
    return any(has_images(d) for t in tests for d in subdirs(t)) and any(has_images(d) for d in subdirs(train))


def _categories(root: Path) -> list[Path]:
    """[root] for one category, its category folders for a whole MVTec AD download, else []."""
    if not root.is_dir():
        return []
    if _is_category(root):
        return [root]
    return [d for d in subdirs(root) if _is_category(d)]


def _find_mask(folder: Path, stem: str) -> Path | None:
    if not folder.is_dir():
        return None
    for name in (f"{stem}_mask", stem):
        for suf in _MASK_SUFFIXES:
            p = folder / f"{name}{suf}"
            if p.is_file():
                return p
    return None


def write_mvtec(items: Sequence[DatasetItem], out_dir: str | Path, *, link_images: bool = False) -> Path:
    """Write items in MVTec AD layout (see module doc). Images are copied.

    Train items must be normal (an anomalous training item goes to `test/`). A test item's mask
    comes from `mask_path` (any bit depth, non-zero = defect); items without one get no mask file.
    """
    out = Path(out_dir)
    check_writable(items, "MVTec AD")
    names = export_names(items)
    for it, name in zip(items, names):
        label = it.label or ("good" if not it.is_anomalous else "defect")
        split = "train" if it.split in ("train", "") and not it.is_anomalous else ("validation" if it.split == "val" else "test")
        dst = out / split / label / name
        place_file(it.path, dst, link=link_images)
        if it.mask_path and split != "train":
            mask = read_image(it.mask_path)
            binary = (mask if mask.ndim == 2 else mask.max(axis=2)) > 0
            write_image(out / "ground_truth" / label / f"{Path(name).stem}_mask.png", binary.astype(np.uint8) * 255)
    return out
