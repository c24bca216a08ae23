"""Restricted zones on the viewer, and the editor of the anomaly rules.

`ZoneTool` draws a new zone (click vertices; double-click or Enter closes it, Escape cancels, Backspace
removes the last vertex) and shows saved zones as pyqtgraph `PolyLineROI`s whose vertices can be dragged
(saved when the drag ends). A click on a zone selects it; Delete removes the selected one.
`RulesEditor` lists the rules with a check box each and their parameters, saved in the project at once.
"""
from __future__ import annotations

from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QEvent, QObject, QPointF, Qt, Signal
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QLineEdit, QVBoxLayout, QWidget)

from anomaly_gui.core.rules import RULE_KINDS, Rule, load_rules, save_rules

ZONE_COLOR = "#ff9f0a"
SELECTED_COLOR = "#ff3b30"
DRAFT_LAYER = "zones:draft"


class ZoneTool(QObject):
    """Drawing and editing of zone polygons on an `ImageViewer` (coordinates in image pixels)."""

    zoneDrawn = Signal(list)  # [[x, y], ...] of a closed new polygon
    zoneEdited = Signal(int, list)  # zone id, new points
    zoneSelected = Signal(object)  # zone id | None
    deleteRequested = Signal(int)  # zone id
    drawingChanged = Signal(bool)

    def __init__(self, viewer: Any):
        super().__init__(viewer)
        self.viewer = viewer
        self.drawing = False
        self.points: list[list[float]] = []
        self.rois: dict[int, pg.PolyLineROI] = {}
        self.selected: int | None = None
        viewer.view.scene().sigMouseClicked.connect(self._on_click)
        viewer.view.installEventFilter(self)
        viewer.view.viewport().installEventFilter(self)

    # -- drawing ------------------------------------------------------------------------------
    def start(self) -> None:
        """Begin a new zone: the next clicks on the image are its vertices."""
        self.points = []
        self.drawing = True
        self._draw_draft()
        self.viewer.set_info("Drawing a zone: click vertices, double-click or Enter to close, Esc to cancel")
        self.viewer.view.setFocus()
        self.drawingChanged.emit(True)

    def cancel(self) -> None:
        if self.drawing:
            self.drawing = False
            self.points = []
            self.viewer.clear_layer(DRAFT_LAYER)
            self.drawingChanged.emit(False)

    def add_point(self, x: float, y: float) -> None:
        if self.drawing:
            if self.points and abs(self.points[-1][0] - x) < 1e-6 and abs(self.points[-1][1] - y) < 1e-6:
                return
            self.points.append([float(x), float(y)])
            self._draw_draft()

    def finish(self) -> bool:
        """Close the polygon (needs three vertices); emits zoneDrawn. Returns whether a zone was made."""
        if not self.drawing:
            return False
        points = list(self.points)
        self.drawing = False
        self.points = []
        self.viewer.clear_layer(DRAFT_LAYER)
        self.drawingChanged.emit(False)
        if len(points) < 3:
            self.viewer.set_info("A zone needs at least three vertices")
            return False
        self.zoneDrawn.emit(points)
        return True

    def _draw_draft(self) -> None:
        self.viewer.clear_layer(DRAFT_LAYER)
        group = self.viewer.layer(DRAFT_LAYER, toggle="show_boxes")
        if not self.points:
            return
        pts = self.points + ([self.points[0]] if len(self.points) > 2 else [])
        curve = pg.PlotDataItem([p[0] for p in pts], [p[1] for p in pts], pen=pg.mkPen(ZONE_COLOR, width=2, style=Qt.PenStyle.DashLine),
                                symbol="o", symbolSize=7, symbolBrush=ZONE_COLOR)
        curve.setParentItem(group)

    def _on_click(self, ev: Any) -> None:
        if not self.drawing or ev.button() != Qt.MouseButton.LeftButton:
            return
        p = self.viewer.view_box.mapSceneToView(ev.scenePos())
        if ev.double():
            self.add_point(p.x(), p.y())
            self.finish()
        else:
            self.add_point(p.x(), p.y())
        ev.accept()

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt name)
        if event.type() == QEvent.Type.KeyPress:
            key = event.key()
            if self.drawing and key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                self.finish()
                return True
            if self.drawing and key == Qt.Key.Key_Escape:
                self.cancel()
                return True
            if self.drawing and key == Qt.Key.Key_Backspace and self.points:
                self.points.pop()
                self._draw_draft()
                return True
            if not self.drawing and key == Qt.Key.Key_Delete and self.selected is not None:
                self.deleteRequested.emit(int(self.selected))
                return True
        return False

    # -- saved zones --------------------------------------------------------------------------
    def show_zones(self, zones: list[dict[str, Any]]) -> None:
        """Show zones (records of `project.zones`) as editable polygons."""
        for roi in self.rois.values():
            self.viewer.view_box.removeItem(roi)
        self.rois = {}
        for z in zones:
            roi = pg.PolyLineROI(z["polygon"], closed=True, pen=pg.mkPen(ZONE_COLOR, width=2),
                                 hoverPen=pg.mkPen(SELECTED_COLOR, width=3), movable=True, removable=False)
            roi.setZValue(40)
            roi.setAcceptedMouseButtons(Qt.MouseButton.LeftButton)
            zid = int(z["id"])
            roi.sigRegionChangeFinished.connect(lambda r, zid=zid: self.zoneEdited.emit(zid, self.roi_points(r)))
            roi.sigClicked.connect(lambda r, ev, zid=zid: self.select(zid))
            self.viewer.view_box.addItem(roi, ignoreBounds=True)
            self.rois[zid] = roi
        if self.selected not in self.rois:
            self.selected = None
        self._paint_selection()

    @staticmethod
    def roi_points(roi: pg.PolyLineROI) -> list[list[float]]:
        """The polygon's vertices in image coordinates (after drags of vertices or of the whole shape)."""
        out = []
        for h in roi.getHandles():
            p = roi.mapToParent(h.pos())
            out.append([float(p.x()), float(p.y())])
        return out

    def select(self, zone_id: int | None) -> None:
        self.selected = zone_id
        self._paint_selection()
        self.zoneSelected.emit(zone_id)

    def _paint_selection(self) -> None:
        for zid, roi in self.rois.items():
            color = SELECTED_COLOR if zid == self.selected else ZONE_COLOR
            roi.setPen(QPen(QColor(color), 3 if zid == self.selected else 2))

    def set_visible(self, on: bool) -> None:
        for roi in self.rois.values():
            roi.setVisible(on)


