"""The Runs panel: every run of the project with engine, date, status and key metrics.

Selecting a run makes it `state.current_run` (the review panel, browser and viewer then show its cached
results, nothing is recomputed). Runs can be renamed (double-click the name, or F2) and deleted (Delete, with
confirmation). The list follows the project: reopening a project shows its runs again and selects the last
finished one.
"""
from __future__ import annotations

import time
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QColor, QKeySequence
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QHeaderView, QMessageBox, QPushButton,
                               QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from anomaly_gui.core.project import Run
from anomaly_gui.pipeline import rename_run
from anomaly_gui.gui.model_export import export_dialog, run_exportable
from anomaly_gui.gui.panels import register_panel
from anomaly_gui.gui.state import AppState

COLUMNS = ("Name", "Engine", "Created", "Status", "Image AUROC", "Pixel AUROC", "AUPRO", "F1-max", "Threshold",
           "Min area")
METRIC_COLUMNS = {"Image AUROC": "image_auroc", "Pixel AUROC": "pixel_auroc", "AUPRO": "aupro", "F1-max": "f1_max"}
STATUS_COLORS = {"done": "#3cb44b", "failed": "#e6194b", "cancelled": "#f58231", "running": "#4363d8",
                 "scoring": "#4363d8"}
RunIdRole = Qt.ItemDataRole.UserRole + 1


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) >= 10 ** -digits or v == 0 else f"{v:.3g}"
    return str(v)


