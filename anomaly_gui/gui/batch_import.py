"""File ▸ Import batch results…: load an `anomaly-gui score` output folder into the project as a run.

The import runs in a worker (a job of hundreds of thousands of rows takes a while); when it ends the new run
becomes the current one, so the review panel shows the batch verdicts with its sliders, histogram and
galleries. Unreadable inputs listed in the job's errors shard are reported in one message.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from anomaly_gui.gui.state import AppState
from anomaly_gui.gui.workers import Job, JobBusyError, start_job

log = logging.getLogger(__name__)
KIND = "import batch results"
MAX_LISTED = 8


def _import_job(ctx: Any, project: Any, folder: str) -> Any:
    from anomaly_gui.batch.importer import import_results

    return import_results(project, folder, progress=ctx.progress)


class BatchImporter:
    """Starts the import worker and makes its run current when it is done."""

    def __init__(self, state: AppState, parent: QWidget):
        self.state = state
        self.parent = parent
        self.job: Job | None = None
        self.last_message: QMessageBox | None = None

    def choose(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.parent, "Import batch results (an anomaly-gui score output folder)")
        if folder:
            self.start(folder)

    def start(self, folder: str | Path) -> bool:
        folder = Path(folder)
        if self.state.project is None:
            self._warn("Import batch results", "Open or create a project first: the batch run is added to it.")
            return False
        if not (folder / "job.json").is_file():
            self._warn("Import batch results", f"{folder}: not a batch output folder (no job.json); "
                                               "choose the --out folder of `anomaly-gui score`")
            return False
        try:
            self.job = start_job(_import_job, self.state.project, str(folder), title="Import batch results", kind=KIND)
        except JobBusyError as exc:
            self.state.message.emit(str(exc))
            return False
        self.job.progress.connect(lambda d, t, m: self.state.message.emit(f"{m}: {d}/{t}"))
        self.job.result.connect(self._done)
        self.job.failed.connect(lambda msg: self._warn("Import batch results", msg))
        self.state.message.emit(f"Importing batch results from {folder}…")
        return True

    def _done(self, imported: Any) -> None:
        self.state.runsChanged.emit()
        self.state.itemsChanged.emit()
        self.state.set_current_run(int(imported.run_id))
        maps = "" if imported.with_maps else " (no score maps: the sliders move over image scores only)"
        self.state.message.emit(f"Imported batch run {imported.run_id}: {imported.n_items} items, "
                                f"{imported.n_new_items} new, {imported.n_errors} unreadable{maps}")
        if imported.problems:
            shown = "\n".join(imported.problems[:MAX_LISTED])
            more = len(imported.problems) - MAX_LISTED
            self._warn("Batch results imported with problems",
                       shown + (f"\n… and {more} more (see the job's errors/ folder)" if more > 0 else ""))

    def _warn(self, title: str, text: str) -> None:
        log.warning("%s: %s", title, text)
        box = QMessageBox(QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.Ok, self.parent)
        box.open()  # not modal-blocking: the window stays live
        self.last_message = box
