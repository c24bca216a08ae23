"""Frame folders in the UCSD Anomaly Detection layout (also Avenue/ShanghaiTech-like `frames/` folders).

```
Train/Train001/001.tif ...        clips of normal frames
Test/Test001/001.tif ...          test clips
Test/Test001_gt/001.bmp ...       optional pixel masks, one per frame (matched by frame number)
Test/frame_gt.json                optional {"anomalous_frames": {"Test001": [[61, 180]], ...}}
Test/UCSDped2.m                   optional, the dataset's own `TestVideoFile{end+1}.gt_frame = [61:180];`
```
Split folders are `Train`/`Test` or `training`/`testing` (any case, optionally with a `frames/` level);
a clip folder's name ends with digits. ShanghaiTech's `testing/test_frame_mask/<clip>.npy` (0/1 per
frame) also gives frame labels. Items are `kind="frame"`, `group` = clip name, `frame_index`
0-based, label `normal`/`anomalous` when known. Frame ranges are 1-based and inclusive. Without
ranges, a test frame is anomalous when its mask has any pixel set; training frames are normal.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.formats.base import DatasetItem, ImportResult, ProgressFn, register_format
from anomaly_gui.core.formats.common import SPLIT_NAMES, list_images, probe_size, subdirs, tick
from anomaly_gui.core.imageio import read_image

_SPLIT_ORDER = ("train", "val", "test")
_CLIP_RE = re.compile(r"^[A-Za-z]*[_\-]?\d+([_\-]\d+)?$")  # Train001, 01, 01_0014 (ShanghaiTech)
_M_RE = re.compile(r"gt_frame\s*=\s*\[([^\]]*)\]")
_RANGE_RE = re.compile(r"(\d+)\s*:\s*(\d+)|(\d+)")


def _is_clip(d: Path) -> bool:
    return bool(_CLIP_RE.match(d.name)) and len(list_images(d)[:2]) == 2


def _clips(split_dir: Path) -> list[Path]:
    inner = split_dir / "frames" if (split_dir / "frames").is_dir() else split_dir
    return [d for d in subdirs(inner) if _is_clip(d)]


def _layout(root: Path) -> list[tuple[str, Path]]:
    """(split, split folder) pairs of a frame-folder dataset, [] when `root` is not one."""
    if not root.is_dir():
        return []
    out = [(SPLIT_NAMES[d.name.lower()], d) for d in subdirs(root)
           if d.name.lower() in SPLIT_NAMES and _clips(d)]
    if out:
        return sorted(out, key=lambda sd: _SPLIT_ORDER.index(sd[0]))  # train before test
    if root.name.lower() in SPLIT_NAMES and _clips(root):
        return [(SPLIT_NAMES[root.name.lower()], root)]
    if _clips(root) and (_gt_file(root) is not None or any((root / f"{c.name}_gt").is_dir() for c in _clips(root))):
        return [("test", root)]
    return []


def _gt_file(folder: Path) -> Path | None:
    p = folder / "frame_gt.json"
    if p.is_file():
        return p
    ms = sorted(folder.glob("*.m"))
    return ms[0] if ms else None


def parse_ranges_m(path: Path) -> list[list[tuple[int, int]]]:
    """Frame ranges of each test clip, in order, from a UCSD `.m` ground-truth file."""
    text = path.read_text(encoding="utf-8", errors="replace")
    out = []
    for m in _M_RE.finditer(text):
        ranges = []
        for a, b, single in _RANGE_RE.findall(m.group(1)):
            ranges.append((int(a), int(b)) if a else (int(single), int(single)))
        out.append(ranges)
    return out


def _load_ranges(gt: Path, clips: list[Path], problems: list[DataError]) -> dict[str, list[tuple[int, int]]]:
    try:
        if gt.suffix.lower() == ".m":
            per_clip = parse_ranges_m(gt)
            if len(per_clip) != len(clips):
                problems.append(DataError(gt, f"{len(per_clip)} clip entries for {len(clips)} test clips; matched in order"))
            return {c.name: r for c, r in zip(clips, per_clip)}
        data = json.loads(gt.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, OSError, UnicodeDecodeError) as exc:
        problems.append(DataError(gt, f"cannot read frame ground truth ({exc})"))
        return {}
    table: Any = data.get("anomalous_frames", data) if isinstance(data, dict) else None
    if not isinstance(table, dict):
        problems.append(DataError(gt, "expected {'anomalous_frames': {clip: [[first, last], ...]}}"))
        return {}
    out: dict[str, list[tuple[int, int]]] = {}
    for clip, ranges in table.items():
        try:
            out[str(clip)] = [(int(a), int(b)) for a, b in ranges]
        except (TypeError, ValueError):
            problems.append(DataError(gt, f"clip {clip}: ranges must be [[first, last], ...] (1-based, inclusive)"))
    return out


def _npy_ranges(path: Path, n_frames: int, problems: list[DataError]) -> list[tuple[int, int]] | None:
    """1-based ranges from a ShanghaiTech-style per-frame 0/1 label array, None when there is none."""
    if not path.is_file():
        return None
    try:
        labels = np.load(path, allow_pickle=False).astype(bool).ravel()
    except (OSError, ValueError) as exc:
        problems.append(DataError(path, f"cannot read frame labels ({exc})"))
        return None
    if len(labels) != n_frames:
        problems.append(DataError(path, f"{len(labels)} frame labels for {n_frames} frames"))
    idx = np.flatnonzero(labels) + 1
    if not len(idx):
        return []
    breaks = np.flatnonzero(np.diff(idx) > 1)
    starts = np.concatenate([[idx[0]], idx[breaks + 1]])
    ends = np.concatenate([idx[breaks], [idx[-1]]])
    return [(int(a), int(b)) for a, b in zip(starts, ends)]


def _frame_no(path: Path) -> int | None:
    m = re.search(r"(\d+)$", path.stem)
    return int(m.group(1)) if m else None


@register_format
class FramesReader:
    name = "frames"
    title = "Frame folders (UCSD)"
    priority = 95

    def detect(self, root: Path) -> bool:
        return bool(_layout(root))

    def read(self, root: Path, progress: ProgressFn | None = None) -> ImportResult:
        root = Path(root)
        result = ImportResult(format=self.name, root=root)
        layout = _layout(root)
        if not layout:
            raise DataError(root, "no frame folders (Train/Train001/001.tif ...) found")
        jobs: list[tuple[str, Path, Path, list[Path]]] = []
        for split, sdir in layout:
            for clip in _clips(sdir):
                jobs.append((split, sdir, clip, list_images(clip)))
        names = [c.name for _, _, c, _ in jobs]
        total = sum(len(f) for *_, f in jobs)
        done = 0
        n_clips: dict[str, int] = {}
        for split, sdir in layout:
            clips = [c for s, d, c, _ in jobs if d == sdir]
            gt = _gt_file(sdir) or (_gt_file(root) if root != sdir else None)
            ranges = _load_ranges(gt, clips, result.problems) if gt is not None else {}
            unknown = sorted(set(ranges) - {c.name for c in clips})
            if gt is not None and unknown and split == "test":
                result.problems.append(DataError(gt, f"ranges for clips not found: {', '.join(unknown)}"))
            for _, _, clip, frames in (j for j in jobs if j[1] == sdir):
                group = clip.name if names.count(clip.name) == 1 else f"{split}/{clip.name}"
                masks = _masks(sdir / f"{clip.name}_gt", frames)
                clip_ranges = ranges.get(clip.name)
                if clip_ranges is None:
                    clip_ranges = _npy_ranges(sdir / "test_frame_mask" / f"{clip.name}.npy", len(frames), result.problems)
                for fi, frame in enumerate(frames):
                    done += 1
                    tick(progress, done, total, f"reading {group}", every=200)
                    size = probe_size(frame, result.problems)
                    if size is None:
                        continue
                    mask = masks.get(fi)
                    anomalous = _is_anomalous(fi, split, clip_ranges, mask, result.problems)
                    label = "" if anomalous is None else ("anomalous" if anomalous else "normal")
                    result.items.append(DatasetItem(path=str(frame), split=split, label=label, is_anomalous=anomalous,
                                                    kind="frame", group=group, frame_index=fi,
                                                    mask_path=None if mask is None else str(mask),
                                                    width=size[0], height=size[1]))
                n_clips[split] = n_clips.get(split, 0) + 1
        result.meta = {"clips": n_clips}
        result.classes = []
        return result


def _masks(gt_dir: Path, frames: list[Path]) -> dict[int, Path]:
    """Frame index -> mask path, matched by frame number (else by order)."""
    masks = list_images(gt_dir)
    if not masks:
        return {}
    by_no = {_frame_no(m): m for m in masks}
    out: dict[int, Path] = {}
    for fi, f in enumerate(frames):
        n = _frame_no(f)
        if n is not None and n in by_no:
            out[fi] = by_no[n]
    if not out and len(masks) == len(frames):
        out = dict(enumerate(masks))
    return out


def _is_anomalous(fi: int, split: str, ranges: list[tuple[int, int]] | None, mask: Path | None,
                  problems: list[DataError]) -> bool | None:
    if ranges is not None:
        return any(a <= fi + 1 <= b for a, b in ranges)
    if split == "train":
        return False
    if mask is not None:
        try:
            return bool(np.any(read_image(mask)))
        except DataError as exc:
            problems.append(exc)
    return None
