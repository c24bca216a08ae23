"""Detection panel: train a detector (live mAP per epoch), review its boxes on the current item with a
confidence slider that re-filters the cached detections (no model re-run), accept / reject / edit boxes,
see which detections the anomaly rules flag, draw restricted zones, export images with boxes drawn."""
from __future__ import annotations

from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QColor, QKeySequence
from PySide6.QtWidgets import (QAbstractItemView, QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                               QProgressBar, QPushButton, QScrollArea, QSlider, QTabWidget,
                               QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget)

from anomaly_gui.core.detection_export import ReviewedDetection, export_detection_images, item_detections, run_classes
from anomaly_gui.core.rules import load_rules
from anomaly_gui.engines.base import RunContext, Task, list_engines
from anomaly_gui.engines.device import available_devices
from anomaly_gui.pipeline import DEFAULT_CONFIDENCE
from anomaly_gui.gui.panels import register_panel
from anomaly_gui.gui.param_form import ParamForm
from anomaly_gui.gui.state import AppState
from anomaly_gui.gui.workers import JobBusyError, start_job
from anomaly_gui.gui.detection_curve import MapCurve
from anomaly_gui.gui.detection_zones import ZonesMixin
from anomaly_gui.gui.zone_tool import RulesEditor, ZoneTool

JOB_KIND = "detection-train"
NORMAL = "#34c759"
FLAGGED = "#ff3b30"
LAYER = "detections"
FLAG_LAYER = "detections:flagged"


def train_detection_job(ctx: RunContext, project: Any, engine: str, params: dict[str, Any], device: str) -> int:
    """Worker body: a detection run through the run pipeline (split when the project has none, fit, score,
    confidence cut-off, mAP on the test items); the same path as a detection run from the Train panel."""
    from anomaly_gui.pipeline import train_run

    return train_run(project, engine, params, device=device, ctx=ctx)


def _scroll(page: QWidget) -> QScrollArea:
    """A tab page that scrolls instead of forcing the dock taller than the window."""
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QScrollArea.Shape.NoFrame)
    area.setWidget(page)
    return area


def _export_job(ctx: RunContext, project: Any, run_id: int, folder: str, confidence: float, rules: list) -> dict[str, Any]:
    return export_detection_images(project, run_id, folder, confidence, rules, ctx=ctx)


