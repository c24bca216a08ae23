"""Thumbnails made lazily in a small thread pool and cached on disk in the project's cache folder.

`ThumbnailLoader.request(key, path, frame_index, kind)` queues one thumbnail; `ready(key, QImage|None)`
arrives on the GUI thread (None: the file could not be read; `errors[key]` says why). The newest
requests are served first (what the user scrolled to last), duplicates are ignored, and
`cancel_pending()` drops the queue when the view scrolls away, so a 10,000-item grid only decodes
what is visible. Disk cache: `<project cache>/thumbs/<2 hex>/<sha1>.jpg`, keyed by path, frame, file
size, mtime and thumbnail size, so an edited file gets a fresh thumbnail. Only QImage (thread-safe)
is made in the workers; QPixmaps are made by the model on the GUI thread.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Hashable

import numpy as np
from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal
from PySide6.QtGui import QImage

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.imageio import read_image, to_rgb8
from anomaly_gui.core.video_io import VideoFileSource, is_video_file

log = logging.getLogger(__name__)
THUMB_SIZE = 112
_FAST_MODES = {"1", "L", "P", "RGB", "RGBA", "LA", "CMYK", "YCbCr"}


def thumb_cache_path(cache_dir: Path, path: str | Path, frame_index: int | None, size: int) -> Path:
    """Disk cache file of one thumbnail (depends on the file's size and mtime)."""
    st = os.stat(path)
    key = f"{os.fspath(path)}|{frame_index}|{st.st_size}|{st.st_mtime_ns}|{size}"
    digest = hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest()
    return Path(cache_dir) / "thumbs" / digest[:2] / f"{digest}.jpg"


def make_thumbnail(path: str | Path, frame_index: int | None = None, kind: str = "image",
                   size: int = THUMB_SIZE) -> np.ndarray:
    """HxWx3 uint8 RGB no larger than size x size. Raises DataError naming the file when unreadable."""
    import cv2

    path = Path(path)
    if kind == "video" or is_video_file(path):
        src = VideoFileSource(path)
        try:
            arr = src.read(frame_index or 0)
        except IndexError as exc:
            raise DataError(path, str(exc)) from exc
        finally:
            src.close()
    else:
        arr = _pillow_thumbnail(path, size)
        if arr is None:
            arr = to_rgb8(read_image(path))
    h, w = arr.shape[:2]
    scale = min(size / w, size / h, 1.0)
    if scale < 1.0:
        arr = cv2.resize(arr, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(arr)


def _pillow_thumbnail(path: Path, size: int) -> np.ndarray | None:
    """Fast path for 8-bit images (JPEG decoded at reduced size); None for other depths."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        with Image.open(path) as im:
            if im.mode not in _FAST_MODES:
                return None
            if im.format == "JPEG":
                im.draft("RGB", (size, size))
            im.load()
            im = ImageOps.exif_transpose(im)
            im = im.convert("RGB")
            im.thumbnail((size, size))
            return np.asarray(im)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        raise DataError(path, f"cannot decode image ({type(exc).__name__}: {exc})") from exc


def array_to_qimage(arr: np.ndarray) -> QImage:
    """HxWx3 uint8 RGB to a QImage that owns its pixels."""
    arr = np.ascontiguousarray(arr)
    h, w = arr.shape[:2]
    return QImage(arr.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def load_thumbnail(path: str | Path, frame_index: int | None, kind: str, size: int,
                   cache_dir: Path | None) -> QImage:
    """A thumbnail from the disk cache, or made and written there."""
    cache_file = None
    if cache_dir is not None:
        try:
            cache_file = thumb_cache_path(cache_dir, path, frame_index, size)
        except OSError as exc:
            raise DataError(path, f"cannot read file ({exc.strerror or exc})") from exc
        if cache_file.is_file():
            img = QImage(str(cache_file))
            if not img.isNull():
                return img
    qimg = array_to_qimage(make_thumbnail(path, frame_index, kind, size))
    if cache_file is not None:
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_name(f".{cache_file.stem}.{threading.get_ident()}.jpg")
            if qimg.save(str(tmp), "JPG", 85):
                os.replace(tmp, cache_file)
        except OSError as exc:  # a read-only cache only costs speed
            log.debug("thumbnail cache not written: %s", exc)
    return qimg


class _Drain(QRunnable):
    def __init__(self, loader: "ThumbnailLoader"):
        super().__init__()
        self.loader = loader

    def run(self) -> None:
        self.loader._drain()


class ThumbnailLoader(QObject):
    """Lazy thumbnails: newest request first, served by `threads` workers."""

    ready = Signal(object, object)  # key, QImage | None

    def __init__(self, cache_dir: Path | None, size: int = THUMB_SIZE, threads: int = 2,
                 parent: QObject | None = None):
        super().__init__(parent)
        self.cache_dir = cache_dir
        self.size = size
        self.errors: dict[Hashable, str] = {}
        self._lock = threading.Lock()
        self._stack: list[tuple[Hashable, str, int | None, str]] = []
        self._pending: set[Hashable] = set()
        self._workers = 0
        self._generation = 0
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(max(1, threads))
        self._threads = max(1, threads)
        self._closed = False

    def request(self, key: Hashable, path: str, frame_index: int | None = None, kind: str = "image") -> None:
        with self._lock:
            if self._closed or key in self._pending:
                return
            self._pending.add(key)
            self._stack.append((key, path, frame_index, kind))
            start = self._workers < self._threads
            if start:
                self._workers += 1
        if start:
            self._pool.start(_Drain(self))

    def is_pending(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._pending

    def pending_count(self) -> int:
        with self._lock:
            return len(self._stack)

    def cancel_pending(self) -> None:
        """Forget queued requests (those being made still finish)."""
        with self._lock:
            for key, *_ in self._stack:
                self._pending.discard(key)
            self._stack.clear()
            self._generation += 1

    def shutdown(self, wait_ms: int = 5000) -> None:
        with self._lock:
            self._closed = True
        self.cancel_pending()
        self._pool.waitForDone(wait_ms)

    def wait(self, wait_ms: int = 5000) -> bool:
        return self._pool.waitForDone(wait_ms)

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._stack or self._closed:
                    self._workers -= 1
                    return
                key, path, frame_index, kind = self._stack.pop()
            img: QImage | None
            try:
                img = load_thumbnail(path, frame_index, kind, self.size, self.cache_dir)
            except DataError as exc:
                self.errors[key] = str(exc)
                img = None
            with self._lock:
                self._pending.discard(key)
                closed = self._closed
            if not closed:
                self.ready.emit(key, img)
