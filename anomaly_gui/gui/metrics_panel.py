"""The Metrics panel: the current run's image AUROC, pixel AUROC, AUPRO and F1-max (computed once when the
run was scored), and confusion counts at the current threshold / min area that follow the sliders live
(from `state.predictions`, against ground truth and against the analyst's verdicts). A video run also shows
its frames' counts at the player's threshold on frame scores (`frame_threshold`), the verdict the player draws."""
from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGridLayout, QGroupBox, QLabel, QVBoxLayout, QWidget

from anomaly_gui.core.run_metrics import run_frame_threshold
from anomaly_gui.gui.panels import register_panel
from anomaly_gui.gui.state import AppState

SUMMARY = (("image_auroc", "Image AUROC"), ("pixel_auroc", "Pixel AUROC"), ("aupro", "AUPRO"), ("f1_max", "F1-max"),
           ("items_per_second", "Items / s"), ("fit_seconds", "Fit (s)"))
CELLS = (("tp", "TP", "#e6194b"), ("fp", "FP", "#f58231"), ("fn", "FN", "#911eb4"), ("tn", "TN", "#3cb44b"))


def rates(c: dict[str, int]) -> dict[str, float | None]:
    """precision, recall, F1 and accuracy of confusion counts (None where undefined)."""
    tp, fp, fn, tn = c["tp"], c["fp"], c["fn"], c["tn"]
    p = tp / (tp + fp) if tp + fp else None
    r = tp / (tp + fn) if tp + fn else None
    f1 = 2 * p * r / (p + r) if p is not None and r is not None and p + r else None
    n = tp + fp + fn + tn
    return {"precision": p, "recall": r, "f1": f1, "accuracy": (tp + tn) / n if n else None}


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


class _Confusion(QGroupBox):
    """A 2×2 grid of counts with precision / recall / F1 below."""

    def __init__(self, title: str):
        super().__init__(title)
        grid = QGridLayout(self)
        grid.addWidget(QLabel(""), 0, 0)
        grid.addWidget(QLabel("<b>is anomalous</b>"), 0, 1, Qt.AlignmentFlag.AlignCenter)
        grid.addWidget(QLabel("<b>is normal</b>"), 0, 2, Qt.AlignmentFlag.AlignCenter)
        grid.addWidget(QLabel("<b>flagged</b>"), 1, 0)
        grid.addWidget(QLabel("<b>passed</b>"), 2, 0)
        self.cells: dict[str, QLabel] = {}
        for key, name, color in CELLS:
            lab = QLabel("–")
            lab.setAlignment(Qt.AlignmentFlag.AlignCenter)
            lab.setToolTip(name)
            lab.setStyleSheet(f"font-size: 15px; font-weight: bold; color: {color}; padding: 4px;")
            self.cells[key] = lab
        grid.addWidget(self.cells["tp"], 1, 1)
        grid.addWidget(self.cells["fp"], 1, 2)
        grid.addWidget(self.cells["fn"], 2, 1)
        grid.addWidget(self.cells["tn"], 2, 2)
        self.rates = QLabel("")
        self.rates.setWordWrap(True)
        grid.addWidget(self.rates, 3, 0, 1, 3)
        self.counts: dict[str, int] | None = None

    def set_counts(self, c: dict[str, int] | None) -> None:
        self.counts = c
        for key, _name, _color in CELLS:
            self.cells[key].setText("–" if c is None else str(c[key]))
        if c is None:
            self.rates.setText("no labels")
            return
        r = rates(c)
        self.rates.setText("  ".join(f"{k} {_fmt(v)}" for k, v in r.items()))


