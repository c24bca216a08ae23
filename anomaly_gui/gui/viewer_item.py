"""Shows the current item in the viewer: its pixels, imported annotations and ground-truth mask.

`ItemPresenter` listens to `state.currentItemChanged`. On a change it first clears every overlay of the
viewer, then shows the new image with two layers it owns: "annotations" (boxes / polygons imported with
the dataset, coloured by label class) and "gt" (the ground-truth mask outline). It is connected before any
panel, so panels that draw their own overlays (heatmaps, detections) on the same signal draw after it.
"""
from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.formats.base import DatasetItem
from anomaly_gui.core.imageio import read_image
from anomaly_gui.core.video_io import VideoFileSource, is_video_file, read_mask
from anomaly_gui.gui.state import AppState
from anomaly_gui.gui.viewer import ImageViewer

log = logging.getLogger(__name__)
GT_COLOR = "#00e5ff"


def load_item_image(item: DatasetItem) -> np.ndarray:
    """The pixels of an item: an image file, or one frame of a video (the first when none is set)."""
    if item.kind == "video" or is_video_file(item.path):
        src = VideoFileSource(item.path)
        try:
            return src.read(item.frame_index or 0)
        except IndexError as exc:
            raise DataError(item.path, str(exc)) from exc
        finally:
            src.close()
    return read_image(item.path)


def item_caption(item: DatasetItem, shape: tuple[int, ...] | None) -> str:
    where = "/".join(p for p in (item.split, item.label) if p)
    size = f"{shape[1]}×{shape[0]}" if shape else ""
    return "  ·  ".join(p for p in (item.name, where, size) if p)


class ImagePrefetcher:
    """Decodes the items next to the current one in a background thread, so A / D show them at once.

    Keeps the last `capacity` decoded images (keyed by item id and path); a request for an image being
    decoded waits for that decode instead of starting a second one.
    """

    def __init__(self, capacity: int = 6):
        self.capacity = capacity
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="viewer-prefetch")
        self._lock = threading.Lock()
        self._images: OrderedDict[tuple[int, str], np.ndarray] = OrderedDict()
        self._futures: dict[tuple[int, str], Future[np.ndarray]] = {}
        self.hits = 0
        self._closed = False

    def cached(self, item_id: int) -> bool:
        with self._lock:
            return any(k[0] == item_id for k in self._images)

    def get(self, item: DatasetItem) -> np.ndarray:
        """The item's pixels: cached, being prefetched (waits), or decoded now."""
        key = (int(item.id or -1), item.path)
        with self._lock:
            img = self._images.get(key)
            fut = self._futures.get(key)
            if img is not None:
                self._images.move_to_end(key)
                self.hits += 1
                return img
        if fut is not None:
            img = fut.result()  # raises the decoder's DataError like a direct read
            self.hits += 1
        else:
            img = load_item_image(item)
        self._store(key, img)
        return img

    def prefetch(self, items: list[DatasetItem]) -> None:
        if self._closed:
            return
        for item in items:
            key = (int(item.id or -1), item.path)
            with self._lock:
                if key in self._images or key in self._futures:
                    continue
                fut = self._pool.submit(load_item_image, item)
                self._futures[key] = fut
            fut.add_done_callback(lambda f, key=key: self._done(key, f))

    def _done(self, key: tuple[int, str], fut: Future[np.ndarray]) -> None:
        with self._lock:
            self._futures.pop(key, None)
        if fut.exception() is None:
            self._store(key, fut.result())

    def _store(self, key: tuple[int, str], img: np.ndarray) -> None:
        with self._lock:
            self._images[key] = img
            self._images.move_to_end(key)
            while len(self._images) > self.capacity:
                self._images.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._images.clear()

    def shutdown(self) -> None:
        self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=True)


class ItemPresenter:
    """Keeps the viewer on `state.current_item`.

    `neighbors` (set by the main window to the browser's order) gives the ids to prefetch around an item.
    """

    def __init__(self, state: AppState, viewer: ImageViewer,
                 neighbors: Callable[[int], list[int]] | None = None):
        self.state = state
        self.viewer = viewer
        self.neighbors = neighbors
        self.prefetcher = ImagePrefetcher()
        self.item: DatasetItem | None = None
        self.error: str = ""
        state.currentItemChanged.connect(self.show_item)
        state.annotationsChanged.connect(self._on_annotations_changed)
        state.projectChanged.connect(self._on_project)

    def show_item(self, item_id: int | None) -> None:
        project = self.state.project
        self.viewer.clear_overlays()
        self.item, self.error = None, ""
        if item_id is None or project is None:
            self.viewer.clear_image()
            return
        try:
            item = project.item(item_id)
        except KeyError:
            self.viewer.clear_image()
            return
        self.item = item
        try:
            img = self.prefetcher.get(item)
        except DataError as exc:
            self.error = str(exc)
            log.warning("%s", exc)
            self.viewer.clear_image()
            self.viewer.set_info(f"{item.name}: cannot show this item ({exc.reason})")
            self.state.message.emit(str(exc))
            return
        self.viewer.set_image(img)
        self.viewer.set_info(item_caption(item, img.shape))
        self.draw_annotations()
        self.draw_ground_truth()
        self._prefetch_around(item_id)

    def _prefetch_around(self, item_id: int) -> None:
        project = self.state.project
        if self.neighbors is None or project is None:
            return
        ids = self.neighbors(item_id)
        if ids:
            by_id = {it.id: it for it in project.items(ids=ids)}
            self.prefetcher.prefetch([by_id[i] for i in ids if i in by_id])

    def _on_project(self, _project: object) -> None:
        self.prefetcher.clear()
        self.show_item(None)

    def draw_annotations(self) -> None:
        project, item = self.state.project, self.item
        if project is None or item is None or item.id is None:
            return
        anns = [a for a in project.annotations(item.id) if a.source == "import"]
        self.viewer.set_boxes(anns, project.label_classes(), layer="annotations")

    def draw_ground_truth(self) -> None:
        item = self.item
        if item is None or not item.mask_path:
            self.viewer.clear_layer("gt")
            return
        if not Path(item.mask_path).is_file():
            self.state.message.emit(f"{item.mask_path}: ground-truth mask not found")
            return
        try:
            mask = read_mask(item.mask_path)
        except DataError as exc:
            self.state.message.emit(str(exc))
            return
        self.viewer.set_mask_contours(mask, GT_COLOR, layer="gt")

    def _on_annotations_changed(self, item_id: int) -> None:
        if self.item is not None and item_id == self.item.id:
            self.draw_annotations()