@register_panel
class DetectionPanel(ZonesMixin, QWidget):
    """See the module docstring. Registered as a right-hand dock."""

    panel_id = "detection"
    title = "Detection"
    area = "right"
    order = 40
    menu = "Detection"

    detectionsShown = Signal(int)  # number of boxes drawn on the current item

    def __init__(self, state: AppState, window: Any = None):
        super().__init__()
        self.state = state
        self.window_ = window
        self.viewer = getattr(window, "viewer", None)
        self.job: Any = None
        self.outcome = ""  # how the last training ended: done, failed, cancelled
        self.run_id: int | None = None
        self.known_classes: set[str] | None = None
        self.detections: list[ReviewedDetection] = []
        self.edit_roi: pg.RectROI | None = None
        self.last_export: dict[str, Any] | None = None
        self.zone_tool = ZoneTool(self.viewer) if self.viewer is not None else None
        self._build()
        state.projectChanged.connect(self._on_project)
        state.currentItemChanged.connect(lambda _i: self.refresh())
        state.currentRunChanged.connect(self._on_run_changed)
        state.runsChanged.connect(self._fill_runs)
        state.zonesChanged.connect(self._on_zones_changed)
        state.annotationsChanged.connect(lambda _i: self.refresh())
        self._connect_zone_tool()
        self._on_project(state.project)

    # -- layout --------------------------------------------------------------------------------
    def _build(self) -> None:
        self.setMinimumWidth(330)  # the list's columns and the rule editors stay readable
        tabs = self.tabs = QTabWidget()
        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)
        outer.addWidget(tabs)

        review = QWidget()
        rv = QVBoxLayout(review)
        row = QHBoxLayout()
        row.addWidget(QLabel("Run"))
        self.run_combo = QComboBox()
        self.run_combo.setObjectName("detectionRun")
        self.run_combo.currentIndexChanged.connect(self._on_run_combo)
        row.addWidget(self.run_combo, 1)
        rv.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(QLabel("Confidence ≥"))
        self.conf_slider = QSlider(Qt.Orientation.Horizontal)
        self.conf_slider.setObjectName("confidenceSlider")
        self.conf_slider.setRange(0, 100)
        self.conf_slider.setValue(int(DEFAULT_CONFIDENCE * 100))
        self.conf_slider.valueChanged.connect(self._on_confidence)
        row.addWidget(self.conf_slider, 1)
        self.conf_label = QLabel(f"{DEFAULT_CONFIDENCE:.2f}")
        self.conf_label.setMinimumWidth(34)
        row.addWidget(self.conf_label)
        rv.addLayout(row)
        self.summary = QLabel("No detection run yet: train one in the Train tab.")
        self.summary.setWordWrap(True)
        rv.addWidget(self.summary)
        self.table = QTreeWidget()
        self.table.setObjectName("detectionList")
        self.table.setHeaderLabels(["Class", "Conf.", "Status", "Anomaly"])
        self.table.setRootIsDecorated(False)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setColumnWidth(0, 70)
        self.table.setColumnWidth(1, 48)
        self.table.setColumnWidth(2, 70)
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.table.setMinimumHeight(140)
        rv.addWidget(self.table, 1)
        row = QHBoxLayout()
        self.accept_button = QPushButton("Accept")
        self.accept_button.setToolTip("Mark the selected boxes as correct (Y)")
        self.accept_button.clicked.connect(lambda: self.set_status("accepted"))
        self.reject_button = QPushButton("Reject")
        self.reject_button.setToolTip("Mark the selected boxes as wrong (N)")
        self.reject_button.clicked.connect(lambda: self.set_status("rejected"))
        self.edit_button = QPushButton("Edit box")
        self.edit_button.setCheckable(True)
        self.edit_button.setToolTip("Drag the box or its corner on the image; click again to save (E)")
        self.edit_button.toggled.connect(self._on_edit_toggled)
        for b in (self.accept_button, self.reject_button, self.edit_button):
            row.addWidget(b)
        rv.addLayout(row)
        self.export_button = QPushButton("Export images with boxes…")
        self.export_button.clicked.connect(self.choose_export)
        rv.addWidget(self.export_button)
        tabs.addTab(_scroll(review), "Review")

        train = QWidget()
        tv = QVBoxLayout(train)
        form = QFormLayout()
        self.engine_combo = QComboBox()
        self.engine_combo.setObjectName("detectionEngine")
        from anomaly_gui.gui.engine_availability import install_hint

        for cls in list_engines(Task.DETECTION):
            hint = install_hint(cls)
            self.engine_combo.addItem((cls.title or cls.name) + (f"  ({hint})" if hint else ""), cls.name)
            row = self.engine_combo.count() - 1
            self.engine_combo.setItemData(row, hint or cls.description, Qt.ItemDataRole.ToolTipRole)
            if hint:  # greyed, with the exact command that enables it
                self.engine_combo.model().item(row).setEnabled(False)
        self.engine_combo.currentIndexChanged.connect(self._on_engine)
        form.addRow("Engine", self.engine_combo)
        self.device_combo = QComboBox()
        self.device_combo.addItems(available_devices())
        form.addRow("Device", self.device_combo)
        tv.addLayout(form)
        self.param_form = ParamForm()
        tv.addWidget(self.param_form)
        row = QHBoxLayout()
        self.train_button = QPushButton("Train")
        self.train_button.clicked.connect(self.start_training)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel_training)
        row.addWidget(self.train_button)
        row.addWidget(self.cancel_button)
        tv.addLayout(row)
        self.progress = QProgressBar()
        self.progress.setFormat("idle")
        tv.addWidget(self.progress)
        self.curve = MapCurve()
        tv.addWidget(self.curve, 1)
        self.train_status = QLabel("")
        self.train_status.setWordWrap(True)
        tv.addWidget(self.train_status)
        tabs.addTab(_scroll(train), "Train")

        rules = QWidget()
        rl = QVBoxLayout(rules)
        box = QGroupBox("Anomaly rules")
        bl = QVBoxLayout(box)
        self.rules_editor = RulesEditor()
        self.rules_editor.rulesChanged.connect(self.refresh)
        bl.addWidget(self.rules_editor)
        rl.addWidget(box)
        box = self._build_zone_box()
        rl.addWidget(box, 1)
        tabs.addTab(_scroll(rules), "Rules && zones")
        self._on_engine()

    def actions(self) -> list[QAction]:
        """Menu actions (menu "Detection"): review keys and the zone tool."""
        out = []
        for text, key, slot in (("Accept selected box", "Y", lambda: self.set_status("accepted")),
                                ("Reject selected box", "N", lambda: self.set_status("rejected")),
                                ("Edit selected box", "E", lambda: self.edit_button.toggle()),
                                ("Draw restricted zone", "Z", self.start_zone)):
            act = QAction(text, self)
            act.setShortcut(QKeySequence(key))
            act.triggered.connect(slot)
            out.append(act)
        return out

    # -- project / run ---------------------------------------------------------------------------
    def _on_project(self, project: Any) -> None:
        self.rules_editor.set_project(project)
        self._fill_runs()
        self._on_zones_changed()

    def _fill_runs(self) -> None:
        project = self.state.project
        current = self.run_id
        self.run_combo.blockSignals(True)
        self.run_combo.clear()
        runs = [r for r in project.runs(Task.DETECTION.value)] if project is not None else []
        for r in runs:
            m50 = r.metrics.get("map50")
            extra = f" — mAP50 {m50:.3f}" if isinstance(m50, (int, float)) else f" ({r.status})"
            self.run_combo.addItem(r.title + extra, r.id)
        self.run_combo.blockSignals(False)
        ids = [r.id for r in runs if r.status in ("done", "scoring")]
        if current in [r.id for r in runs]:
            self.run_combo.setCurrentIndex(self.run_combo.findData(current))
        elif ids:
            self.run_combo.setCurrentIndex(self.run_combo.findData(ids[-1]))
        self._on_run_combo()

    def _on_run_combo(self, *_: Any) -> None:
        rid = self.run_combo.currentData()
        self.set_run(None if rid is None else int(rid))

    def _on_run_changed(self, run_id: Any) -> None:
        project = self.state.project
        if project is not None and run_id is not None:
            try:
                if project.run(int(run_id)).task == Task.DETECTION.value:
                    if self.run_combo.findData(int(run_id)) < 0:
                        self._fill_runs()
                    self.run_combo.setCurrentIndex(self.run_combo.findData(int(run_id)))
            except KeyError:
                pass  # a run deleted meanwhile

    def set_run(self, run_id: int | None) -> None:
        self.run_id = run_id
        self.known_classes = run_classes(self.state.project, run_id) if run_id is not None and self.state.project else None
        if run_id is not None and self.state.project is not None:
            run = self.state.project.run(run_id)
            self.curve.clear_curves()
            for e in run.log:
                self.curve.add_entry(e)
            if run.threshold is not None:  # the run's confidence cut-off (pipeline's detection policy)
                self.conf_slider.setValue(int(round(float(run.threshold) * 100)))
        self.refresh()

    # -- review ------------------------------------------------------------------------------------
    @property
    def confidence(self) -> float:
        return self.conf_slider.value() / 100.0

    def _on_confidence(self, value: int) -> None:
        self.conf_label.setText(f"{value / 100:.2f}")
        self.refresh()

    def refresh(self) -> None:
        """Re-read the current item's cached detections, filter, flag and draw them (no model run)."""
        project, item_id = self.state.project, self.state.current_item
        self._end_edit(save=False)
        if project is None or item_id is None or self.run_id is None:
            self.detections = []
        else:
            self.detections = item_detections(project, int(item_id), self.run_id, self.confidence,
                                              self.rules_editor.rules, self.known_classes)
        self._fill_table()
        self._draw()
        self._show_zones()

    def _fill_table(self) -> None:
        self.table.blockSignals(True)
        self.table.clear()
        for d in self.detections:
            row = QTreeWidgetItem([d.ann.label, f"{d.ann.score or 0:.2f}", d.ann.status or "—", "; ".join(d.reasons)])
            if d.flagged:
                for c in range(4):
                    row.setForeground(c, QColor(FLAGGED))
            row.setToolTip(3, "\n".join(d.reasons) or "no rule fires")
            self.table.addTopLevelItem(row)
        self.table.blockSignals(False)
        n_flag = sum(d.flagged for d in self.detections)
        if self.run_id is None:
            self.summary.setText("No detection run yet: train one in the Train tab.")
        elif self.state.current_item is None:
            self.summary.setText("Select an image in the browser.")
        else:
            text = f"{len(self.detections)} detection(s) at confidence ≥ {self.confidence:.2f}"
            m50 = self.state.project.run(self.run_id).metrics.get("map50") if self.state.project is not None else None
            if isinstance(m50, (int, float)):
                text = f"Run mAP@0.5 on the test items: {m50:.3f}. " + text
            self.summary.setText(text + (f" — <b style='color:{FLAGGED}'>{n_flag} anomal{'y' if n_flag == 1 else 'ies'}</b>" if n_flag else ""))

    def _draw(self) -> None:
        if self.viewer is None:
            return
        shown = [d for d in self.detections]
        normal = [d.ann for d in shown if not d.flagged]
        flagged = [d.ann for d in shown if d.flagged]
        self.viewer.set_boxes(normal, {a.label: NORMAL for a in normal}, layer=LAYER)
        self.viewer.set_boxes(flagged, {a.label: FLAGGED for a in flagged}, layer=FLAG_LAYER)
        self.detectionsShown.emit(len(shown))

    def selected_rows(self) -> list[int]:
        return sorted(self.table.indexOfTopLevelItem(i) for i in self.table.selectedItems())

    def _on_selection(self) -> None:
        if self.viewer is None:
            return
        rows = self.selected_rows()
        self.viewer.set_boxes([self.detections[r].ann for r in rows], {}, layer="detections:selected", show_text=False)
        for item in self.viewer.layer("detections:selected").childItems():
            item.setPen(pg.mkPen("#ffffff", width=3))

    def set_status(self, status: str) -> None:
        """Store accepted / rejected on the selected detections (saved at once)."""
        project = self.state.project
        rows = self.selected_rows()
        if project is None or not rows:
            return
        for r in rows:
            ann = self.detections[r].ann
            new = "" if ann.status == status else status  # pressing again clears it
            project.update_annotation(int(ann.id), status=new)
        self.refresh()
        for r in rows:
            if r < self.table.topLevelItemCount():
                self.table.topLevelItem(r).setSelected(True)

    def _on_edit_toggled(self, on: bool) -> None:
        if on:
            rows = self.selected_rows()
            if self.viewer is None or len(rows) != 1:
                self.edit_button.setChecked(False)
                self.state.message.emit("Select one detection to edit its box")
                return
            x1, y1, x2, y2 = self.detections[rows[0]].ann.box()
            self.edit_roi = pg.RectROI([x1, y1], [x2 - x1, y2 - y1], pen=pg.mkPen("#ffffff", width=2))
            self.edit_roi.addScaleHandle([0, 0], [1, 1])
            self.edit_roi.setZValue(50)
            self.edit_roi.setProperty("row", rows[0])
            self.viewer.view_box.addItem(self.edit_roi, ignoreBounds=True)
        else:
            self._end_edit(save=True)

    def _end_edit(self, save: bool) -> None:
        roi, self.edit_roi = self.edit_roi, None
        if roi is None:
            return
        if self.viewer is not None:
            self.viewer.view_box.removeItem(roi)
        if self.edit_button.isChecked():
            self.edit_button.blockSignals(True)
            self.edit_button.setChecked(False)
            self.edit_button.blockSignals(False)
        row = roi.property("row")
        project = self.state.project
        if save and project is not None and row is not None and row < len(self.detections):
            pos, size = roi.pos(), roi.size()
            geom = {"x1": float(pos.x()), "y1": float(pos.y()), "x2": float(pos.x() + size.x()), "y2": float(pos.y() + size.y())}
            project.update_annotation(int(self.detections[row].ann.id), geometry=geom, status="accepted")
            self.refresh()

    # -- training -----------------------------------------------------------------------------------
    def _on_engine(self, *_: Any) -> None:
        from anomaly_gui.engines.base import get_engine

        name = self.engine_combo.currentData()
        if name is None:
            self.param_form.set_params_class(None)
            self.train_button.setEnabled(False)
            return
        cls = get_engine(name)
        saved = self.state.project.setting(f"train.params.{name}") if self.state.project is not None else None
        self.param_form.set_params_class(cls.Params, saved)
        self.train_status.setText(cls.description)

    def start_training(self) -> None:
        project, name = self.state.project, self.engine_combo.currentData()
        if project is None or name is None:
            self.train_status.setText("Open a project with boxes (YOLO, VOC or COCO) first.")
            return
        try:
            params = self.param_form.values()
        except ValueError as exc:
            self.train_status.setText(str(exc))
            return
        project.set_setting(f"train.params.{name}", params)
        try:
            self.job = start_job(train_detection_job, project, name, params, self.device_combo.currentText(),
                                 title=f"Train {name}", kind=JOB_KIND)
        except JobBusyError as exc:
            self.train_status.setText(str(exc))
            return
        self.curve.clear_curves()
        self.job.progress.connect(self._on_progress)
        self.job.logged.connect(self.curve.add_entry)
        self.job.result.connect(self._on_trained)
        self.outcome = ""
        self.job.failed.connect(self._on_train_failed)
        self.job.cancelled.connect(self._on_train_cancelled)
        self.job.finished.connect(self._on_job_finished)
        self.train_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setRange(0, 0)
        self.train_status.setText(f"Training {name} …")

    def _on_train_failed(self, msg: str) -> None:
        self.outcome = "failed"
        self.train_status.setText(f"Training failed: {msg}")
        self.state.message.emit(f"Detection training failed: {msg}")

    def _on_train_cancelled(self) -> None:
        self.outcome = "cancelled"
        self.train_status.setText("Training cancelled.")

    def cancel_training(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.train_status.setText("Cancelling after the current batch …")

    def _on_progress(self, done: int, total: int, msg: str) -> None:
        if total > 0:
            self.progress.setRange(0, total)
            self.progress.setValue(min(done, total))
        self.progress.setFormat(f"%p%  {msg}" if msg else "%p%")

    def _on_trained(self, run_id: int) -> None:
        self.outcome = "done"
        text = self.run_summary(int(run_id))
        self.train_status.setText(text)
        self.state.message.emit(text.replace("<br>", " "))
        self.state.runsChanged.emit()
        self.state.set_current_run(int(run_id))
        self._fill_runs()
        self.run_combo.setCurrentIndex(self.run_combo.findData(int(run_id)))

    def run_summary(self, run_id: int) -> str:
        """The end-of-training message: test mAP, how many boxes the Review slider shows, what to do next."""
        project = self.state.project
        if project is None:
            return ""
        m = project.run(run_id).metrics
        m50, m5095 = m.get("map50"), m.get("map50_95")
        fmt = lambda v: f"{v:.3f}" if isinstance(v, (int, float)) else "n/a"  # noqa: E731
        confs = [float(a.score or 0.0) for anns in project.annotations_by_item(run_id=run_id).values() for a in anns]
        shown = sum(c >= self.confidence for c in confs)
        text = (f"Run #{run_id} finished: test mAP@0.5 {fmt(m50)}, mAP@0.5:0.95 {fmt(m5095)}.<br>"
                f"{shown} box(es) at confidence ≥ {self.confidence:.2f} on the scored images")
        if not confs:
            return text + ": the detector found nothing; train longer (more epochs) or check the labels."
        if shown == 0:
            text += f" (highest {max(confs):.2f}): lower the Confidence slider in Review, or train longer."
        else:
            text += "; see them in Review."
        if isinstance(m50, (int, float)) and m50 < 0.1:
            text += " The mAP is low: this run has not learnt the objects yet (more epochs or data)."
        return text

    def _on_job_finished(self) -> None:
        self.job = None
        outcome = getattr(self, "outcome", "")
        self.train_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if outcome == "done" else 0)
        self.progress.setFormat({"done": "finished", "failed": "failed", "cancelled": "cancelled"}.get(outcome, "idle"))

    # -- export ---------------------------------------------------------------------------------------
    def choose_export(self) -> None:
        if self.state.project is None or self.run_id is None:
            self.state.message.emit("No detection run to export")
            return
        folder = QFileDialog.getExistingDirectory(self, "Export images with boxes to")
        if folder:
            self.export_to(folder)

    def export_to(self, folder: str) -> Any:
        """Export in a worker: every scored item of the run, at the slider's confidence, flags in red."""
        job = start_job(_export_job, self.state.project, self.run_id, folder, self.confidence,
                        list(self.rules_editor.rules), title="Export detections", kind="detection-export")
        job.result.connect(self._on_exported)
        job.progress.connect(self._on_progress)
        job.failed.connect(lambda msg: self.state.message.emit(f"Export failed: {msg}"))
        return job

    def _on_exported(self, summary: dict[str, Any]) -> None:
        self.last_export = summary
        msg = f"Exported {summary['written']} image(s), {summary['boxes']} box(es), {summary['flagged']} flagged, to {summary['folder']}"
        if summary["problems"]:
            msg += f"; {len(summary['problems'])} unreadable image(s) skipped"
        self.state.message.emit(msg)

    def load_rules(self) -> None:
        self.rules_editor.rules = load_rules(self.state.project)
        self.refresh()
