"""Export dialog (annotations, scores and verdicts, reports) and the File / Tools actions around it.

`install_export_actions(window)` adds File ▸ Save (Ctrl+S), Export… (Ctrl+E), Export report…
(Ctrl+Shift+E) and Tools ▸ Retrain on corrections… (Ctrl+Shift+R). Exports run in a worker
(`start_job`); an existing target is replaced only after the user agreed; errors (unwritable place,
bad data) are shown with the file they concern. A finished report opens in the system viewer.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QAction, QDesktopServices, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from anomaly_gui.core.errors import AnomalyGuiError
from anomaly_gui.core.export import (
    TABLE_FORMATS,
    annotation_formats,
    export_annotations,
    export_scores,
)
from anomaly_gui.core.export.common import ExportExistsError, check_target
from anomaly_gui.core.report import REPORT_FORMATS, make_report
from anomaly_gui.engines.base import RunContext
from anomaly_gui.gui.workers import Job, JobBusyError, start_job

log = logging.getLogger(__name__)
JOB_KIND = "export"


def _export_job(ctx: RunContext, project: Any, kind: str, fmt: str, out: Path, opts: dict[str, Any]) -> Any:
    ctx.progress(0, 1, f"exporting {fmt}")
    if kind == "annotations":
        return export_annotations(project, fmt, out, overwrite=True, split=opts.get("split"),
                                  only_annotated=opts.get("only_annotated", False), include_model=opts.get("include_model", False))
    if kind == "table":
        return export_scores(project, out, fmt, run_id=opts.get("run_id"), threshold=opts.get("threshold"),
                             min_area=opts.get("min_area"), overwrite=True)
    return make_report(project, out, fmt, run_id=opts.get("run_id"), threshold=opts.get("threshold"),
                       min_area=opts.get("min_area"), n_gallery=opts.get("n_gallery", 8), overwrite=True,
                       progress=ctx.progress)


class ExportDialog(QDialog):
    """Choose what to export, where, and how; runs the export in a worker."""

    def __init__(self, state: Any, parent: QWidget | None = None, preset: str | None = None):
        super().__init__(parent)
        self.state = state
        self.setWindowTitle("Export")
        self.job: Job | None = None
        self.result: Any = None
        self.last_error = ""
        self.what = QComboBox()
        for fmt, title in annotation_formats().items():
            self.what.addItem(f"Annotations: {title}", ("annotations", fmt))
        for fmt, title in TABLE_FORMATS.items():
            self.what.addItem(title, ("table", fmt))
        for fmt, title in REPORT_FORMATS.items():
            self.what.addItem(title, ("report", fmt))
        self.path_edit = QLineEdit()
        self.path_edit.setMinimumWidth(380)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self.browse)
        prow = QHBoxLayout()
        prow.addWidget(self.path_edit, 1)
        prow.addWidget(browse)
        self.split_combo = QComboBox()
        self.only_annotated = QCheckBox("Only items with shapes")
        self.include_model = QCheckBox("Include unreviewed model output")
        self.run_combo = QComboBox()
        self.threshold_edit = QLineEdit()
        self.threshold_edit.setPlaceholderText("the run's")
        self.min_area_edit = QLineEdit()
        self.min_area_edit.setPlaceholderText("the run's")
        self.gallery_spin = QSpinBox()
        self.gallery_spin.setRange(0, 64)
        self.gallery_spin.setValue(8)
        self.open_after = QCheckBox("Open when done")
        self.open_after.setChecked(True)
        form = QFormLayout()
        form.addRow("Export", self.what)
        form.addRow("To", prow)
        form.addRow("Split", self.split_combo)
        form.addRow("", self.only_annotated)
        form.addRow("", self.include_model)
        form.addRow("Run", self.run_combo)
        form.addRow("Threshold", self.threshold_edit)
        form.addRow("Minimum area (px)", self.min_area_edit)
        form.addRow("Gallery size", self.gallery_spin)
        form.addRow("", self.open_after)
        self.form = form
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.export_button = self.buttons.addButton("Export", QDialogButtonBox.ButtonRole.AcceptRole)
        self.export_button.setDefault(True)
        self.export_button.clicked.connect(self.start)
        self.buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.status)
        lay.addWidget(self.progress)
        lay.addWidget(self.buttons)
        self._fill_from_project()
        self.what.currentIndexChanged.connect(self._on_what)
        if preset is not None:
            for k in range(self.what.count()):
                if tuple(self.what.itemData(k)) == tuple(preset.split(":")):
                    self.what.setCurrentIndex(k)
        self._on_what()
        self.resize(620, 0)

    def _fill_from_project(self) -> None:
        p = self.state.project
        self.split_combo.addItem("all items", None)
        self.run_combo.addItem("latest with scores", None)
        if p is None:
            return
        for split in p.splits():
            if split:
                self.split_combo.addItem(split, split)
        for run in reversed(p.runs()):
            self.run_combo.addItem(run.title, run.id)
        if self.state.current_run is not None:
            k = self.run_combo.findData(self.state.current_run)
            if k >= 0:
                self.run_combo.setCurrentIndex(k)

    def kind_format(self) -> tuple[str, str]:
        kind, fmt = self.what.currentData()
        return str(kind), str(fmt)

    def _on_what(self, *_: Any) -> None:
        kind, fmt = self.kind_format()
        for w in (self.split_combo, self.only_annotated, self.include_model):
            self.form.setRowVisible(w, kind == "annotations")
        for w in (self.run_combo, self.threshold_edit, self.min_area_edit):
            self.form.setRowVisible(w, kind != "annotations")
        self.form.setRowVisible(self.gallery_spin, kind == "report")
        self.form.setRowVisible(self.open_after, kind == "report")
        p = self.state.project
        base = Path(p.path).parent if p is not None else Path.home()
        stem = Path(p.path).stem if p is not None else "export"
        current = self.path_edit.text().strip()
        if not current or getattr(self, "_auto_path", "") == current:
            suggestion = str(base / (f"{stem}_{fmt}" if kind == "annotations" else f"{stem}_{'report' if kind == 'report' else 'scores'}.{fmt}"))
            self.path_edit.setText(suggestion)
            self._auto_path = suggestion

    def browse(self) -> None:
        kind, fmt = self.kind_format()
        if kind == "annotations":
            path = QFileDialog.getExistingDirectory(self, "Export into folder", str(Path(self.path_edit.text()).parent))
            if path:
                path = str(Path(path) / Path(self.path_edit.text()).name)
        else:
            path, _ = QFileDialog.getSaveFileName(self, "Export to file", self.path_edit.text(), f"{fmt.upper()} (*.{fmt})")
        if path:
            self.path_edit.setText(path)

    def options(self) -> dict[str, Any]:
        def num(edit: QLineEdit) -> float | None:
            text = edit.text().strip()
            if not text:
                return None
            try:
                return float(text)
            except ValueError as exc:
                raise ValueError(f"'{text}' is not a number") from exc

        return {"split": self.split_combo.currentData(), "only_annotated": self.only_annotated.isChecked(),
                "include_model": self.include_model.isChecked(), "run_id": self.run_combo.currentData(),
                "threshold": num(self.threshold_edit), "min_area": num(self.min_area_edit),
                "n_gallery": self.gallery_spin.value()}

    def start(self, confirm_overwrite: bool | None = None) -> bool:
        """Check the target (asking before replacing), then export in a worker. Returns whether it started."""
        project = self.state.project
        if project is None:
            self._fail("Open a project first.")
            return False
        kind, fmt = self.kind_format()
        text = self.path_edit.text().strip()
        if not text:
            self._fail("Choose where to export to.")
            return False
        out = Path(text).expanduser()
        if kind != "annotations" and not out.suffix:
            out = out.with_suffix(f".{fmt}")
        try:
            opts = self.options()
            check_target(out, overwrite=False)
        except ExportExistsError:
            if confirm_overwrite is None:
                answer = QMessageBox.question(self, "Replace?", f"{out} already exists. Replace it?",
                                              QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                              QMessageBox.StandardButton.No)
                confirm_overwrite = answer == QMessageBox.StandardButton.Yes
            if not confirm_overwrite:
                self._fail(f"{out} exists; not replaced. Choose another name.")
                return False
            try:
                check_target(out, overwrite=True)
            except AnomalyGuiError as exc:
                self._fail(str(exc))
                return False
        except (AnomalyGuiError, ValueError) as exc:
            self._fail(str(exc))
            return False
        try:
            self.job = start_job(_export_job, project, kind, fmt, out, opts, title=f"Export {fmt}", kind=JOB_KIND)
        except JobBusyError as exc:
            self._fail(str(exc))
            return False
        self.job.progress.connect(self._on_progress)
        self.job.result.connect(self._on_result)
        self.job.failed.connect(self._fail)
        self.job.finished.connect(lambda: self.export_button.setEnabled(True))
        self.export_button.setEnabled(False)
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)
        self.status.setText(f"Exporting to {out} …")
        return True

    def _on_progress(self, done: int, total: int, msg: str) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        self.progress.setFormat(msg)

    def _on_result(self, result: Any) -> None:
        self.result = result
        self.progress.setVisible(False)
        notes = f" {len(result.notes)} note(s): " + "; ".join(result.notes[:3]) if result.notes else ""
        self.status.setText(f"Done: {result.summary()}.{notes}")
        self.state.message.emit(f"Exported {result.path}")
        if self.kind_format()[0] == "report" and self.open_after.isChecked():
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(result.path)))

    def _fail(self, message: str) -> None:
        self.last_error = message
        self.progress.setVisible(False)
        self.status.setText(f"<span style='color:#c62828'>{message}</span>")
        log.warning("export: %s", message)


# -- actions on the main window -----------------------------------------------------------------------
def _add(window: Any, menu: str, name: str, text: str, key: str | QKeySequence | None, slot: Any) -> QAction:
    act = QAction(text, window)
    act.setObjectName(name)
    if key is not None:
        act.setShortcut(QKeySequence(key))
    act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
    act.triggered.connect(lambda _c=False: slot())
    m = window.menus[menu] if menu in window.menus else window.menu(menu)
    m.addAction(act)
    window.addAction(act)
    getattr(window, "actions_by_name", {})[name] = act
    return act


def install_export_actions(window: Any) -> None:
    """File ▸ Save / Export… / Export report…, Tools ▸ Retrain on corrections…."""
    def open_dialog(preset: str | None = None) -> None:
        window.export_dialog = ExportDialog(window.state, window, preset)
        window.export_dialog.open()

    def save() -> None:
        p = window.state.project
        if p is None:
            return
        p.checkpoint()
        window.state.message.emit(f"All changes saved in {Path(p.path).name} (every edit is saved as you make it)")

    file_menu = window.menus["File"]
    quit_action = next((a for a in file_menu.actions() if a.shortcut() == QKeySequence(QKeySequence.StandardKey.Quit)), None)
    acts = [
        _add(window, "File", "file.save", "&Save", QKeySequence.StandardKey.Save, save),
        _add(window, "File", "file.export", "&Export…", "Ctrl+E", open_dialog),
        _add(window, "File", "file.export_report", "Export &report…", "Ctrl+Shift+E", lambda: open_dialog("report:html")),
    ]
    if quit_action is not None:  # keep Quit last
        for a in acts:
            file_menu.removeAction(a)
            file_menu.insertAction(quit_action, a)
        file_menu.insertSeparator(quit_action)
    _add(window, "Tools", "tools.retrain_corrections", "Retrain on &corrections…", "Ctrl+Shift+R",
         lambda: retrain_on_corrections(window))


def retrain_on_corrections(window: Any, confirm: bool = True) -> dict[str, Any] | None:
    """Turn the analyst's labels into the next run's split (core.feedback) and start training it."""
    from anomaly_gui.core.feedback import apply_feedback, plan_feedback
    from anomaly_gui.core.report.data import latest_run
    from anomaly_gui.engines.base import get_engine

    state = window.state
    project = state.project
    if project is None:
        return None
    run = project.run(state.current_run) if state.current_run is not None else latest_run(project)
    normal_only = True
    if run is not None:
        try:
            normal_only = "normal_images" in get_engine(run.engine).needs
        except KeyError:
            normal_only = True
    plan = plan_feedback(project, run.id if run else None, normal_only_training=normal_only)
    if not plan.labels:
        state.message.emit("No corrections yet: mark items normal / anomalous or draw defects first")
        return None
    if confirm:
        answer = QMessageBox.question(
            window, "Retrain on corrections",
            f"{plan.summary()}.\n\nThe items you labelled move to the train / validation splits (your labels "
            f"become their ground truth; the dataset's are kept) and a new run"
            f"{' of ' + run.engine if run else ''} starts. Continue?")
        if answer != QMessageBox.StandardButton.Yes:
            return None
    counts = apply_feedback(project, plan)
    state.message.emit(f"Corrections applied: {counts['train']} to train, {counts['val']} to validation")
    panel = getattr(window, "panels", {}).get("train")
    if panel is not None:
        window.docks["train"].raise_()
        try:
            if run is None:
                raise KeyError("no earlier run")
            panel.select_engine(run.engine)
        except KeyError:
            state.message.emit("Corrections applied; choose an engine in the Train panel and press Start")
            return counts
        panel.name_edit.setText(f"{run.engine} on corrections")
        panel.start()
    return counts