@register_panel
class RunsPanel(QWidget):
    """A table of runs; selection drives `state.current_run`."""

    panel_id = "runs"
    title = "Runs"
    area = "right"
    order = 21

    def __init__(self, state: AppState, window: Any = None):
        super().__init__()
        self.setMinimumWidth(340)
        self.state = state
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.DoubleClicked | QAbstractItemView.EditTrigger.EditKeyPressed)
        self.table.verticalHeader().setVisible(False)
        self.table.setAlternatingRowColors(True)
        self.table.setSortingEnabled(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.setWordWrap(False)
        self.table.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.rename_button = QPushButton("Rename")
        self.delete_button = QPushButton("Delete")
        self.delete_button.setToolTip("Delete the selected run, its model and cached scores (Delete)")
        self.export_button = QPushButton("Export model…")
        self.export_button.setToolTip("Write the selected run's model as ONNX or OpenVINO IR for deployment "
                                      "(finished PatchCore, self-similarity and autoencoder runs; the same as "
                                      "`anomaly-gui export-model`)")
        buttons = QHBoxLayout()
        buttons.addWidget(self.export_button)
        buttons.addStretch(1)
        buttons.addWidget(self.rename_button)
        buttons.addWidget(self.delete_button)
        lay = QVBoxLayout(self)
        lay.addWidget(self.table)
        lay.addLayout(buttons)

        self.delete_action = QAction("Delete run", self)
        self.delete_action.setShortcut(QKeySequence.StandardKey.Delete)
        self.delete_action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.delete_action.triggered.connect(self.delete_selected)
        self.addAction(self.delete_action)

        self._filling = False
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.table.itemChanged.connect(self._on_item_changed)
        self.rename_button.clicked.connect(self._start_rename)
        self.delete_button.clicked.connect(self.delete_selected)
        self.export_button.clicked.connect(self.export_selected)
        state.projectChanged.connect(self._on_project)
        state.runsChanged.connect(self.refresh)
        state.currentRunChanged.connect(self._select_run)
        self._on_project(state.project)

    # -- filling ------------------------------------------------------------------------------------
    def runs(self) -> list[Run]:
        return self.state.project.runs() if self.state.project is not None else []

    def _on_project(self, project: Any) -> None:
        self.refresh()
        if project is not None and self.state.current_run is None:
            done = [r for r in self.runs() if r.status == "done"]
            if done:
                self.state.set_current_run(done[-1].id)

    def refresh(self) -> None:
        runs = self.runs()
        self._filling = True
        try:
            self.table.setRowCount(len(runs))
            for row, run in enumerate(reversed(runs)):  # newest first
                self._fill_row(row, run)
        finally:
            self._filling = False
        self._select_run(self.state.current_run)
        self._update_buttons()

    def _fill_row(self, row: int, run: Run) -> None:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(run.created))
        values = [run.title, run.engine, when, run.status]
        values += [_fmt(run.metrics.get(key)) for key in METRIC_COLUMNS.values()]
        values += [_fmt(run.threshold, 4), _fmt(run.min_area, 0)]
        for col, text in enumerate(values):
            item = QTableWidgetItem(text)
            item.setData(RunIdRole, run.id)
            flags = Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEnabled
            if col == 0:
                flags |= Qt.ItemFlag.ItemIsEditable
            if col >= 4:
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            item.setFlags(flags)
            self.table.setItem(row, col, item)
        status = self.table.item(row, 3)
        status.setForeground(QColor(STATUS_COLORS.get(run.status, "#9e9e9e")))
        tip = [f"#{run.id} {run.engine} ({run.task})", f"parameters: {run.params}"]
        if run.metrics.get("error"):
            tip.append(f"error: {run.metrics['error']}")
        if run.metrics.get("threshold_method"):
            tip.append(f"threshold: {run.metrics['threshold_method']}")
        tip += selection_lines(run.metrics.get("selection"))
        tip += [f"warning: {e['warning']}" for e in run.log if e.get("warning")]
        for col in range(len(COLUMNS)):
            self.table.item(row, col).setToolTip("\n".join(tip))

    # -- selection ------------------------------------------------------------------------------------
    def selected_run(self) -> int | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        item = self.table.item(rows[0].row(), 0)
        return int(item.data(RunIdRole)) if item is not None else None

    def row_of(self, run_id: int) -> int | None:
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            if item is not None and item.data(RunIdRole) == run_id:
                return row
        return None

    def _select_run(self, run_id: int | None) -> None:
        row = self.row_of(run_id) if run_id is not None else None
        self.table.blockSignals(True)
        try:
            if row is None:
                self.table.clearSelection()
            else:
                self.table.selectRow(row)
        finally:
            self.table.blockSignals(False)
        self._update_buttons()

    def _on_selection(self) -> None:
        if self._filling:
            return
        run_id = self.selected_run()
        if run_id is not None:
            self.state.set_current_run(run_id)
        self._update_buttons()

    def _update_buttons(self) -> None:
        run_id = self.selected_run()
        project = self.state.project
        self.rename_button.setEnabled(run_id is not None)
        self.delete_button.setEnabled(run_id is not None)
        self.export_button.setEnabled(run_id is not None and project is not None and run_exportable(project.run(run_id)))

    def export_selected(self) -> Any:
        """Export the selected run's model (asks for the file; the export runs in a worker)."""
        run_id = self.selected_run()
        if run_id is None or self.state.project is None:
            return None
        return export_dialog(self, self.state.project, self.state.project.run(run_id))

    # -- rename / delete ---------------------------------------------------------------------------------
    def _start_rename(self) -> None:
        run_id = self.selected_run()
        row = self.row_of(run_id) if run_id is not None else None
        if row is not None:
            self.table.editItem(self.table.item(row, 0))

    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        if self._filling or item.column() != 0 or self.state.project is None:
            return
        run_id = int(item.data(RunIdRole))
        run = self.state.project.run(run_id)
        if item.text().strip() != run.title:
            rename_run(self.state.project, run_id, item.text())

    def delete_selected(self, confirm: bool = True) -> bool:
        run_id = self.selected_run()
        project = self.state.project
        if run_id is None or project is None:
            return False
        run = project.run(run_id)
        if run.status in ("running", "scoring"):
            self.state.message.emit(f"Run #{run_id} is still running; cancel it first")
            return False
        if confirm:
            answer = QMessageBox.question(self, "Delete run",
                                          f"Delete run “{run.title}”, its model and its cached scores?")
            if answer != QMessageBox.StandardButton.Yes:
                return False
        if self.state.current_run == run_id:
            self.state.set_current_run(None)
        project.delete_run(run_id)
        self.state.message.emit(f"Run #{run_id} deleted")
        return True


def selection_lines(selection: Any) -> list[str]:
    """Tooltip lines of a setting chosen per fit by validation (novelty engines: crop, colour, scorer): the
    choice, why, and each candidate's validation AUROC (best first)."""
    if not isinstance(selection, dict) or not selection.get("chosen"):
        return []
    lines = [f"setting chosen: {selection['chosen']} ({selection.get('reason', '')})"]
    cands = selection.get("candidates") or {}
    ranked = sorted(cands.items(), key=lambda kv: -(kv[1].get("auroc") if kv[1].get("auroc") is not None else -1.0))
    lines += [f"  validation {name}: {_fmt(v.get('auroc'))} over {v.get('folds', 0)} fold(s)" for name, v in ranked]
    return lines
