"""Shows the current item in the viewer: its pixels, imported annotations and ground-truth mask.

`ItemPresenter` listens to `state.currentItemChanged`. On a change it first clears every overlay of the
viewer, then shows the new image with two layers it owns: "annotations" (boxes / polygons imported with
the dataset, coloured by label class) and "gt" (the ground-truth mask outline). It is connected before any
panel, so panels that draw their own overlays (heatmaps, detections) on the same signal draw after it.
"""
from __future__ import annotations

import logging
from pathlib import Path

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


class ItemPresenter:
    """Keeps the viewer on `state.current_item`."""

    def __init__(self, state: AppState, viewer: ImageViewer):
        self.state = state
        self.viewer = viewer
        self.item: DatasetItem | None = None
        self.error: str = ""
        state.currentItemChanged.connect(self.show_item)
        state.annotationsChanged.connect(self._on_annotations_changed)
        state.projectChanged.connect(lambda _p: self.show_item(None))

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
            img = load_item_image(item)
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
