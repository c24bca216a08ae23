"""Shared records for imported datasets and the registry of format readers.

A reader turns a folder (or file) into `DatasetItem`s; problems with single files are collected in
`ImportResult.problems` so that one bad file never stops an import.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from anomaly_gui.core.errors import DataError

#: Annotation kinds. Geometry (pixel coordinates of the item's image, origin top-left):
#: box {"x1","y1","x2","y2"}; polygon {"points": [[x, y], ...]}; point {"x","y"};
#: mask {"path": png} or {"rle": ...}.
ANNOTATION_KINDS = ("box", "polygon", "point", "mask")


@dataclass
class Annotation:
    kind: str
    label: str
    geometry: dict[str, Any]
    score: float | None = None
    source: str = "import"  # import | user | model
    status: str = ""  # "" | accepted | rejected (review of model output)
    id: int | None = None  # set once stored in a project

    def box(self) -> tuple[float, float, float, float]:
        """(x1, y1, x2, y2) of the annotation, whatever its kind."""
        g = self.geometry
        if self.kind == "box":
            return (float(g["x1"]), float(g["y1"]), float(g["x2"]), float(g["y2"]))
        if self.kind == "polygon":
            xs = [p[0] for p in g["points"]]
            ys = [p[1] for p in g["points"]]
            return (min(xs), min(ys), max(xs), max(ys))
        if self.kind == "point":
            return (float(g["x"]), float(g["y"]), float(g["x"]), float(g["y"]))
        raise ValueError(f"no box for a {self.kind} annotation")


@dataclass
class DatasetItem:
    """One image, one frame of a clip, or one video file."""

    path: str
    split: str = ""  # train | val | test | ""
    label: str = ""  # category: good / defect type / species / clip class
    is_anomalous: bool | None = None  # ground truth when known
    kind: str = "image"  # image | frame | video
    group: str = ""  # clip or sequence the item belongs to
    frame_index: int | None = None  # 0-based index inside `group` (frames) or the video
    mask_path: str | None = None  # ground-truth pixel mask
    annotations: list[Annotation] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    width: int | None = None
    height: int | None = None
    id: int | None = None  # set once stored in a project

    @property
    def name(self) -> str:
        p = Path(self.path)
        if self.kind == "video" and self.frame_index is not None:
            return f"{p.stem}#{self.frame_index}"
        return p.name


@dataclass
class ImportResult:
    format: str
    root: Path
    items: list[DatasetItem] = field(default_factory=list)
    problems: list[DataError] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        splits: dict[str, int] = {}
        for it in self.items:
            splits[it.split or "-"] = splits.get(it.split or "-", 0) + 1
        parts = ", ".join(f"{k}: {v}" for k, v in sorted(splits.items()))
        return f"{self.format}: {len(self.items)} items ({parts}); {len(self.problems)} problem(s)"


ProgressFn = Callable[[int, int, str], None]


class FormatReader(Protocol):
    name: str
    priority: int  # higher is tried first when detecting

    def detect(self, root: Path) -> bool: ...

    def read(self, root: Path, progress: ProgressFn | None = None) -> ImportResult: ...


_READERS: dict[str, FormatReader] = {}
_BUILTIN_MODULES = ("mvtec", "voc", "yolo", "coco", "camtrap", "video", "frames", "folder", "labelme")


def register_format(reader_cls: type) -> type:
    """Class decorator: register a reader (instantiated once) under its `name`."""
    reader = reader_cls()
    _READERS[reader.name] = reader
    return reader_cls


def _load_builtin() -> None:
    for mod in _BUILTIN_MODULES:
        try:
            importlib.import_module(f"anomaly_gui.core.formats.{mod}")
        except ModuleNotFoundError as exc:
            if exc.name != f"anomaly_gui.core.formats.{mod}":
                raise


def list_formats() -> list[FormatReader]:
    _load_builtin()
    return sorted(_READERS.values(), key=lambda r: -r.priority)


def get_format(name: str) -> FormatReader:
    _load_builtin()
    if name not in _READERS:
        raise KeyError(f"unknown format {name!r}; known: {', '.join(sorted(_READERS))}")
    return _READERS[name]


def detect_format(root: str | Path) -> FormatReader:
    """The reader whose layout matches `root` (highest priority first)."""
    root = Path(root)
    if not root.exists():
        raise DataError(root, "path not found")
    for reader in list_formats():
        try:
            if reader.detect(root):
                return reader
        except OSError:
            continue
    raise DataError(root, "no known dataset layout (MVTec AD, VOC, YOLO, COCO, camera traps, video, frames, image folder)")


def import_dataset(root: str | Path, fmt: str | None = None, progress: ProgressFn | None = None) -> ImportResult:
    """Read a dataset folder/file with the named or detected format."""
    reader = get_format(fmt) if fmt else detect_format(root)
    try:
        return reader.read(Path(root), progress)
    except OSError as exc:  # an unreadable folder (permissions, a vanished network drive) names the path
        raise DataError(exc.filename or root, f"cannot read ({exc.strerror or exc})") from exc
