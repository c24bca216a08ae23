"""The image viewer: a pyqtgraph view with named overlay layers (napari-like: dark, zoom at the cursor).

Contract (others draw on it without editing this file):
- `set_image(arr)`: any dtype / channel count (`core.imageio` scales 16-bit and float for display; the
  pixel readout shows the original values). `clear_image()`.
- `fit()` (Ctrl+F in the main window), `zoom_by(factor)`, `actual_pixels()`; wheel (and Ctrl+wheel) zooms at
  the cursor, a left drag pans.
- Overlays: `set_heatmap(map_or_None, levels=(lo, hi))` (a map smaller than the image is stretched over
  it, opacity from `state.heatmap_opacity`), `set_mask_contours(mask_or_None, color, layer="contours")`,
  `set_boxes(list[Annotation], colors, layer="boxes")` (label and score drawn),
  `set_polygons(list[Annotation | points], colors, layer="polygons")`.
- Generic layers for anything else: `layer(name, toggle=None) -> pg.ItemGroup` (add QGraphicsItems to it),
  `clear_layer(name)`, `clear_layers(prefix)`, `clear_overlays()`, `layer_names()`. A layer's visibility
  follows a display flag of `AppState` chosen by its name's first part (before ':'): heatmap ->
  show_heatmap; contours / gt / mask -> show_contours; boxes / annotations / polygons / detections ->
  show_boxes; any other layer is shown while at least one flag is on (so T hides everything).
- Signals in image pixel coordinates: `imageClicked(x, y)` (left click), `mouseMoved(x, y)`.
- `view_box` (pg.ViewBox, y down) and `scene()` for ROI and drawing tools; `pixel_text(x, y)` for readouts.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QPainterPath, QPen, QPolygonF
from PySide6.QtWidgets import QGraphicsPathItem, QGraphicsRectItem, QLabel, QStackedLayout, QWidget

from anomaly_gui.core.formats.base import Annotation
from anomaly_gui.core.imageio import to_uint8
from anomaly_gui.gui.state import AppState

BACKGROUND = "#1e1e22"
DEFAULT_BOX_COLOR = "#ffd60a"
_TOGGLES = {
    "heatmap": "show_heatmap",
    "contours": "show_contours",
    "gt": "show_contours",
    "mask": "show_contours",
    "boxes": "show_boxes",
    "annotations": "show_boxes",
    "polygons": "show_boxes",
    "detections": "show_boxes",
}


def heatmap_lut(name: str = "inferno", n: int = 256) -> np.ndarray:
    """RGBA lookup table whose alpha rises over the lower quarter, so low scores barely tint the image."""
    cmap = pg.colormap.get(name)
    lut = cmap.getLookupTable(0.0, 1.0, n, alpha=True).astype(np.uint8)
    ramp = np.clip(np.linspace(0.0, 4.0, n), 0.0, 1.0)
    lut[:, 3] = (ramp * 255).astype(np.uint8)
    return lut


class ImageViewer(QWidget):
    """A pyqtgraph image view with overlay layers; see the module docstring for the contract."""

    imageClicked = Signal(float, float)
    mouseMoved = Signal(float, float)
    imageChanged = Signal()

    def __init__(self, state: AppState | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.state = state or AppState()
        self.setObjectName("imageViewer")
        self.view = pg.GraphicsView(background=BACKGROUND)
        self.view.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.view_box = pg.ViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.view_box.setBackgroundColor(None)
        self.view.setCentralItem(self.view_box)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.view_box.addItem(self.image_item)
        self.heatmap_item = pg.ImageItem(axisOrder="row-major")
        self.heatmap_item.setZValue(10)
        self.heatmap_item.setVisible(False)
        self.view_box.addItem(self.heatmap_item, ignoreBounds=True)
        self._lut = heatmap_lut()
        self._raw: np.ndarray | None = None
        self._layers: dict[str, pg.ItemGroup] = {}
        self._layer_toggle: dict[str, str | None] = {}

        self.info_label = QLabel(self.view)
        self.info_label.setObjectName("viewerInfo")
        self.info_label.setStyleSheet(
            "QLabel#viewerInfo { color: #e8e8e8; background: rgba(0,0,0,140); padding: 3px 8px;"
            " border-radius: 4px; }"
        )
        self.info_label.move(8, 8)
        self.info_label.hide()

        self._stack = QStackedLayout(self)
        self._stack.setContentsMargins(0, 0, 0, 0)
        self._stack.addWidget(self.view)
        self._placeholder: QWidget | None = None

        scene = self.view.scene()
        scene.sigMouseMoved.connect(self._on_mouse_moved)
        scene.sigMouseClicked.connect(self._on_mouse_clicked)
        self.state.displayChanged.connect(self.apply_display)

    # -- image -------------------------------------------------------------------------------
    def set_image(self, arr: np.ndarray | None, fit: bool | None = None) -> None:
        """Show an image (HxW or HxWxC, any dtype). Fits the view when the size changed (or fit=True)."""
        if arr is None:
            self.clear_image()
            return
        arr = np.asarray(arr)
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        if arr.ndim == 3 and arr.shape[2] == 2:
            arr = arr[:, :, 0]
        if arr.ndim not in (2, 3):
            raise ValueError(f"cannot show an array of shape {arr.shape}")
        old_shape = None if self._raw is None else self._raw.shape[:2]
        self._raw = arr
        disp = to_uint8(arr)
        self.image_item.setImage(disp, autoLevels=False, levels=(0, 255))
        self.image_item.setRect(QRectF(0, 0, arr.shape[1], arr.shape[0]))
        self.show_placeholder(False)
        if fit or (fit is None and old_shape != arr.shape[:2]):
            self.fit()
        self.imageChanged.emit()

    def clear_image(self) -> None:
        self._raw = None
        self.image_item.clear()
        self.clear_overlays()
        self.set_info("")
        self.imageChanged.emit()

    @property
    def image(self) -> np.ndarray | None:
        """The image as given to `set_image` (original dtype)."""
        return self._raw

    @property
    def image_size(self) -> tuple[int, int] | None:
        """(width, height) of the shown image."""
        return None if self._raw is None else (int(self._raw.shape[1]), int(self._raw.shape[0]))

    def set_info(self, text: str) -> None:
        """Small caption at the top left of the view (item name, split, size)."""
        self.info_label.setText(text)
        self.info_label.adjustSize()
        self.info_label.setVisible(bool(text))

    # -- navigation ----------------------------------------------------------------------------
    def fit(self) -> None:
        """Fit the whole image in the view."""
        size = self.image_size
        if size is None:
            return
        self.view_box.setRange(QRectF(0, 0, size[0], size[1]), padding=0.02)

    def zoom_by(self, factor: float, center: QPointF | None = None) -> None:
        """Zoom in (factor > 1) or out around `center` (image coordinates; default the view centre)."""
        if factor <= 0:
            raise ValueError("zoom factor must be positive")
        c = center if center is not None else self.view_box.viewRect().center()
        self.view_box.scaleBy((1.0 / factor, 1.0 / factor), center=c)

    def actual_pixels(self) -> None:
        """One image pixel per screen pixel, around the view centre."""
        rect = self.view_box.viewRect()
        w = max(1, self.view_box.width())
        self.zoom_by(rect.width() / w)

    def view_scale(self) -> float:
        """Screen pixels per image pixel (for tests and zoom readouts)."""
        rect = self.view_box.viewRect()
        return float(self.view_box.width() / rect.width()) if rect.width() > 0 else 1.0

    # -- overlays -----------------------------------------------------------------------------
    def set_heatmap(self, hmap: np.ndarray | None, levels: tuple[float, float] | None = None,
                    colormap: str | None = None) -> None:
        """Anomaly map over the image, stretched to its size; levels are raw score values (None: map range)."""
        if hmap is None:
            self.heatmap_item.clear()
            self.heatmap_item.setVisible(False)
            return
        h = np.asarray(hmap, dtype=np.float32)
        if h.ndim != 2:
            raise ValueError(f"a heatmap must be 2-D, got shape {h.shape}")
        if levels is None:
            finite = h[np.isfinite(h)]
            levels = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        lo, hi = float(levels[0]), float(levels[1])
        if hi <= lo:
            hi = lo + 1e-6
        lut = heatmap_lut(colormap) if colormap else self._lut
        self.heatmap_item.setImage(np.nan_to_num(h, nan=lo), autoLevels=False, levels=(lo, hi), lut=lut)
        size = self.image_size or (h.shape[1], h.shape[0])
        self.heatmap_item.setRect(QRectF(0, 0, size[0], size[1]))
        self.heatmap_item.setOpacity(float(self.state.heatmap_opacity))
        self.heatmap_item.setVisible(bool(self.state.show_heatmap))

    def set_mask_contours(self, mask: np.ndarray | None, color: str = "#00e676", layer: str = "contours",
                          width: float = 2.0) -> None:
        """Outline the regions of a boolean mask (stretched to the image when smaller or larger)."""
        self.clear_layer(layer)
        if mask is None:
            return
        import cv2

        m = (np.asarray(mask) > 0).astype(np.uint8)
        if m.ndim != 2:
            raise ValueError(f"a mask must be 2-D, got shape {m.shape}")
        contours, _ = cv2.findContours(m, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        size = self.image_size or (m.shape[1], m.shape[0])
        sx, sy = size[0] / m.shape[1], size[1] / m.shape[0]
        path = QPainterPath()
        for c in contours:
            pts = c.reshape(-1, 2).astype(np.float64)
            poly = QPolygonF([QPointF((x + 0.5) * sx, (y + 0.5) * sy) for x, y in pts])
            if len(pts):
                poly.append(poly[0])
            path.addPolygon(poly)
        item = QGraphicsPathItem(path)
        item.setPen(_pen(color, width))
        item.setParentItem(self.layer(layer))

    def set_boxes(self, anns: Sequence[Annotation], colors: dict[str, str] | None = None,
                  layer: str = "boxes", show_text: bool = True) -> None:
        """Draw box (and polygon) annotations with their label and score."""
        self.clear_layer(layer)
        group = self.layer(layer)
        colors = colors or {}
        for ann in anns:
            color = colors.get(ann.label, DEFAULT_BOX_COLOR)
            dashed = ann.status == "rejected"
            if ann.kind == "box":
                x1, y1, x2, y2 = ann.box()
                item: Any = QGraphicsRectItem(QRectF(x1, y1, x2 - x1, y2 - y1))
            elif ann.kind == "polygon":
                item = QGraphicsPathItem(_polygon_path(ann.geometry["points"]))
            else:
                continue
            item.setPen(_pen(color, 2.0, dashed))
            item.setParentItem(group)
            if show_text:
                text = _caption(ann)
                if text:
                    x1, y1, _, _ = ann.box()
                    label = pg.TextItem(text, color="#111111", anchor=(0, 1), fill=QColor(color))
                    label.setParentItem(group)
                    label.setPos(x1, y1)

    def set_polygons(self, polygons: Iterable[Annotation | Sequence[Sequence[float]]],
                     colors: dict[str, str] | None = None, layer: str = "polygons",
                     color: str = DEFAULT_BOX_COLOR, fill_alpha: int = 40) -> None:
        """Draw polygons (annotations of kind polygon, or plain point lists) lightly filled."""
        self.clear_layer(layer)
        group = self.layer(layer)
        colors = colors or {}
        for poly in polygons:
            if isinstance(poly, Annotation):
                if poly.kind != "polygon":
                    continue
                points, c = poly.geometry["points"], colors.get(poly.label, color)
            else:
                points, c = poly, color
            item = QGraphicsPathItem(_polygon_path(points))
            item.setPen(_pen(c, 2.0))
            fill = QColor(c)
            fill.setAlpha(fill_alpha)
            item.setBrush(fill)
            item.setParentItem(group)

    # -- generic layers -----------------------------------------------------------------------------
    def layer(self, name: str, toggle: str | None = None) -> pg.ItemGroup:
        """The item group of layer `name` (made on first use). `toggle` names the AppState flag it follows."""
        group = self._layers.get(name)
        if group is None:
            group = pg.ItemGroup()
            group.setZValue(20 + len(self._layers))
            self.view_box.addItem(group, ignoreBounds=True)
            self._layers[name] = group
            self._layer_toggle[name] = toggle or _TOGGLES.get(name.split(":", 1)[0])
            group.setVisible(self._layer_visible(name))
        return group

    def clear_layer(self, name: str) -> None:
        group = self._layers.get(name)
        if group is None:
            return
        scene = group.scene()
        for child in list(group.childItems()):
            child.setParentItem(None)
            if scene is not None:
                scene.removeItem(child)

    def clear_layers(self, prefix: str = "") -> None:
        """Empty every layer whose name starts with `prefix` (all layers for '')."""
        for name in list(self._layers):
            if name.startswith(prefix):
                self.clear_layer(name)

    def clear_overlays(self) -> None:
        """Remove the heatmap and empty every layer (done when the current item changes)."""
        self.set_heatmap(None)
        self.clear_layers("")

    def layer_names(self) -> list[str]:
        return list(self._layers)

    def layer_item_count(self, name: str) -> int:
        group = self._layers.get(name)
        return 0 if group is None else len(group.childItems())

    def overlays_visible(self) -> bool:
        s = self.state
        return bool(s.show_heatmap or s.show_contours or s.show_boxes)

    def _layer_visible(self, name: str) -> bool:
        flag = self._layer_toggle.get(name)
        return bool(getattr(self.state, flag)) if flag else self.overlays_visible()

    def apply_display(self) -> None:
        """Follow the state's overlay toggles and heatmap opacity."""
        self.heatmap_item.setOpacity(float(self.state.heatmap_opacity))
        self.heatmap_item.setVisible(bool(self.state.show_heatmap) and self.heatmap_item.image is not None)
        for name, group in self._layers.items():
            group.setVisible(self._layer_visible(name))

    # -- placeholder (welcome page when nothing is open) -------------------------------------------
    def set_placeholder(self, widget: QWidget | None) -> None:
        """A widget shown instead of the view while no image is shown (e.g. the welcome page)."""
        if self._placeholder is not None:
            self._stack.removeWidget(self._placeholder)
        self._placeholder = widget
        if widget is not None:
            self._stack.addWidget(widget)

    def show_placeholder(self, show: bool) -> None:
        if show and self._placeholder is not None:
            self._stack.setCurrentWidget(self._placeholder)
        else:
            self._stack.setCurrentWidget(self.view)

    # -- mouse -------------------------------------------------------------------------------------
    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        if self._raw is None:
            return
        p = self.view_box.mapSceneToView(scene_pos)
        self.mouseMoved.emit(float(p.x()), float(p.y()))

    def _on_mouse_clicked(self, ev: Any) -> None:
        if self._raw is None or ev.button() != Qt.MouseButton.LeftButton:
            return
        p = self.view_box.mapSceneToView(ev.scenePos())
        self.imageClicked.emit(float(p.x()), float(p.y()))

    def pixel_text(self, x: float, y: float) -> str:
        """'x 12, y 40: 87 140 200' for the pixel under (x, y), '' outside the image."""
        if self._raw is None:
            return ""
        col, row = int(np.floor(x)), int(np.floor(y))
        h, w = self._raw.shape[:2]
        if not (0 <= col < w and 0 <= row < h):
            return ""
        v = self._raw[row, col]
        values = " ".join(_fmt_value(c) for c in np.atleast_1d(v))
        return f"x {col}, y {row}: {values}"


def _fmt_value(v: Any) -> str:
    return f"{float(v):.4g}" if np.issubdtype(np.asarray(v).dtype, np.floating) else str(int(v))


def _pen(color: str, width: float, dashed: bool = False) -> QPen:
    pen = QPen(QColor(color))
    pen.setWidthF(width)
    pen.setCosmetic(True)  # constant screen width at any zoom
    if dashed:
        pen.setStyle(Qt.PenStyle.DashLine)
    return pen


def _polygon_path(points: Sequence[Sequence[float]]) -> QPainterPath:
    poly = QPolygonF([QPointF(float(x), float(y)) for x, y in points])
    if len(points):
        poly.append(poly[0])
    path = QPainterPath()
    path.addPolygon(poly)
    return path


def _caption(ann: Annotation) -> str:
    if ann.score is None:
        return ann.label
    return f"{ann.label} {ann.score:.2f}".strip()
