"""Runs ▸ Export model…: a run's fitted model as ONNX or OpenVINO IR, written in a worker.

The same `engines.deploy.export_model` as `anomaly-gui export-model`; the engine is loaded from the run's
model file in the GUI thread (the project database stays on its thread), the export runs in a worker.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from anomaly_gui.engines.base import get_engine
from anomaly_gui.gui.workers import Job, start_job

FILTERS = {"ONNX (*.onnx)": "onnx", "OpenVINO IR (*.xml)": "openvino"}


def run_exportable(run: Any) -> bool:
    """True when `run` finished and its engine can be exported (it has an `export_module`)."""
    if run is None or getattr(run, "status", "") != "done":
        return False
    try:
        return callable(getattr(get_engine(run.engine), "export_module", None))
    except Exception:  # an engine no longer registered
        return False


def export_run_model(project: Any, run_id: int, out: str | Path, fmt: str,
                     on_done: Callable[[Path], None], on_error: Callable[[str], None]) -> Job | None:
    """Start the export of run `run_id` to `out`; `on_done(path)` or `on_error(message)` follow."""
    from anomaly_gui.engines.deploy import export_model
    from anomaly_gui.pipeline import load_run_engine

    try:
        engine = load_run_engine(project, run_id, device="cpu")
        run = project.run(run_id)
    except Exception as exc:
        on_error(str(exc))
        return None
    decision = {"threshold": run.threshold, "min_area": run.min_area}  # the exported file decides as the run

    def work(ctx: Any) -> Path:
        return export_model(engine, out, fmt, decision)

    job = start_job(work, title=f"Export model of run #{run_id}", kind="export-model")
    job.result.connect(lambda path: on_done(Path(path)))
    job.failed.connect(lambda msg: on_error(str(msg)))
    return job


def export_dialog(parent: QWidget, project: Any, run: Any) -> Job | None:
    """Ask where to write the model of `run`, then export it (a message box tells how it ended)."""
    if not run_exportable(run):
        QMessageBox.information(parent, "Export model",
                                f"The model of run #{getattr(run, 'id', '?')} ({getattr(run, 'engine', '?')}) cannot be "
                                "exported: only finished runs of exportable engines (PatchCore, CNN self-similarity, "
                                "autoencoder) can.")
        return None
    default = str(Path(project.path).parent / f"run{run.id}_{run.engine}.onnx")
    path, chosen = QFileDialog.getSaveFileName(parent, "Export model", default, ";;".join(FILTERS))
    if not path:
        return None
    fmt = FILTERS.get(chosen) or ("openvino" if path.lower().endswith(".xml") else "onnx")

    def done(p: Path) -> None:
        QMessageBox.information(parent, "Export model", f"Run #{run.id} exported as {fmt}:\n{p}")

    def failed(msg: str) -> None:
        QMessageBox.warning(parent, "Export model", f"Could not export run #{run.id} to {path}:\n{msg}")

    return export_run_model(project, run.id, path, fmt, done, failed)
