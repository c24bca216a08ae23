"""Import a dataset in a worker with a progress dialog (progress, time left, Cancel) and a problem list.

`ImportRunner(state, parent).start(path)` runs `core.importer.import_into_project` through
`gui.workers.start_job` (kind "import"). Signals: `finished(ImportResult | None)` (None when it failed
or was cancelled). Per-file problems are shown at the end in `ProblemsDialog`; a failure (no known
layout, unreadable folder) is shown in a message box and logged. Nothing is added to the project
when the import is cancelled or fails: items are written in one transaction at the end.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import shiboken6
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QDialog, QDialogButtonBox, QLabel, QMessageBox, QPlainTextEdit, QProgressDialog, QVBoxLayout, QWidget,
)

from anomaly_gui.core.formats.base import ImportResult
from anomaly_gui.core.importer import import_into_project
from anomaly_gui.core.project import Project
from anomaly_gui.engines.base import RunContext
from anomaly_gui.gui.state import AppState
from anomaly_gui.gui.workers import Job, start_job

log = logging.getLogger(__name__)


def run_import(ctx: RunContext, project: Project, path: Path) -> ImportResult:
    """Worker body: import with progress; the cancel flag is checked at every progress step."""

    def progress(done: int, total: int, msg: str) -> None:
        ctx.progress(done, total, msg)
        ctx.check()

    ctx.progress(0, 0, f"reading {path.name}…")
    ctx.check()
    result = import_into_project(project, path, progress=progress)
    ctx.progress(1, 1, "done")
    return result


class ProblemsDialog(QDialog):
    """Lists the files an import could not read, with a Copy button."""

    def __init__(self, result: ImportResult, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Import: files with problems")
        self.resize(760, 380)
        n = len(result.problems)
        head = QLabel(
            f"{result.summary()}\n{n} file(s) could not be used; the rest were imported:"
        )
        head.setWordWrap(True)
        self.text = QPlainTextEdit("\n".join(str(p) for p in result.problems))
        self.text.setReadOnly(True)
        self.text.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        copy = buttons.addButton("Copy", QDialogButtonBox.ButtonRole.ActionRole)
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.text.toPlainText()))
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(head)
        layout.addWidget(self.text, 1)
        layout.addWidget(buttons)


class ImportRunner(QObject):
    """One import at a time, with its dialogs. Keeps the last dialogs for tests (`progress_dialog`, ...)."""

    finished = Signal(object)  # ImportResult | None

    def __init__(self, state: AppState, parent: QWidget):
        super().__init__(parent)
        self.state = state
        self.parent_widget = parent
        self.job: Job | None = None
        self.path: Path | None = None
        self.progress_dialog: QProgressDialog | None = None
        self.problems_dialog: ProblemsDialog | None = None
        self.error_dialog: QMessageBox | None = None
        self.last_result: ImportResult | None = None
        self.last_error: str = ""

    def busy(self) -> bool:
        return self.job is not None and self.job.running

    def start(self, path: str | Path) -> Job:
        """Start importing `path` into the open project (the caller makes sure one is open)."""
        project = self.state.project
        if project is None:
            raise RuntimeError("open or create a project before importing")
        self.path = Path(path).resolve()
        self.last_result, self.last_error = None, ""
        job = start_job(run_import, project, self.path, title=f"Import {self.path.name}", kind="import")
        self.job = job
        dlg = QProgressDialog(f"Importing {self.path}…", "Cancel", 0, 0, self.parent_widget)
        dlg.setWindowTitle("Import dataset")
        # not modal: a modal QProgressDialog runs the event loop inside setValue, and the result arriving
        # there would delete the dialog under its own feet
        dlg.setWindowModality(Qt.WindowModality.NonModal)
        dlg.setMinimumDuration(300)
        dlg.setMinimumWidth(480)
        dlg.setAutoClose(False)
        dlg.setAutoReset(False)
        dlg.canceled.connect(job.cancel)
        self.progress_dialog = dlg
        job.progress.connect(self._on_progress)
        job.result.connect(self._on_result)
        job.failed.connect(self._on_failed)
        job.cancelled.connect(self._on_cancelled)
        self.state.message.emit(f"Importing {self.path} …")
        return job

    def _on_progress(self, done: int, total: int, msg: str) -> None:
        dlg = self.progress_dialog
        if dlg is None or not shiboken6.isValid(dlg):
            return
        dlg.setMaximum(max(0, total))
        dlg.setValue(min(done, total) if total > 0 else 0)
        dlg.setLabelText(f"Importing {self.path.name if self.path else ''}\n{msg}")

    def _close_progress(self) -> None:
        if self.progress_dialog is not None and shiboken6.isValid(self.progress_dialog):
            self.progress_dialog.canceled.disconnect()
            self.progress_dialog.close()
            self.progress_dialog.deleteLater()
        self.progress_dialog = None

    def _on_result(self, result: ImportResult) -> None:
        self._close_progress()
        self.last_result = result
        self.state.message.emit(f"Imported {self.path}: {result.summary()}")
        if result.problems:
            for p in result.problems:
                log.warning("import: %s", p)
            self.problems_dialog = ProblemsDialog(result, self.parent_widget)
            # a report beside the window: A / D keep working in the main window
            self.problems_dialog.setAttribute(Qt.WidgetAttribute.WA_ShowWithoutActivating)
            self.problems_dialog.show()
        self.finished.emit(result)

    def _on_failed(self, error: str) -> None:
        self._close_progress()
        self.last_error = error
        log.error("import of %s failed: %s", self.path, error)
        box = QMessageBox(QMessageBox.Icon.Warning, "Import failed", f"Could not import {self.path}",
                          QMessageBox.StandardButton.Ok, self.parent_widget)
        box.setInformativeText(error)
        box.open()  # not modal-blocking: the app goes on
        self.error_dialog = box
        self.state.message.emit(f"Import failed: {error}")
        self.finished.emit(None)

    def _on_cancelled(self) -> None:
        self._close_progress()
        self.last_error = "cancelled"
        self.state.message.emit(f"Import of {self.path} cancelled; nothing was added")
        self.finished.emit(None)

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def wait(self, ms: int = 60000) -> Any:
        return self.job.wait(ms) if self.job is not None else True
