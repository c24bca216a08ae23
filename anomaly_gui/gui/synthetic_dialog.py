"""Tools ▸ Make synthetic anomalies…: paste animal crops of the project onto background images
(`core.synthetic.make_synthetic`) in a worker, write them as a labelled data set and, if asked, import it.

Crops come from the boxes of the species ticked in the list; backgrounds are the project's empty images
(items labelled `empty` or without any box), or every image. The output folder holds the images, the
annotation file of the chosen format and `synthetic_pastes.csv` (what was pasted where).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFileDialog, QFormLayout,
                               QHBoxLayout, QLabel, QLineEdit, QListWidget, QListWidgetItem, QProgressBar, QPushButton,
                               QSpinBox, QVBoxLayout, QWidget)

from anomaly_gui.core.crops import CropSpec
from anomaly_gui.core.synthetic import WRITERS, SyntheticConfig, make_synthetic
from anomaly_gui.engines.base import RunContext
from anomaly_gui.gui.workers import JobBusyError, start_job

FORMAT_TITLES = {"coco_camtrap": "COCO Camera Traps", "coco": "COCO", "yolo": "YOLO"}


def _synthetic_job(ctx: RunContext, crops: list[CropSpec], backgrounds: list[str], out: str, cfg: SyntheticConfig) -> Any:
    return make_synthetic(crops, backgrounds, out, cfg, progress=ctx.progress)


class SyntheticDialog(QDialog):
    """See the module docstring. `result` holds (annotation file, items) once written."""

    def __init__(self, window: Any, parent: QWidget | None = None):
        super().__init__(parent or window)
        self.window_ = window
        self.setWindowTitle("Make synthetic anomalies")
        self.job: Any = None
        self.result: Any = None
        self.last_error = ""
        project = window.state.project
        self.items = project.items(with_annotations=True) if project is not None else []
        self.species = QListWidget()
        self.species.setMaximumHeight(140)
        counts: dict[str, int] = {}
        for it in self.items:
            for a in it.annotations:
                if a.kind == "box" and a.source != "model" and a.label:
                    counts[a.label] = counts.get(a.label, 0) + 1
        for name, n in sorted(counts.items()):
            row = QListWidgetItem(f"{name}  ({n} box{'es' if n != 1 else ''})")
            row.setData(Qt.ItemDataRole.UserRole, name)
            row.setFlags(row.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            row.setCheckState(Qt.CheckState.Checked)
            self.species.addItem(row)
        self.backgrounds = QComboBox()
        n_empty = len(self._backgrounds(True))
        self.backgrounds.addItem(f"Empty images of the project ({n_empty})", True)
        self.backgrounds.addItem(f"Every image of the project ({len(self.items)})", False)
        self.backgrounds.setCurrentIndex(0 if n_empty else 1)
        self.n_images = QSpinBox()
        self.n_images.setRange(1, 100000)
        self.n_images.setValue(20)
        self.per_max = QSpinBox()
        self.per_max.setRange(1, 20)
        self.per_max.setValue(2)
        self.per_max.setToolTip("Animals pasted per image: 1 to this many")
        self.scale_max = QDoubleSpinBox()
        self.scale_max.setRange(0.02, 1.0)
        self.scale_max.setSingleStep(0.05)
        self.scale_max.setValue(0.35)
        self.scale_max.setToolTip("Largest pasted width as a fraction of the background width (smallest: a third of it)")
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.fmt = QComboBox()
        for key in WRITERS:
            self.fmt.addItem(FORMAT_TITLES.get(key, key), key)
        default_out = Path(project.path).parent / f"{Path(project.path).stem}-synthetic" if project is not None else Path.home()
        self.out_edit = QLineEdit(str(default_out))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self.browse)
        out_row = QHBoxLayout()
        out_row.addWidget(self.out_edit, 1)
        out_row.addWidget(browse)
        self.import_after = QCheckBox("Import the result into this project (split 'test')")
        self.import_after.setChecked(True)
        form = QFormLayout()
        form.addRow("Paste species", self.species)
        form.addRow("Backgrounds", self.backgrounds)
        form.addRow("Images", self.n_images)
        form.addRow("Animals per image (max)", self.per_max)
        form.addRow("Largest size", self.scale_max)
        form.addRow("Random seed", self.seed)
        form.addRow("Format", self.fmt)
        form.addRow("Write to", out_row)
        form.addRow("", self.import_after)
        self.status = QLabel("" if counts else "The project has no labelled boxes to paste: import camera traps or "
                                               "draw boxes with the Labels panel first.")
        self.status.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.make_button = self.buttons.addButton("Make", QDialogButtonBox.ButtonRole.ActionRole)
        self.make_button.setEnabled(bool(counts))
        self.make_button.clicked.connect(self.start)
        self.buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.status)
        lay.addWidget(self.progress)
        lay.addWidget(self.buttons)
        self.resize(560, 0)

    def _backgrounds(self, empty_only: bool) -> list[str]:
        def empty(it: Any) -> bool:
            return (it.label or "").lower() == "empty" or not any(a.kind == "box" for a in it.annotations)

        return [it.path for it in self.items if it.kind == "image" and (not empty_only or empty(it))]

    def chosen_species(self) -> list[str]:
        return [self.species.item(k).data(Qt.ItemDataRole.UserRole) for k in range(self.species.count())
                if self.species.item(k).checkState() == Qt.CheckState.Checked]

    def crops(self) -> list[CropSpec]:
        chosen = set(self.chosen_species())
        return [CropSpec(it.path, a.box(), a.label, item_id=it.id) for it in self.items for a in it.annotations
                if a.kind == "box" and a.source != "model" and a.label in chosen]

    def browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Write the synthetic images to")
        if path:
            self.out_edit.setText(path)

    def start(self) -> bool:
        crops, backgrounds = self.crops(), self._backgrounds(bool(self.backgrounds.currentData()))
        out = Path(self.out_edit.text().strip()).expanduser()
        if not crops:
            return self._fail("Tick at least one species with boxes to paste.")
        if not backgrounds:
            return self._fail("No background image: choose 'Every image of the project'.")
        if not self.out_edit.text().strip():
            return self._fail("Choose the folder to write to.")
        if out.exists() and any(out.iterdir()):
            return self._fail(f"{out} is not empty: choose a new or empty folder (nothing is overwritten).")
        hi = float(self.scale_max.value())
        cfg = SyntheticConfig(n_images=int(self.n_images.value()), per_image=(1, int(self.per_max.value())),
                              scale=(hi / 3, hi), seed=int(self.seed.value()), fmt=str(self.fmt.currentData()))
        try:
            self.job = start_job(_synthetic_job, crops, backgrounds, str(out), cfg, title="Synthetic anomalies",
                                 kind="synthetic")
        except JobBusyError as exc:
            return self._fail(str(exc))
        self.out = out
        self.make_button.setEnabled(False)
        self.progress.setVisible(True)
        self.progress.setRange(0, cfg.n_images)
        self.job.progress.connect(lambda d, t, m: (self.progress.setRange(0, max(t, 1)), self.progress.setValue(d)))
        self.job.result.connect(self._on_result)
        self.job.failed.connect(self._fail)
        self.job.finished.connect(lambda: self.make_button.setEnabled(True))
        self.status.setText(f"Pasting {len(crops)} crop(s) onto {len(backgrounds)} background(s) …")
        return True

    def _on_result(self, result: Any) -> None:
        self.result = result
        ann_file, items = result
        n_boxes = sum(len(it.annotations) for it in items)
        self.status.setText(f"Wrote {len(items)} image(s) with {n_boxes} pasted animal(s) to {self.out} ({Path(ann_file).name}).")
        self.window_.state.message.emit(self.status.text())
        if self.import_after.isChecked():
            self.window_.importer.finished.connect(self._on_imported)
            self.window_.import_path(self.out)

    def _on_imported(self, result: Any) -> None:
        self.window_.importer.finished.disconnect(self._on_imported)
        project = self.window_.state.project
        if result is None or project is None:
            return
        root = str(self.out.resolve())
        ids = [int(it.id) for it in project.items() if str(Path(it.path).resolve()).startswith(root)]
        project.set_split(ids, "test")  # held-out anomalies: never trained on
        self.status.setText(self.status.text() + f" Imported {len(ids)} image(s) into the project (split 'test').")

    def _fail(self, message: str) -> bool:
        self.last_error = message
        self.status.setText(f"<span style='color:#ff6b6b'>{message}</span>")
        return False


def open_synthetic_dialog(window: Any) -> SyntheticDialog | None:
    if window.state.project is None:
        window.state.message.emit("Open a project with labelled animals first")
        return None
    window.synthetic_dialog = SyntheticDialog(window)
    window.synthetic_dialog.open()
    return window.synthetic_dialog
