"""Drawing and editing shapes on the viewer (labelme / X-AnyLabeling habits).

Tools: select (move / resize shapes with their handles, click to select, Delete removes), rectangle
(press, drag, release), polygon (click the vertices; double-click, Enter or a click on the first vertex
closes; Esc cancels; Backspace removes the last vertex), point (click), brush and eraser (drag; the brush
size in image pixels). Shapes live in the viewer layer "annotations:labels" (it follows the boxes
toggle), editable shapes are pyqtgraph ROIs. Every finished edit goes through `LabelEditor`
(undoable, written to the database at once).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QKeyEvent, QMouseEvent, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsEllipseItem, QGraphicsPathItem, QGraphicsRectItem

from anomaly_gui.core.export.masks import annotation_mask, mask_geometry
from anomaly_gui.core.formats.base import Annotation
from anomaly_gui.gui.undo import LabelEditor
from anomaly_gui.gui.viewer import ImageViewer

TOOLS = ("select", "rectangle", "polygon", "point", "brush", "eraser")
LAYER = "annotations:labels"
DRAFT_LAYER = "annotations:draft"
CURSOR_LAYER = "annotations:cursor"
DEFAULT_COLOR = "#ffd60a"
CLOSE_DISTANCE_PX = 10  # screen pixels: a click this close to the first vertex closes the polygon


def editable(ann: Annotation) -> bool:
    """Shapes the analyst edits here: their own, imported ones, and model output they accepted."""
    return ann.source in ("user", "import") or ann.status == "accepted"


def _pen(color: str, width: float = 2.0, dashed: bool = False) -> QPen:
    pen = QPen(QColor(color))
    pen.setWidthF(width)
    pen.setCosmetic(True)
    if dashed:
        pen.setStyle(Qt.PenStyle.DashLine)
    return pen


class LabelCanvas(QObject):
    """Connects the viewer's mouse to the labeling tools; draws the current item's shapes."""

    selectionChanged = Signal(list)  # selected annotation ids
    toolChanged = Signal(str)
    shapesRedrawn = Signal()

    def __init__(self, viewer: ImageViewer, editor_fn: Callable[[], LabelEditor | None], parent: QObject | None = None):
        super().__init__(parent)
        self.viewer = viewer
        self._editor_fn = editor_fn
        self.tool = "select"
        self.label = ""
        self.colors: dict[str, str] = {}
        self.brush_size = 20
        self.item_id: int | None = None
        self.shapes: list[Annotation] = []
        self.selected: list[int] = []
        self._rois: dict[int, Any] = {}
        self._press: QPointF | None = None
        self._poly: list[QPointF] = []
        self._draft: Any = None
        self._mask: np.ndarray | None = None
        self._mask_item: pg.ImageItem | None = None
        self._last: QPointF | None = None
        self._outline: QGraphicsEllipseItem | None = None
        self._syncing = False
        viewer.view.viewport().installEventFilter(self)
        viewer.view.installEventFilter(self)

    # -- configuration ------------------------------------------------------------------------------
    @property
    def editor(self) -> LabelEditor | None:
        return self._editor_fn()

    def set_tool(self, tool: str) -> None:
        if tool not in TOOLS:
            raise ValueError(f"unknown tool {tool!r}; known: {', '.join(TOOLS)}")
        self.cancel_draft()
        self.viewer.clear_layer(CURSOR_LAYER)
        self._outline = None
        self.tool = tool
        movable = tool == "select"
        for roi in self._rois.values():
            roi.translatable = movable
            for h in getattr(roi, "getHandles", list)():
                h.setVisible(movable)
        self.viewer.view_box.setMouseEnabled(x=movable, y=movable)
        self.viewer.view.setCursor(Qt.CursorShape.ArrowCursor if movable else Qt.CursorShape.CrossCursor)
        self.toolChanged.emit(tool)

    def color(self, label: str) -> str:
        return self.colors.get(label, DEFAULT_COLOR)

    # -- shapes of the current item -----------------------------------------------------------------
    def show_item(self, item_id: int | None, annotations: list[Annotation]) -> None:
        self.cancel_draft()
        if item_id != self.item_id:
            self.selected = []
        self.item_id = item_id
        self.shapes = [a for a in annotations if editable(a)]
        self.selected = [i for i in self.selected if any(a.id == i for a in self.shapes)]
        self.redraw()

    def redraw(self) -> None:
        self.viewer.clear_layer(LAYER)
        self._rois = {}
        group = self.viewer.layer(LAYER)
        size = self.viewer.image_size
        for ann in self.shapes:
            item = self._make_item(ann, size)
            if item is None:
                continue
            item.setParentItem(group)
            self._rois[int(ann.id or 0)] = item
        self.set_tool(self.tool)
        self._paint_selection()
        self.shapesRedrawn.emit()

    def _make_item(self, ann: Annotation, size: tuple[int, int] | None) -> Any:
        color = self.color(ann.label)
        pen = _pen(color)
        g = ann.geometry
        if ann.kind == "box":
            x1, y1, x2, y2 = ann.box()
            roi = pg.RectROI([x1, y1], [x2 - x1, y2 - y1], pen=pen, hoverPen=_pen(color, 3), movable=True,
                             rotatable=False, removable=False)
            roi.addScaleHandle([0, 0], [1, 1])
            roi.addScaleHandle([1, 0], [0, 1])
            roi.addScaleHandle([0, 1], [1, 0])
        elif ann.kind == "polygon":
            roi = pg.PolyLineROI([tuple(p) for p in g["points"]], closed=True, pen=pen, hoverPen=_pen(color, 3), movable=True)
        elif ann.kind == "point":
            roi = pg.TargetItem(pos=(float(g["x"]), float(g["y"])), size=12, pen=pen, movable=True, symbol="o",
                                brush=pg.mkBrush(color))
            roi.sigPositionChangeFinished.connect(lambda r, a=ann: self._point_moved(a, r))
            roi.ann_id = ann.id
            return roi
        elif ann.kind == "mask" and size is not None:
            item = pg.ImageItem(axisOrder="row-major")
            item.setImage(self._mask_rgba(annotation_mask(ann, size), color, 110), autoLevels=False)
            item.setRect(QRectF(0, 0, size[0], size[1]))
            item.ann_id = ann.id
            return item
        else:
            return None
        roi.ann_id = ann.id
        roi.setAcceptedMouseButtons(Qt.MouseButton.LeftButton)
        roi.sigClicked.connect(lambda r, ev=None, a=ann: self.select([int(a.id or 0)], additive=self._shift_held(ev)))
        roi.sigRegionChangeFinished.connect(lambda r, a=ann: self._roi_changed(a, r))
        return roi

    @staticmethod
    def _shift_held(ev: Any) -> bool:
        try:
            return bool(ev.modifiers() & Qt.KeyboardModifier.ShiftModifier)
        except AttributeError:
            return False

    @staticmethod
    def _mask_rgba(mask: np.ndarray, color: str, alpha: int) -> np.ndarray:
        c = QColor(color)
        out = np.zeros(mask.shape + (4,), np.uint8)
        out[mask] = (c.red(), c.green(), c.blue(), alpha)
        return out

    # -- selection --------------------------------------------------------------------------------
    def select(self, ann_ids: list[int], additive: bool = False) -> None:
        ids = list(dict.fromkeys((self.selected if additive else []) + [int(i) for i in ann_ids]))
        if ids == self.selected:
            return
        self.selected = ids
        self._paint_selection()
        self.selectionChanged.emit(list(ids))

    def _paint_selection(self) -> None:
        for aid, roi in self._rois.items():
            ann = next((a for a in self.shapes if a.id == aid), None)
            if ann is None or not hasattr(roi, "setPen") or isinstance(roi, pg.TargetItem):
                continue
            roi.setPen(_pen("#ffffff" if aid in self.selected else self.color(ann.label), 3 if aid in self.selected else 2))

    def delete_selected(self) -> None:
        ed = self.editor
        if ed is None or self.item_id is None or not self.selected:
            return
        ids, self.selected = list(self.selected), []
        ed.delete_shapes(self.item_id, ids)
        self.selectionChanged.emit([])

    # -- edits from ROIs ------------------------------------------------------------------------------
    def _roi_changed(self, ann: Annotation, roi: Any) -> None:
        ed = self.editor
        if ed is None or self.item_id is None or ann.id is None:
            return
        if ann.kind == "box":
            pos, size = roi.pos(), roi.size()
            x1, y1 = float(pos.x()), float(pos.y())
            x2, y2 = x1 + float(size.x()), y1 + float(size.y())
            geom = {**ann.geometry, "x1": min(x1, x2), "y1": min(y1, y2), "x2": max(x1, x2), "y2": max(y1, y2)}
        else:
            pts = [roi.mapToParent(h.pos()) for h in roi.getHandles()]
            geom = {**ann.geometry, "points": [[float(p.x()), float(p.y())] for p in pts]}
        if geom != ann.geometry:
            ed.modify_shape(self.item_id, ann.id, f"Move {ann.kind} '{ann.label}'", geometry=geom)

    def _point_moved(self, ann: Annotation, target: Any) -> None:
        ed = self.editor
        if ed is None or self.item_id is None or ann.id is None:
            return
        p = target.pos()
        ed.modify_shape(self.item_id, ann.id, f"Move point '{ann.label}'", geometry={"x": float(p.x()), "y": float(p.y())})

    # -- mouse and keys for the drawing tools --------------------------------------------------------------
    def to_image(self, widget_pos: QPointF) -> QPointF:
        scene = self.viewer.view.mapToScene(widget_pos.toPoint())
        return self.viewer.view_box.mapSceneToView(scene)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        et = event.type()
        if et == QEvent.Type.KeyPress and isinstance(event, QKeyEvent):
            return self._key(event)
        if self.tool == "select" or self.viewer.image_size is None or self.item_id is None:
            if et == QEvent.Type.MouseButtonPress and self.tool == "select" and isinstance(event, QMouseEvent):
                self._select_mask_at(event)
            return False
        if not isinstance(event, QMouseEvent) or obj is not self.viewer.view.viewport():
            return False
        p = self.to_image(event.position())
        if et == QEvent.Type.MouseButtonPress and event.button() == Qt.MouseButton.LeftButton:
            self._on_press(p)
            return True
        if et == QEvent.Type.MouseMove:
            self._on_move(p, bool(event.buttons() & Qt.MouseButton.LeftButton))
            return self._press is not None
        if et == QEvent.Type.MouseButtonRelease and event.button() == Qt.MouseButton.LeftButton:
            self._on_release(p)
            return True
        if et == QEvent.Type.MouseButtonDblClick and self.tool == "polygon":
            self.finish_polygon()
            return True
        return False

    def _key(self, event: QKeyEvent) -> bool:
        key = event.key()
        if self.tool == "polygon" and self._poly:
            if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                self.finish_polygon()
                return True
            if key == Qt.Key.Key_Backspace:
                self._poly.pop()
                self._draw_poly_draft(None)
                return True
        if key == Qt.Key.Key_Escape and (self._poly or self._press is not None):
            self.cancel_draft()
            return True
        return False

    def _select_mask_at(self, event: QMouseEvent) -> None:
        p = self.to_image(event.position())
        size = self.viewer.image_size
        if size is None:
            return
        x, y = int(p.x()), int(p.y())
        if not (0 <= x < size[0] and 0 <= y < size[1]):
            return
        for ann in reversed(self.shapes):
            if ann.kind == "mask" and annotation_mask(ann, size)[y, x]:
                self.select([int(ann.id or 0)], additive=bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier))
                return

    def _on_press(self, p: QPointF) -> None:
        if self.tool == "rectangle":
            self._press = p
            self._set_draft(QGraphicsRectItem(QRectF(p, p)))
        elif self.tool == "polygon":
            if len(self._poly) >= 3 and self._near_first(p):
                self.finish_polygon()
                return
            self._poly.append(p)
            self._draw_poly_draft(None)
        elif self.tool == "point":
            self._commit(Annotation("point", self.label, {"x": float(p.x()), "y": float(p.y())}, source="user"))
        elif self.tool in ("brush", "eraser"):
            self._press = self._last = p
            self._start_mask()
            self._paint(p, p)

    def _on_move(self, p: QPointF, dragging: bool) -> None:
        if self.tool in ("brush", "eraser"):
            self._show_brush_outline(p)
        if self.tool == "rectangle" and self._press is not None and isinstance(self._draft, QGraphicsRectItem):
            self._draft.setRect(QRectF(self._press, p).normalized())
        elif self.tool == "polygon" and self._poly:
            self._draw_poly_draft(p)
        elif self.tool in ("brush", "eraser") and self._press is not None and dragging:
            self._paint(self._last or p, p)
            self._last = p

    def _on_release(self, p: QPointF) -> None:
        if self.tool == "rectangle" and self._press is not None:
            r = QRectF(self._press, p).normalized()
            self._press = None
            self.cancel_draft()
            w, h = self.viewer.image_size or (0, 0)
            x1, y1 = max(0.0, r.left()), max(0.0, r.top())
            x2, y2 = min(float(w), r.right()), min(float(h), r.bottom())
            if x2 - x1 >= 2 and y2 - y1 >= 2:
                self._commit(Annotation("box", self.label, {"x1": x1, "y1": y1, "x2": x2, "y2": y2}, source="user"))
        elif self.tool in ("brush", "eraser") and self._press is not None:
            self._press = self._last = None
            self._finish_mask()

    # -- polygon ---------------------------------------------------------------------------------------
    def _near_first(self, p: QPointF) -> bool:
        d = (p - self._poly[0]).manhattanLength() * self.viewer.view_scale()
        return d <= CLOSE_DISTANCE_PX

    def _draw_poly_draft(self, cursor: QPointF | None) -> None:
        path = QPainterPath()
        pts = self._poly + ([cursor] if cursor is not None else [])
        if pts:
            path.moveTo(pts[0])
            for q in pts[1:]:
                path.lineTo(q)
        item = self._draft if isinstance(self._draft, QGraphicsPathItem) else None
        if item is None:
            item = QGraphicsPathItem()
            self._set_draft(item)
        item.setPath(path)

    def finish_polygon(self) -> None:
        pts = [[float(q.x()), float(q.y())] for q in self._poly]
        self._poly = []
        self.cancel_draft()
        if len(pts) >= 3:
            self._commit(Annotation("polygon", self.label, {"points": pts}, source="user"))

    # -- brush / eraser ------------------------------------------------------------------------------------
    def _start_mask(self) -> None:
        size = self.viewer.image_size
        assert size is not None
        if self.tool == "brush":
            self._mask = np.zeros((size[1], size[0]), np.uint8)
        else:
            self._mask = np.zeros((size[1], size[0]), np.uint8)  # what the eraser swept
        self._mask_item = pg.ImageItem(axisOrder="row-major")
        self._mask_item.setRect(QRectF(0, 0, size[0], size[1]))
        self._set_draft(self._mask_item)

    def _paint(self, a: QPointF, b: QPointF) -> None:
        import cv2

        if self._mask is None or self._mask_item is None:
            return
        r = max(1, int(round(self.brush_size / 2)))
        cv2.line(self._mask, (int(a.x()), int(a.y())), (int(b.x()), int(b.y())), 1, thickness=2 * r, lineType=cv2.LINE_8)
        cv2.circle(self._mask, (int(b.x()), int(b.y())), r, 1, thickness=-1)
        color = "#ffffff" if self.tool == "eraser" else self.color(self.label)
        self._mask_item.setImage(self._mask_rgba(self._mask > 0, color, 120), autoLevels=False)

    def _finish_mask(self) -> None:
        swept = self._mask > 0 if self._mask is not None else None
        self._mask = None
        self.cancel_draft()
        ed, size = self.editor, self.viewer.image_size
        if swept is None or not swept.any() or ed is None or self.item_id is None or size is None:
            return
        if self.tool == "brush":
            same = [a for a in self.shapes if a.kind == "mask" and a.label == self.label and a.source == "user"]
            if same and same[-1].id is not None:
                merged = annotation_mask(same[-1], size) | swept
                ed.modify_shape(self.item_id, same[-1].id, f"Paint '{self.label}'", geometry=mask_geometry(merged))
            else:
                self._commit(Annotation("mask", self.label, mask_geometry(swept), source="user"))
            return
        targets = [a for a in self.shapes if a.kind == "mask" and a.id is not None
                   and (not self.selected or a.id in self.selected)]
        ed.stack.beginMacro("Erase")
        for a in targets:
            m = annotation_mask(a, size)
            if not (m & swept).any():
                continue
            rest = m & ~swept
            if rest.any():
                ed.modify_shape(self.item_id, int(a.id), "Erase", geometry=mask_geometry(rest))
            else:
                ed.delete_shapes(self.item_id, [int(a.id)])
        ed.stack.endMacro()

    def _show_brush_outline(self, p: QPointF) -> None:
        """A circle of the brush size under the cursor, so the analyst sees what a stroke will cover."""
        r = self.brush_size / 2
        if self._outline is None or self._outline.scene() is None:
            self._outline = QGraphicsEllipseItem()
            self._outline.setPen(_pen("#ffffff" if self.tool == "eraser" else self.color(self.label), 1))
            self._outline.setParentItem(self.viewer.layer(CURSOR_LAYER))
        self._outline.setRect(QRectF(p.x() - r, p.y() - r, 2 * r, 2 * r))

    # -- drafts ------------------------------------------------------------------------------------------
    def _set_draft(self, item: Any) -> None:
        if self._draft is not None and self._draft is not item:
            self.viewer.clear_layer(DRAFT_LAYER)
        self._draft = item
        if isinstance(item, (QGraphicsRectItem, QGraphicsPathItem, QGraphicsEllipseItem)):
            item.setPen(_pen(self.color(self.label), 2, dashed=True))
        item.setParentItem(self.viewer.layer(DRAFT_LAYER))

    def cancel_draft(self) -> None:
        self._draft = None
        self._press = None
        self._poly = []
        self._mask = None
        self._mask_item = None
        self.viewer.clear_layer(DRAFT_LAYER)

    def _commit(self, ann: Annotation) -> None:
        ed = self.editor
        if ed is None or self.item_id is None:
            return
        new_id = ed.add_shape(self.item_id, ann)
        self.selected = [new_id]
        self.selectionChanged.emit([new_id])
