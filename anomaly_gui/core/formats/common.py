"""Helpers shared by the format readers and writers (no Qt, no registry entries here).

Conventions for every reader:
- a problem with one file becomes a `DataError` in `ImportResult.problems`; the import goes on;
- boxes are pixel coordinates of the (EXIF-rotated) image, origin top-left, `x2 > x1`, `y2 > y1`;
- labels `good`, `normal` and `ok` (any case) mean normal.

Every writer writes files through `imageio.atomic_path`, so an interrupted export never leaves a
half-written file in place of a good one. Writers copy images; `link_images=True` hard-links them.
"""
from __future__ import annotations

import os
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.formats.base import Annotation, DatasetItem, ProgressFn
from anomaly_gui.core.imageio import IMAGE_SUFFIXES, atomic_path, image_size

NORMAL_LABELS = frozenset({"good", "normal", "ok"})
SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "test": "test", "testing": "test"}
_NUM_RE = re.compile(r"(\d+)")


def is_normal_label(label: str) -> bool:
    return label.strip().lower() in NORMAL_LABELS


def natural_key(text: str) -> list[object]:
    """Sort key that puts `img2` before `img10`."""
    return [int(t) if t.isdigit() else t.lower() for t in _NUM_RE.split(text)]


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def list_images(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files of `folder` in natural order (hidden files and folders skipped)."""
    if not folder.is_dir():
        return []
    if not recursive:
        files = [p for p in folder.iterdir() if p.is_file() and is_image(p)]
        return sorted(files, key=lambda p: natural_key(p.name))
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted((d for d in dirnames if not d.startswith(".")), key=natural_key)
        for name in sorted(filenames, key=natural_key):
            p = Path(dirpath) / name
            if is_image(p):
                out.append(p)
    return out


def input_images(path: str | Path) -> list[Path]:
    """Images to score: `path` itself when it is a file, else every image below the folder (natural order)
    except ground-truth masks and written overlays. DataError naming `path` when there are none."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(path, "folder not found")
    out = [p for p in list_images(path, recursive=True)
           if "ground_truth" not in p.parts and not p.stem.endswith(("_mask", "_overlay"))]
    if not out:
        raise DataError(path, "no images found")
    return out


def has_images(folder: Path, limit: int = 1) -> bool:
    """True when `folder` directly holds at least `limit` image files."""
    if not folder.is_dir():
        return False
    n = 0
    for p in folder.iterdir():
        if p.is_file() and is_image(p):
            n += 1
            if n >= limit:
                return True
    return False


def subdirs(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: natural_key(p.name))


def find_child(folder: Path, *names: str) -> Path | None:
    """The child of `folder` whose name equals one of `names`, case-insensitively."""
    if not folder.is_dir():
        return None
    wanted = [n.lower() for n in names]
    children = {p.name.lower(): p for p in folder.iterdir()}
    for n in wanted:
        if n in children:
            return children[n]
    return None


def probe_size(path: Path, problems: list[DataError]) -> tuple[int, int] | None:
    """(width, height) from the header, or None with a problem recorded (empty, missing, not an image,
    or a PNG/JPEG cut short: its end marker is missing)."""
    try:
        size = path.stat().st_size
        if size == 0:
            problems.append(DataError(path, "empty file"))
            return None
        wh = image_size(path)
        if _cut_short(path, size):
            problems.append(DataError(path, "truncated file (the image's end marker is missing)"))
            return None
        return wh
    except DataError as exc:
        problems.append(exc)
    except OSError as exc:
        problems.append(DataError(path, f"cannot read ({exc.strerror or exc})"))
    return None


_TAIL = 1 << 16


def _cut_short(path: Path, size: int) -> bool:
    """True when a PNG lacks its IEND chunk or a JPEG its EOI marker near the end (a cheap tail read)."""
    suffix = path.suffix.lower()
    if suffix == ".png":
        marker = b"IEND"
    elif suffix in (".jpg", ".jpeg"):
        marker = b"\xff\xd9"
    else:
        return False
    with open(path, "rb") as fh:
        fh.seek(max(0, size - 16))
        if marker in fh.read():
            return False
        fh.seek(max(0, size - _TAIL))  # cameras may append a trailer after the image
        return marker not in fh.read()


def tick(progress: ProgressFn | None, done: int, total: int, msg: str, every: int = 50) -> None:
    if progress is not None and (done % every == 0 or done == total):
        progress(done, total, msg)


def clip_box(x1: float, y1: float, x2: float, y2: float, width: int | None, height: int | None) -> tuple[tuple[float, float, float, float], bool]:
    """Order and clip a box to the image; returns (box, whether it was changed by clipping)."""
    x1, x2 = min(x1, x2), max(x1, x2)
    y1, y2 = min(y1, y2), max(y1, y2)
    if width is None or height is None:
        return (x1, y1, x2, y2), False
    c = (min(max(x1, 0.0), width), min(max(y1, 0.0), height), min(max(x2, 0.0), width), min(max(y2, 0.0), height))
    return c, c != (x1, y1, x2, y2)


def box_annotation(label: str, x1: float, y1: float, x2: float, y2: float, score: float | None = None, **extra: object) -> Annotation:
    geom: dict[str, object] = {"x1": float(x1), "y1": float(y1), "x2": float(x2), "y2": float(y2)}
    geom.update(extra)
    return Annotation("box", label, geom, score=score)


def main_label(anns: Sequence[Annotation], empty: str = "empty") -> str:
    """The most frequent annotation label of an item (ties: alphabetical), `empty` when none."""
    if not anns:
        return empty
    counts = Counter(a.label for a in anns)
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


def split_from_parts(parts: Iterable[str]) -> str:
    """train/val/test when one of the path parts names a split (case-insensitive), else ''."""
    for part in parts:
        s = SPLIT_NAMES.get(part.lower())
        if s:
            return s
    return ""


def fmt_num(v: float) -> str:
    """Shortest text that reads back as the same float (integers without '.0')."""
    f = float(v)
    return str(int(f)) if f.is_integer() else repr(f)


# -- writers' helpers -------------------------------------------------------------------------
def check_writable(items: Sequence[DatasetItem], what: str) -> None:
    bad = [it.path for it in items if it.kind == "video" and it.frame_index is None]
    if bad:
        raise ValueError(f"{what} holds images only; extract frames from video {bad[0]} first")


def export_names(items: Sequence[DatasetItem]) -> list[str]:
    """A unique file name per item: its own name, or with the fewest parent folders prefixed
    (`test/cut/000.png` -> `cut_000.png`) where names collide."""
    paths = [Path(it.path) for it in items]
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(paths):
        groups.setdefault(p.name.lower(), []).append(i)
    names = [p.name for p in paths]
    for idx in groups.values():
        if len({str(paths[i]) for i in idx}) < 2:
            continue  # one file listed twice: numbered below
        for depth in range(1, 8):
            cand = ["_".join([*(q.name for q in reversed(paths[i].parents[:depth]) if q.name), paths[i].name]) for i in idx]
            if len({c.lower() for c in cand}) == len(cand):
                break
        for i, c in zip(idx, cand):
            names[i] = c
    out: list[str] = []
    used: set[str] = set()
    for name in names:  # last resort (same file twice, or a prefixed name equal to another file's)
        base, k = name, 1
        while name.lower() in used:
            name = f"{Path(base).stem}_{k}{Path(base).suffix}"
            k += 1
        used.add(name.lower())
        out.append(name)
    return out


def place_file(src: str | Path, dst: Path, link: bool = False) -> None:
    """Put a copy of `src` at `dst` atomically; same file is a no-op.

    `link=True` hard-links instead (falls back to a copy across devices): fast for temporary staging
    (training folders), but an editor that rewrites the exported file in place would change the
    original too, so exports meant for people copy.
    """
    src = Path(src)
    if not src.is_file():
        raise DataError(src, "file not found")
    if dst.exists() and dst.resolve() == src.resolve():
        return
    with atomic_path(dst) as tmp:
        if link:
            tmp.unlink()
            try:
                os.link(src, tmp)
                return
            except OSError:
                pass
        shutil.copyfile(src, tmp)


def item_size(it: DatasetItem) -> tuple[int, int]:
    """(width, height) of an item, from the record or the image header."""
    if it.width and it.height:
        return int(it.width), int(it.height)
    return image_size(it.path)


def class_list(items: Sequence[DatasetItem], classes: Sequence[str] | None) -> list[str]:
    """The given classes, or the sorted labels of all annotations."""
    if classes is not None:
        return list(classes)
    return sorted({a.label for it in items for a in it.annotations if a.kind in ("box", "polygon")})
