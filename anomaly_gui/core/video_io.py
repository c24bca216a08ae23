"""Streaming frame sources: video files through OpenCV (never loaded whole) and frame folders (UCSD layout).

A `FrameSource` gives random access by frame index and a cheap sequential iterator. A damaged or
truncated video keeps every frame that could be decoded; `problems` tells where decoding broke.
`clips_from_items` turns frame items (grouped by `group`, ordered by `frame_index`) or video items into
`Clip`s, the unit every video engine, the evaluator and the player work on.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.formats.base import DatasetItem
from anomaly_gui.core.imageio import is_image_file, read_image, to_gray8, to_rgb8

if TYPE_CHECKING:
    import cv2

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".wmv", ".webm"})
DEFAULT_FOLDER_FPS = 10.0  # UCSD Ped1/Ped2 were recorded at about 10 frames per second


def is_video_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


class FrameSource:
    """Random and sequential access to the frames of one clip. Frames come back as HxWx3 uint8 RGB."""

    path: Path
    fps: float = DEFAULT_FOLDER_FPS

    def __init__(self) -> None:
        self.problems: list[DataError] = []

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the frames."""
        raise NotImplementedError

    def read(self, index: int) -> np.ndarray:
        raise NotImplementedError

    def iter_frames(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        stop = len(self) if stop is None else min(stop, len(self))
        for i in range(max(0, start), stop):
            yield i, self.read(i)

    def read_gray(self, index: int) -> np.ndarray:
        return to_gray8(self.read(index))

    def close(self) -> None:
        """Release file handles (sources reopen on the next read)."""


class FrameFolderSource(FrameSource):
    """A clip stored as one image per frame (UCSD `Test/Test001/001.tif`)."""

    def __init__(self, paths: Sequence[str | Path], fps: float = DEFAULT_FOLDER_FPS, name: str = ""):
        super().__init__()
        if not paths:
            raise DataError(name or "<clip>", "clip has no frames")
        self.paths = [Path(p) for p in paths]
        self.path = self.paths[0].parent
        self.fps = fps
        self._size: tuple[int, int] | None = None

    @classmethod
    def from_folder(cls, folder: str | Path, fps: float = DEFAULT_FOLDER_FPS) -> FrameFolderSource:
        folder = Path(folder)
        if not folder.is_dir():
            raise DataError(folder, "frame folder not found")
        paths = sorted(p for p in folder.iterdir() if is_image_file(p))
        if not paths:
            raise DataError(folder, "no image frames in this folder")
        return cls(paths, fps=fps, name=str(folder))

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def size(self) -> tuple[int, int]:
        if self._size is None:
            h, w = self.read(0).shape[:2]
            self._size = (w, h)
        return self._size

    def read(self, index: int) -> np.ndarray:
        if not 0 <= index < len(self.paths):
            raise IndexError(f"frame {index} outside 0..{len(self.paths) - 1}")
        return to_rgb8(read_image(self.paths[index]))


class VideoFileSource(FrameSource):
    """A video file read through OpenCV, one frame at a time.

    Sequential reads reuse the open decoder; a jump backwards or far ahead seeks. When the decoder stops
    before the frame count in the header (a truncated or damaged file), the clip is shortened to the
    frames read and a `DataError` naming the frame where it broke is appended to `problems`.
    """

    def __init__(self, path: str | Path):
        super().__init__()
        import cv2

        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(self.path, "video file not found")
        if self.path.stat().st_size == 0:
            raise DataError(self.path, "empty video file")
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise DataError(self.path, "cannot open video (unknown container or codec, or a damaged header)")
        self._cap: cv2.VideoCapture | None = cap
        self._lock = threading.Lock()
        self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0) or 25.0
        self._declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self._w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
        self._h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        self._next = 0  # index of the frame the decoder returns next
        self._n = self._declared if self._declared > 0 else -1  # -1: unknown until read to the end
        ok, first = cap.read()
        if not ok or first is None:
            cap.release()
            raise DataError(self.path, "no frame could be decoded (damaged or truncated at frame 0)")
        self._next = 1
        self._last: tuple[int, np.ndarray] = (0, self._to_rgb(first))
        self._h, self._w = first.shape[:2]

    @staticmethod
    def _to_rgb(bgr: np.ndarray) -> np.ndarray:
        import cv2

        if bgr.ndim == 2:
            return np.repeat(bgr[:, :, None], 3, axis=2)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def __len__(self) -> int:
        if self._n < 0:
            self._count_to_end()
        return self._n

    @property
    def declared_frames(self) -> int:
        """The frame count written in the file's header (0 when the container gives none)."""
        return self._declared

    @property
    def size(self) -> tuple[int, int]:
        return (self._w, self._h)

    def _open(self) -> cv2.VideoCapture:
        import cv2

        if self._cap is None:
            self._cap = cv2.VideoCapture(str(self.path))
            self._next = 0
        return self._cap

    def _count_to_end(self) -> None:
        for _ in self.iter_frames(0):
            pass

    def _broke_at(self, index: int) -> None:
        """The decoder failed at `index`: keep frames 0..index-1 and say where it broke."""
        if self._n < 0 or index < self._n:
            if self._declared > 0 and index < self._declared:
                reason = f"truncated or damaged: decoding stopped at frame {index} of {self._declared}; kept {index} frames"
                self.problems.append(DataError(self.path, reason))
            self._n = index

    def read(self, index: int) -> np.ndarray:
        import cv2

        with self._lock:
            if index < 0 or (self._n >= 0 and index >= self._n):
                raise IndexError(f"{self.path.name}: frame {index} outside 0..{len(self) - 1}")
            if self._last[0] == index:
                return self._last[1]
            cap = self._open()
            if index != self._next:
                if index < self._next or index - self._next > 30:
                    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
                    self._next = index
                while self._next < index:  # short forward gaps: decoding is cheaper than seeking
                    if not cap.grab():
                        self._broke_at(self._next)
                        raise IndexError(f"{self.path.name}: frame {index} is past where decoding broke")
                    self._next += 1
            ok, bgr = cap.read()
            if not ok or bgr is None:
                self._broke_at(index)
                raise IndexError(f"{self.path.name}: frame {index} could not be decoded")
            self._next = index + 1
            self._last = (index, self._to_rgb(bgr))
            return self._last[1]

    def iter_frames(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Sequential frames; stops quietly where a damaged file ends (see `problems`)."""
        i = max(0, start)
        while stop is None or i < stop:
            if self._n >= 0 and i >= self._n:
                return
            try:
                frame = self.read(i)
            except IndexError:
                if self._n < 0:
                    self._n = i
                return
            yield i, frame
            i += 1

    def close(self) -> None:
        with self._lock:
            if self._cap is not None:
                self._cap.release()
                self._cap = None


def open_source(path: str | Path, fps: float = DEFAULT_FOLDER_FPS) -> FrameSource:
    """A video file or a folder of frames."""
    path = Path(path)
    if path.is_dir():
        return FrameFolderSource.from_folder(path, fps=fps)
    if not path.exists():
        raise DataError(path, "not found")
    if not is_video_file(path):
        raise DataError(path, f"not a video file ({', '.join(sorted(VIDEO_SUFFIXES))})")
    return VideoFileSource(path)


# -- clips: the unit engines, evaluation and the player work on ------------------------------------------
@dataclass
class Clip:
    """Frames of one clip with, where known, per-frame labels, masks and the items they came from."""

    name: str
    source: FrameSource
    items: list[DatasetItem] = field(default_factory=list)  # one per frame (frame items) or one (video item)
    labels: np.ndarray | None = None  # (T,) bool ground truth per frame (False where unknown)
    mask_paths: list[str | None] = field(default_factory=list)
    known: np.ndarray | None = None  # (T,) bool: frames whose label is known (None: no label at all)

    def __len__(self) -> int:
        return len(self.source)

    @property
    def per_frame_items(self) -> bool:
        return len(self.items) > 1 or (len(self.items) == 1 and self.items[0].kind == "frame")


def clips_from_items(items: Sequence[DatasetItem]) -> list[Clip]:
    """Group frame items by `group` (ordered by `frame_index`); each video item is a clip of its own.

    Order of clips follows their first appearance in `items`.
    """
    clips: list[Clip] = []
    groups: dict[str, list[DatasetItem]] = {}
    order: list[tuple[str, str]] = []
    for it in items:
        if it.kind == "video" or (it.kind != "frame" and is_video_file(it.path)):
            key = f"\0video{len(order)}"
            order.append(("video", key))
            groups[key] = [it]
        else:
            key = it.group or str(Path(it.path).parent)
            if key not in groups:
                groups[key] = []
                order.append(("frames", key))
            groups[key].append(it)
    for kind, key in order:
        members = groups[key]
        if kind == "video":
            it = members[0]
            src = VideoFileSource(it.path)
            clips.append(Clip(name=it.group or Path(it.path).stem, source=src, items=[it]))
            continue
        members = sorted(members, key=lambda m: (m.frame_index if m.frame_index is not None else 0, m.path))
        src = FrameFolderSource([m.path for m in members], name=key)
        labels = known = None
        if any(m.is_anomalous is not None for m in members):  # a partly labelled clip keeps its labelled frames
            known = np.array([m.is_anomalous is not None for m in members])
            labels = np.array([bool(m.is_anomalous) for m in members])
        clips.append(Clip(name=Path(key).name, source=src, items=members, labels=labels,
                          mask_paths=[m.mask_path for m in members], known=known))
    return clips


# -- UCSD layout --------------------------------------------------------------------------------------
def read_frame_ranges(path: str | Path) -> dict[str, list[tuple[int, int]]]:
    """`frame_gt.json`: clip name -> 1-based inclusive anomalous frame ranges."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DataError(path, "frame range file not found") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(path, f"not valid JSON ({exc})") from exc
    table = data.get("anomalous_frames", data) if isinstance(data, dict) else None
    if not isinstance(table, dict):
        raise DataError(path, "expected an object mapping clip names to [[first, last], ...] ranges")
    out: dict[str, list[tuple[int, int]]] = {}
    for clip, ranges in table.items():
        if clip == "source":
            continue
        try:
            pairs = [(int(a), int(b)) for a, b in ranges]
        except (TypeError, ValueError) as exc:
            raise DataError(path, f"clip {clip}: ranges must be [[first, last], ...] ({exc})") from exc
        for a, b in pairs:
            if a < 1 or b < a:
                raise DataError(path, f"clip {clip}: bad range [{a}, {b}] (1-based, inclusive, first <= last)")
        out[str(clip)] = pairs
    return out


def frame_labels(ranges: Sequence[tuple[int, int]], n_frames: int) -> np.ndarray:
    """(n_frames,) bool from 1-based inclusive ranges."""
    y = np.zeros(n_frames, dtype=bool)
    for a, b in ranges:
        y[a - 1 : min(b, n_frames)] = True
    return y


def scan_ucsd(root: str | Path, split: str, problems: list[str] | None = None) -> list[DatasetItem]:
    """Frame items of a UCSD-layout folder (`Train/Train001/001.tif`, `Test/Test001/...`,
    masks in `Test001_gt/` beside or under `Test/`, labels from `Test/frame_gt.json`, else from the
    dataset's own `.m` file (entries matched to the clips in order; a count mismatch is added to `problems`))."""
    root = Path(root)
    sub = root / split.capitalize()
    if not sub.is_dir():
        raise DataError(root, f"no {split.capitalize()}/ folder (UCSD layout expected)")
    clip_dirs = sorted(p for p in sub.iterdir() if p.is_dir() and not p.name.endswith("_gt"))
    ranges: dict[str, list[tuple[int, int]]] = {}
    gt_file = sub / "frame_gt.json"
    m_files = sorted(sub.glob("*.m"))
    if gt_file.is_file():
        ranges = read_frame_ranges(gt_file)
    elif m_files:
        from anomaly_gui.core.formats.frames import parse_ranges_m

        per_clip = parse_ranges_m(m_files[0])
        if len(per_clip) != len(clip_dirs) and problems is not None:
            problems.append(str(DataError(m_files[0], f"{len(per_clip)} clip entries for {len(clip_dirs)} test clips; "
                                                      "matched in order, so labels may be shifted by a clip")))
        ranges = {c.name: r for c, r in zip(clip_dirs, per_clip)}
    items: list[DatasetItem] = []
    for clip_dir in clip_dirs:
        frames = sorted(p for p in clip_dir.iterdir() if is_image_file(p))
        if not frames:
            continue
        labels = frame_labels(ranges[clip_dir.name], len(frames)) if clip_dir.name in ranges else None
        gt_dir = next((d for d in (sub / f"{clip_dir.name}_gt", root / f"{clip_dir.name}_gt") if d.is_dir()), None)
        for i, f in enumerate(frames):
            mask = None
            if gt_dir is not None:
                mask = next((str(m) for m in (gt_dir / f"{f.stem}.png", gt_dir / f"{f.stem}.bmp", gt_dir / f"{f.stem}.tif") if m.is_file()), None)
            items.append(DatasetItem(
                path=str(f), split=split.lower(), kind="frame", group=clip_dir.name, frame_index=i,
                is_anomalous=None if labels is None else bool(labels[i]), mask_path=mask,
                label="" if labels is None else ("anomalous" if labels[i] else "normal"),
            ))
    if not items:
        raise DataError(sub, "no clip folders with frames")
    return items


def read_mask(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """A ground-truth mask as bool (HxW), optionally resized (nearest) to (width, height)."""
    import cv2

    m = to_gray8(read_image(path)) > 127
    if size is not None and (m.shape[1], m.shape[0]) != size:
        m = cv2.resize(m.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    return m
