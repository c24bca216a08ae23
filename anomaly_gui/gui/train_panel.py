"""The Train panel: pick an engine that fits the project's items, set its parameters, train in a worker.

Engines are offered per task of the project's items (`engines.base.list_engines(task)`); the parameter form
is built from the engine's `Params` (`gui.param_form`); training runs `pipeline.train_run` through
`gui.workers.start_job` (never on the GUI thread) with progress, time left, Cancel and a live loss curve fed
by the job's `logged` entries. The last parameters used per engine are kept in the project's settings.
"""
from __future__ import annotations

import logging
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QProgressBar, QPushButton,
                               QScrollArea, QSizePolicy, QVBoxLayout, QWidget)

from anomaly_gui.engines.base import Engine, RunContext, Task, list_engines
from anomaly_gui.engines.device import available_devices
from anomaly_gui.gui.engine_availability import install_hint
from anomaly_gui.gui.panels import register_panel
from anomaly_gui.gui.param_form import ParamForm
from anomaly_gui.gui.state import AppState
from anomaly_gui.gui.workers import Job, JobBusyError, start_job
from anomaly_gui.pipeline import TASK_KINDS, policy_for, run_summary, train_run

SUMMARY_NAMES = {"image_auroc": "image AUROC", "pixel_auroc": "pixel AUROC", "aupro": "AUPRO", "f1_max": "F1-max",
                 "map50": "mAP@0.5", "frame_auc": "frame AUC", "novelty_auroc": "novelty AUROC"}

log = logging.getLogger(__name__)

JOB_KIND = "train"
CURVE_COLORS = ("#ff9f1c", "#2ec4b6", "#e71d36", "#a06cd5", "#8ac926", "#1982c4")


def project_tasks(project: Any) -> list[Task]:
    """Tasks whose item kinds the project holds (all tasks when it holds nothing yet)."""
    if project is None:
        return list(Task)
    kinds = project.item_kinds()
    tasks = [t for t in Task if set(TASK_KINDS.get(t.value, ())) & kinds]
    return tasks or list(Task)


def unmet_needs(project: Any, engine_cls: type[Engine]) -> str:
    """Why the project cannot train this engine yet ('' when it can): the engine's `needs` checked on the data."""
    if project is None:
        return ""
    checks = {
        "normal_images": (project.has_normal_training_items, "no normal training items (split 'train')"),
        "frames": (lambda: bool({"frame", "video"} & project.item_kinds()), "no video frames"),
        "boxes": (lambda: project.has_annotations(kind="box"), "no box annotations"),
        "classes": (lambda: project.has_annotations(labelled=True), "no labelled annotations"),
        "species": (lambda: project.has_item_labels() or project.has_annotations(labelled=True),
                    "no species: label the photos (species folders, file names) or their boxes"),
    }
    missing = [checks[n][1] for n in sorted(engine_cls.needs) if n in checks and not checks[n][0]()]
    return "; ".join(missing)


def _train_job(ctx: RunContext, project: Any, engine: str, params: dict[str, Any], device: str, name: str) -> int:
    """Worker body: the original 10 % test / 20 % validation split first when no item has a split."""
    from anomaly_gui.core.splits import SPLITS, apply_original_split

    if not any(it.split in SPLITS for it in project.items()):
        counts = apply_original_split(project)
        ctx.log({"message": f"original split applied: {counts}"})
    return train_run(project, engine, params, device=device, ctx=ctx, name=name)