def image_to_widget(viewer: Any, x: float, y: float) -> Any:
    """Widget (viewport) position of image pixel (x, y): for tests and tools that synthesise clicks."""
    scene = viewer.view_box.mapViewToScene(QPointF(x, y))
    return viewer.view.mapFromScene(scene)


class RulesEditor(QWidget):
    """One check box per rule with its parameters; every change is saved in the project at once."""

    rulesChanged = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.project: Any = None
        self.rules: list[Rule] = []
        self.boxes: list[QCheckBox] = []
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)

    def set_project(self, project: Any) -> None:
        self.project = project
        self.rules = load_rules(project)
        self._rebuild()

    def _rebuild(self) -> None:
        while self._layout.count():
            w = self._layout.takeAt(0).widget()
            if w is not None:
                w.hide()
                w.setParent(None)
                w.deleteLater()
        self.boxes = []
        for k, rule in enumerate(self.rules):
            box = QCheckBox(rule.describe())
            box.setObjectName(f"rule_{rule.kind}")
            box.setChecked(rule.enabled)
            box.toggled.connect(lambda on, k=k: self._set(k, enabled=on))
            self._layout.addWidget(box)
            self.boxes.append(box)
            form = QFormLayout()
            form.setContentsMargins(24, 0, 0, 6)
            for key, schema in rule.spec.schema.items():
                form.addRow(key.replace("_", " ").capitalize(), self._param_widget(k, key, schema))
            holder = QWidget()
            holder.setLayout(form)
            self._layout.addWidget(holder)

    def _param_widget(self, k: int, key: str, schema: Any) -> QWidget:
        rule = self.rules[k]
        value = rule.value(key)
        if isinstance(schema, list):
            w: Any = QComboBox()
            w.addItems(schema)
            w.setCurrentText(str(value))
            w.currentTextChanged.connect(lambda v, k=k, key=key: self._set(k, **{key: v}))
        elif isinstance(schema, tuple):
            w = QDoubleSpinBox()
            w.setRange(float(schema[1]), float(schema[2]))
            w.setSingleStep(0.05)
            w.setDecimals(2)
            w.setValue(float(value))
            w.valueChanged.connect(lambda v, k=k, key=key: self._set(k, **{key: float(v)}))
        else:
            w = QLineEdit(str(value))
            w.setPlaceholderText("empty: the classes the model was trained on")
            w.editingFinished.connect(lambda k=k, key=key, w=w: self._set(k, **{key: w.text()}))
        w.setObjectName(f"rule_{rule.kind}_{key}")
        return w

    def _set(self, k: int, enabled: bool | None = None, **params: Any) -> None:
        rule = self.rules[k]
        if enabled is not None:
            rule.enabled = bool(enabled)
        rule.params.update(params)
        if k < len(self.boxes):
            self.boxes[k].setText(rule.describe())
        if self.project is not None:
            save_rules(self.project, self.rules)
        self.rulesChanged.emit()

    def kinds(self) -> list[str]:
        return [r.kind for r in self.rules if r.kind in RULE_KINDS]
