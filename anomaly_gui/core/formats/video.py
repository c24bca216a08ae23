"""Video files (mp4, avi, mov, mkv, ...): one `DatasetItem(kind="video")` per file.

`meta` holds `frames`, `fps`, `width`, `height` (and `duration` in seconds) read from the container
with OpenCV, without decoding the frames (only a container without a frame count is walked once). The root may be one file or a folder (searched
recursively); a parent folder called train/val/test sets the split, another parent folder the label
(`normal`/`good`/`ok` = normal). A file OpenCV cannot open is reported and skipped.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.formats.base import DatasetItem, ImportResult, ProgressFn, register_format
from anomaly_gui.core.formats.common import SPLIT_NAMES, has_images, is_normal_label, natural_key, split_from_parts, tick

_MAX_COUNT = 1_000_000
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".wmv", ".webm", ".mts", ".ts"})


def is_video_file(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES and not path.name.startswith(".")


def probe_video(path: str | Path) -> dict[str, Any]:
    """{frames, fps, width, height, duration} of a video from its header; DataError when unreadable."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    if path.stat().st_size == 0:
        raise DataError(path, "empty file")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise DataError(path, "cannot open video (unknown codec or damaged file)")
        frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
        h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        counted = False
        if frames <= 0:  # some containers (webm, raw streams) carry no count: walk the stream once
            while frames < _MAX_COUNT and cap.grab():
                frames += 1
            counted = True
    finally:
        cap.release()
    if w <= 0 or h <= 0:
        raise DataError(path, "video has no readable frame size")
    if frames <= 0:
        raise DataError(path, "video reports no frames")
    fps = fps if 0 < fps < 1000 else 25.0
    meta: dict[str, Any] = {"frames": frames, "fps": round(fps, 3), "width": w, "height": h, "duration": round(frames / fps, 3)}
    if counted:
        meta["frames_counted"] = True
    return meta


def _videos(root: Path) -> list[Path]:
    if root.is_file():
        return [root] if is_video_file(root) else []
    out = [p for p in root.rglob("*") if p.is_file() and is_video_file(p)]
    return sorted(out, key=lambda p: natural_key(str(p.relative_to(root))))


@register_format
class VideoReader:
    name = "video"
    title = "Video files"
    priority = 65

    def detect(self, root: Path) -> bool:
        if root.is_file():
            return is_video_file(root)
        if not root.is_dir() or has_images(root, 1):
            return False
        for n, p in enumerate(root.rglob("*")):
            if p.is_file() and is_video_file(p):
                return True
            if n > 5000:
                break
        return False

    def read(self, root: Path, progress: ProgressFn | None = None) -> ImportResult:
        root = Path(root)
        base = root.parent if root.is_file() else root
        result = ImportResult(format=self.name, root=base)
        files = _videos(root)
        if not files and root.is_file():
            raise DataError(root, "not a video file")
        labels: set[str] = set()
        for k, f in enumerate(files, 1):
            tick(progress, k, len(files), "reading video headers", every=5)
            try:
                meta = probe_video(f)
            except DataError as exc:
                result.problems.append(exc)
                continue
            parts = f.relative_to(base).parts[:-1]
            label_parts = [p for p in parts if p.lower() not in SPLIT_NAMES]
            label = label_parts[-1] if label_parts else ""
            if label:
                labels.add(label)
            result.items.append(DatasetItem(path=str(f), split=split_from_parts(parts), label=label,
                                            is_anomalous=False if is_normal_label(label) else None, kind="video",
                                            group=f.stem, meta=meta, width=meta["width"], height=meta["height"]))
        result.classes = sorted(labels)
        return result