class LossCurve(pg.PlotWidget):
    """Live curves of every numeric key of the training log (x: epoch, or the entry's index)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent, background="#1e1e22")
        self.setMinimumHeight(140)
        self.showGrid(x=True, y=True, alpha=0.25)
        self.setLabel("bottom", "epoch")
        self.setTitle("Training log (live)", color="#dddddd", size="9pt")
        self.addLegend(offset=(-6, 6), labelTextSize="8pt")
        self.entries: list[dict[str, Any]] = []
        self.curves: dict[str, pg.PlotDataItem] = {}

    def clear_curves(self) -> None:
        self.entries = []
        for c in self.curves.values():
            self.removeItem(c)
            legend = self.getPlotItem().legend
            if legend is not None:
                legend.removeItem(c)
        self.curves = {}

    def add_entry(self, entry: dict[str, Any]) -> None:
        self.entries.append(entry)
        for key, val in entry.items():
            if key in ("epoch", "step", "time") or isinstance(val, bool) or not isinstance(val, (int, float)):
                continue
            if key not in self.curves:
                color = CURVE_COLORS[len(self.curves) % len(CURVE_COLORS)]
                self.curves[key] = self.plot([], [], pen=pg.mkPen(color, width=2), symbol="o", symbolSize=5,
                                             symbolBrush=color, name=key)
            xs, ys = [], []
            for k, e in enumerate(self.entries):
                if isinstance(e.get(key), (int, float)):
                    xs.append(float(e.get("epoch", e.get("step", k + 1))))
                    ys.append(float(e[key]))
            self.curves[key].setData(xs, ys)

    def set_entries(self, entries: list[dict[str, Any]]) -> None:
        self.clear_curves()
        for e in entries:
            self.add_entry(e)


@register_panel
class TrainPanel(QWidget):
    """Engine picker, parameter form, device, Start / Cancel, progress with time left, loss curve."""

    panel_id = "train"
    title = "Train"
    area = "right"
    order = 20

    runFinished = Signal(int)  # run id

    def __init__(self, state: AppState, window: Any = None):
        super().__init__()
        self.setMinimumWidth(340)
        self.state = state
        self.window_ = window
        self.job: Job | None = None
        self.last_run: int | None = None
        self.last_error = ""

        self.engine_combo = QComboBox()
        self.engine_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.engine_combo.setMinimumContentsLength(14)
        self.engine_desc = QLabel()
        self.engine_desc.setWordWrap(True)
        self.engine_desc.setStyleSheet("color: #8a8a8a;")
        self.device_combo = QComboBox()
        self.device_combo.addItems(available_devices())
        self.device_combo.setToolTip("auto: the GPU when there is one, else the CPU")
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("optional run name")
        self.form = ParamForm()
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.form)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setMinimumHeight(120)
        self.reset_button = QPushButton("Defaults")
        self.reset_button.setToolTip("Reset the parameters to the engine's defaults")
        self.from_run_button = QPushButton("From run")
        self.from_run_button.setToolTip("Take the engine and parameters of the run selected in Runs")
        self.from_run_button.setEnabled(False)
        self.start_button = QPushButton("Start")
        self.start_button.setToolTip("Train the engine on the project's training items, then score and measure")
        self.start_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setTextVisible(True)
        self.progress.setFormat("idle")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.curve = LossCurve()

        top = QFormLayout()
        top.addRow("Engine", self.engine_combo)
        top.addRow("", self.engine_desc)
        top.addRow("Device", self.device_combo)
        top.addRow("Name", self.name_edit)
        buttons = QHBoxLayout()
        buttons.addWidget(self.reset_button)
        buttons.addWidget(self.from_run_button)
        buttons.addStretch(1)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.start_button)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(scroll, 4)
        lay.addLayout(buttons)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addWidget(self.curve, 3)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)

        self.engine_combo.currentIndexChanged.connect(self._on_engine)
        self.reset_button.clicked.connect(self.form.reset_defaults)
        self.from_run_button.clicked.connect(self.use_current_run)
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        state.projectChanged.connect(self.refresh_engines)
        state.itemsChanged.connect(self.refresh_engines)
        state.currentRunChanged.connect(self.show_run_log)
        self.refresh_engines()

    # -- engines -----------------------------------------------------------------------------------
    def refresh_engines(self, *_: Any) -> None:
        current = self.engine_name()
        tasks = project_tasks(self.state.project)
        self.engine_combo.blockSignals(True)
        self.engine_combo.clear()
        model = self.engine_combo.model()
        for task in tasks:
            for cls in list_engines(task):
                label = cls.title or cls.name
                self.engine_combo.addItem(f"{label}  [{task.value}]" if len(tasks) > 1 else label, cls.name)
                why = install_hint(cls) or unmet_needs(self.state.project, cls)
                row = self.engine_combo.count() - 1
                if why:  # shown but not selectable, with the reason
                    model.item(row).setEnabled(False)
                    self.engine_combo.setItemData(row, f"Not available: {why}", Qt.ItemDataRole.ToolTipRole)
                else:
                    self.engine_combo.setItemData(row, (cls.description or cls.title or cls.name), Qt.ItemDataRole.ToolTipRole)
        if current is None or self.engine_combo.findData(current) < 0 or not model.item(self.engine_combo.findData(current)).isEnabled():
            usable = [k for k in range(self.engine_combo.count()) if model.item(k).isEnabled()]
            current = self.engine_combo.itemData(usable[0]) if usable else current
        k = self.engine_combo.findData(current) if current else -1
        self.engine_combo.setCurrentIndex(max(k, 0) if self.engine_combo.count() else -1)
        self.engine_combo.blockSignals(False)
        self._on_engine()

    def engine_name(self) -> str | None:
        data = self.engine_combo.currentData()
        return str(data) if data else None

    def engine_class(self) -> type[Engine] | None:
        name = self.engine_name()
        return next((c for c in list_engines() if c.name == name), None) if name else None

    def select_engine(self, name: str) -> None:
        k = self.engine_combo.findData(name)
        if k < 0:
            raise KeyError(f"engine {name!r} is not offered for this project")
        self.engine_combo.setCurrentIndex(k)

    def _on_engine(self, *_: Any) -> None:
        cls = self.engine_class()
        saved = {}
        if cls is not None and self.state.project is not None:
            saved = self.state.project.setting(f"train.params.{cls.name}", {}) or {}
        self.form.set_params_class(cls.Params if cls else None, saved)
        desc = (cls.description or cls.__doc__ or "").strip().split("\n")[0] if cls else "No engine fits this project."
        needs = f"  Needs: {', '.join(sorted(cls.needs))}." if cls is not None and cls.needs else ""
        self.engine_desc.setText(desc + needs)
        self.start_button.setEnabled(cls is not None and self.job is None)

    # -- training ----------------------------------------------------------------------------------
    def start(self) -> None:
        project, cls = self.state.project, self.engine_class()
        if project is None:
            self._set_status("Open or create a project first.", error=True)
            return
        if cls is None:
            self._set_status("No engine selected.", error=True)
            return
        why = install_hint(cls) or unmet_needs(project, cls)
        if why:
            self._set_status(f"{cls.title or cls.name} cannot be trained on this project: {why}.", error=True)
            return
        try:
            params = self.form.values()
        except ValueError as exc:
            self._set_status(str(exc), error=True)
            return
        project.set_setting(f"train.params.{cls.name}", params)
        try:
            job = start_job(_train_job, project, cls.name, params, self.device_combo.currentText(),
                            self.name_edit.text().strip(), title=f"Train {cls.name}", kind=JOB_KIND)
        except JobBusyError as exc:
            self._set_status(str(exc), error=True)
            return
        self.job = job
        self.last_error = ""
        self.curve.clear_curves()
        job.progress.connect(self._on_progress)
        job.logged.connect(self.curve.add_entry)
        job.result.connect(self._on_result)
        job.failed.connect(self._on_failed)
        job.cancelled.connect(self._on_cancelled)
        job.finished.connect(self._on_finished)
        self.start_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setRange(0, 0)
        self.progress.setFormat("starting …")
        self._set_status(f"Training {cls.title or cls.name} …")
        self.state.message.emit(f"Training {cls.name} started")

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.cancel_button.setEnabled(False)
            self._set_status("Cancelling after the current batch …")

    def is_running(self) -> bool:
        return self.job is not None

    def _on_progress(self, done: int, total: int, msg: str) -> None:
        if total > 0:
            self.progress.setRange(0, total)
            self.progress.setValue(min(done, total))
        self.progress.setFormat(f"%p%  {msg}" if msg else "%p%")

    def _on_result(self, run_id: int) -> None:
        self.last_run = int(run_id)
        project = self.state.project
        summary = ""
        if project is not None:
            run = project.run(run_id)
            figures = {k: v for k, v in run_summary(run).items() if k != "threshold" and isinstance(v, float)}
            if {"frame_auc", "novelty_auroc"} & set(figures):
                figures.pop("image_auroc", None)  # the same number under the task's own name
            summary = "".join(f" — {SUMMARY_NAMES.get(k, k)} {v:.3f}" for k, v in list(figures.items())[:2])
            self._raise_dock(policy_for(run.task).review_dock)
            warnings = [e["warning"] for e in run.log if e.get("warning")]
            if warnings:
                summary += " — " + "; ".join(warnings)
        self._set_status(f"Run #{run_id} done{summary}.")
        self.state.message.emit(f"Run #{run_id} done{summary}")
        self.state.runsChanged.emit()
        self.state.scoresChanged.emit(int(run_id))
        self.state.set_current_run(int(run_id))
        self.runFinished.emit(int(run_id))

    def _raise_dock(self, panel_id: str) -> None:
        """Bring the dock that shows runs of this task to the front (Review, Detection, Cluster view, video)."""
        dock = getattr(self.window_, "docks", {}).get(panel_id)
        if dock is not None:
            dock.show()
            dock.raise_()

    def _on_failed(self, message: str) -> None:
        self.last_error = message
        self._set_status(f"Training failed: {message}", error=True)
        self.state.message.emit(f"Training failed: {message}")

    def _on_cancelled(self) -> None:
        self._set_status("Training cancelled; the run is kept as cancelled.")
        self.state.message.emit("Training cancelled")

    def _on_finished(self) -> None:
        self.job = None
        self.progress.setRange(0, 1)
        self.progress.setValue(0 if self.last_error else 1)
        self.progress.setFormat("idle" if self.last_error else "done")
        self.cancel_button.setEnabled(False)
        self.start_button.setEnabled(self.engine_class() is not None)
        self.state.runsChanged.emit()

    def _set_status(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("color: #ff6b6b;" if error else "")

    def show_run_log(self, run_id: int | None) -> None:
        """Show a finished run's curves (used by the runs list)."""
        self.from_run_button.setEnabled(run_id is not None)
        if self.job is None and run_id is not None and self.state.project is not None:
            try:
                self.curve.set_entries(self.state.project.run(run_id).log)
            except KeyError:
                self.from_run_button.setEnabled(False)

    def use_current_run(self) -> None:
        """Engine and parameters of the current run into the form (to train a variation of it)."""
        project, run_id = self.state.project, self.state.current_run
        if project is None or run_id is None:
            return
        run = project.run(run_id)
        try:
            self.select_engine(run.engine)
        except KeyError as exc:
            self._set_status(str(exc).strip("'\""), error=True)
            return
        self.form.set_values(run.params)
        self._set_status(f"Parameters of run “{run.title}”.")