@register_panel
class MetricsPanel(QWidget):
    panel_id = "metrics"
    title = "Metrics"
    area = "right"
    order = 11

    def __init__(self, state: AppState, window: Any = None):
        super().__init__()
        self.setMinimumWidth(320)
        self.state = state
        self.header = QLabel("No run selected.")
        self.header.setWordWrap(True)
        box = QGroupBox("Run (test items)")
        grid = QGridLayout(box)
        self.values: dict[str, QLabel] = {}
        for k, (key, name) in enumerate(SUMMARY):
            val = QLabel("–")
            val.setStyleSheet("font-weight: bold;")
            val.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.values[key] = val
            grid.addWidget(QLabel(name), k // 2, (k % 2) * 2)
            grid.addWidget(val, k // 2, (k % 2) * 2 + 1)
        self.setting = QLabel("")
        self.setting.setWordWrap(True)
        self.frame_threshold: tuple[int, float] | None = None  # (run id, threshold on a video run's frame scores)
        self.truth = _Confusion("At this setting vs ground truth (all scored items)")
        self.analyst = _Confusion("At this setting vs the analyst's verdicts")
        self.frames = _Confusion("Frames the video player flags vs ground truth (all scored frames)")
        self.frames.setVisible(False)
        lay = QVBoxLayout(self)
        lay.addWidget(self.header)
        lay.addWidget(box)
        lay.addWidget(self.setting)
        lay.addWidget(self.truth)
        lay.addWidget(self.analyst)
        lay.addWidget(self.frames)
        lay.addStretch(1)
        state.currentRunChanged.connect(self.refresh)
        state.runsChanged.connect(self.refresh)
        state.predictionsChanged.connect(self.refresh_confusion)
        state.projectChanged.connect(self.refresh)
        self.refresh()

    def refresh(self, *_: Any) -> None:
        self.refresh_summary()
        self.refresh_confusion()

    def refresh_summary(self, *_: Any) -> None:
        project, run_id = self.state.project, self.state.current_run
        run = None
        if project is not None and run_id is not None:
            try:
                run = project.run(run_id)
            except KeyError:
                run = None
        self.header.setText("No run selected." if run is None else f"<b>{run.title}</b> — {run.engine}, {run.status}"
                            f", {run.metrics.get('n_test', 0)} test item(s)")
        for key, lab in self.values.items():
            lab.setText(_fmt(None if run is None else run.metrics.get(key)))
        value = None if run is None else run_frame_threshold(project, run)  # computed for older video runs
        self.frame_threshold = None if value is None else (run.id, value)

    def refresh_confusion(self, *_: Any) -> None:
        """Counts from `state.predictions` (kept in step with the sliders by the review panel)."""
        data = self.state.extra.get("review")
        preds = self.state.predictions
        if data is None or not preds or data.run_id != self.state.current_run:
            self.setting.setText("")
            self.truth.set_counts(None)
            self.analyst.set_counts(None)
            self.frames.setVisible(False)
            return
        self._refresh_frames(data)
        flags = np.asarray([preds.get(int(i), False) for i in data.item_ids], bool)
        c = data.confusions(flags)
        t = self.state.threshold
        text = (f"threshold {t:.4g}, min area {self.state.min_area:.0f} px: {int(flags.sum())} of {len(flags)} anomalous"
                if t is not None else "")
        if text and self.frame_threshold and self.frame_threshold[0] == data.run_id:
            # a video run: the counts are on its maps, the player flags frame scores
            text += f" (by their maps; the video player flags a frame at score ≥ {self.frame_threshold[1]:.4g})"
        self.setting.setText(text)
        self.truth.set_counts(c.get("truth"))
        self.analyst.set_counts(c.get("analyst"))

    def _refresh_frames(self, data: Any) -> None:
        """A video run's frame verdicts at the player's threshold (they do not follow the map sliders)."""
        if not self.frame_threshold or self.frame_threshold[0] != data.run_id:
            self.frames.setVisible(False)
            return
        thr = self.frame_threshold[1]
        flags = np.nan_to_num(data.scores, nan=-np.inf) >= thr
        self.frames.setTitle(f"Frames the video player flags (score ≥ {thr:.4g}) vs ground truth (all scored frames)")
        self.frames.set_counts(data.confusions(flags).get("truth"))
        self.frames.setVisible(True)
