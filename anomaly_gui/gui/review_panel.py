"""The Review panel: threshold and minimum-area sliders that follow live on the cached raw maps.

Moving a slider (or the histogram's threshold line, or a spin box) sets `state.threshold` / `state.min_area`;
the panel then, without running any model:
- outlines the current item's kept regions in red (regions smaller than the min area removed) over its
  heatmap (raw map, GLOBAL levels of the run, opacity from `state.heatmap_opacity`);
- recomputes every item's verdict at once (`ReviewData.verdicts`) into `state.predictions` (browser badges,
  metrics panel) and re-applies a verdict filter on `state.filter`;
- moves the threshold lines of the score histogram and the finetune plots.
Histogram bars filter the browser to their items on a click. The setting is saved per run
(`project.update_run`) a moment after the last move, so reopening the run shows it again.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QGridLayout, QHBoxLayout, QLabel, QPushButton, QSlider,
                               QSpinBox, QSplitter, QVBoxLayout, QWidget)

from anomaly_gui.core import postprocess as pp
from anomaly_gui.core import thresholds as th
from anomaly_gui.gui.browser_model import decimals_for_span
from anomaly_gui.gui.panels import register_panel
from anomaly_gui.gui.review_model import FILTERS, ReviewData, filter_ids
from anomaly_gui.gui.review_plots import FinetunePlots, ScoreHistogram
from anomaly_gui.gui.state import AppState
from anomaly_gui.gui.workers import JobBusyError, start_job

log = logging.getLogger(__name__)

REGION_COLOR = "#ff1744"
SLIDER_STEPS = 1000
CURVE_POINTS = 40
CURVE_MAX_ITEMS = 200
SAVE_DELAY_MS = 500
SLOW_DELAY_MS = 150
SYNC_LOAD_BYTES = 32 * 2**20  # caches up to this size load on the GUI thread; bigger ones in a worker


class CurveBuilder:
    """The finetune curves (`thresholds.region_curves` semantics), built a slice at a time on the GUI thread
    from a timer: no thread to outlive the panel, and each slice stays within a few milliseconds."""

    def __init__(self, maps: list[np.ndarray], sizes: list[tuple[int, int]], min_area: float, lo: float, hi: float):
        self.maps, self.sizes, self.min_area = maps, sizes, float(min_area)
        self.ts = np.linspace(lo, hi, CURVE_POINTS)
        self.areas: list[list[np.ndarray]] = [[] for _ in self.ts]
        self.n_images = np.zeros(len(self.ts), np.int64)
        self.k = 0  # next (threshold, map) pair, threshold-major

    @property
    def done(self) -> bool:
        return self.k >= len(self.ts) * len(self.maps)

    def step(self, budget_s: float = 0.008) -> bool:
        """Work for about `budget_s`; True when finished."""
        t_end = time.perf_counter() + budget_s
        n = len(self.maps)
        while not self.done and time.perf_counter() < t_end:
            j, i = divmod(self.k, n)
            a = pp.region_areas(self.maps[i], float(self.ts[j]), self.sizes[i])
            a = a[a >= self.min_area - 1e-9]
            if len(a):
                self.areas[j].append(a)
                self.n_images[j] += 1
            self.k += 1
        return self.done

    def result(self) -> dict[str, np.ndarray]:
        n_regions = np.zeros(len(self.ts), np.int64)
        mean = np.full(len(self.ts), np.nan)
        std = np.full(len(self.ts), np.nan)
        for j, parts in enumerate(self.areas):
            if parts:
                cat = np.concatenate(parts)
                n_regions[j], mean[j], std[j] = len(cat), float(cat.mean()), float(cat.std())
        return {"thresholds": self.ts, "n_regions": n_regions, "mean_area": mean, "std_area": std,
                "n_anomalous_images": self.n_images}


def _cache_bytes(project: Any, run_id: int) -> int:
    """Size on disk of a run's cached maps (decides between loading at once and in a worker)."""
    total = 0
    for sc in project.scores(run_id).values():
        if sc.map_path:
            try:
                total += (project.cache_dir / sc.map_path).stat().st_size
            except OSError:
                continue
    return total


def _load_job(_ctx: Any, project: Any, run_id: int) -> ReviewData:
    return ReviewData(project, run_id)


class _ValueSlider(QWidget):
    """A horizontal slider bound to a spin box; `mapping` turns slider steps into values and back."""

    valueChanged = Signal(float)

    def __init__(self, spin: QDoubleSpinBox | QSpinBox, power: float = 1.0):
        super().__init__()
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, SLIDER_STEPS)
        self.slider.setPageStep(SLIDER_STEPS // 20)
        self.spin = spin
        self.spin.setKeyboardTracking(False)
        self.spin.setMinimumWidth(90)
        self.lo, self.hi, self.power = 0.0, 1.0, power
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.slider, 1)
        lay.addWidget(self.spin)
        self.slider.valueChanged.connect(self._on_slider)
        self.spin.valueChanged.connect(self._on_spin)

    def set_range(self, lo: float, hi: float) -> None:
        self.lo, self.hi = float(lo), float(max(hi, lo + 1e-12))
        self.spin.blockSignals(True)
        self.spin.setRange(self.lo, self.hi) if isinstance(self.spin, QDoubleSpinBox) else self.spin.setRange(
            int(self.lo), int(math.ceil(self.hi)))
        self.spin.blockSignals(False)

    def to_steps(self, v: float) -> int:
        f = (float(v) - self.lo) / (self.hi - self.lo)
        return int(round(np.clip(f, 0, 1) ** (1 / self.power) * SLIDER_STEPS))

    def from_steps(self, k: int) -> float:
        return self.lo + (self.hi - self.lo) * (k / SLIDER_STEPS) ** self.power

    def set_value(self, v: float) -> None:
        for w in (self.slider, self.spin):
            w.blockSignals(True)
        try:
            self.slider.setValue(self.to_steps(v))
            self.spin.setValue(v if isinstance(self.spin, QDoubleSpinBox) else int(round(v)))
        finally:
            for w in (self.slider, self.spin):
                w.blockSignals(False)

    def value(self) -> float:
        return float(self.spin.value())

    def _on_slider(self, k: int) -> None:
        v = self.from_steps(k)
        self.spin.blockSignals(True)
        self.spin.setValue(v if isinstance(self.spin, QDoubleSpinBox) else int(round(v)))
        self.spin.blockSignals(False)
        self.valueChanged.emit(float(self.spin.value()))

    def _on_spin(self, v: float) -> None:
        self.slider.blockSignals(True)
        self.slider.setValue(self.to_steps(v))
        self.slider.blockSignals(False)
        self.valueChanged.emit(float(v))


@register_panel
class ReviewPanel(QWidget):
    """Threshold / min-area sliders, verdict filter, score histogram and finetune plots for the current run."""

    panel_id = "review"
    title = "Review"
    area = "right"
    order = 10

    loaded = Signal(int)  # run id, once its cached results are shown

    def __init__(self, state: AppState, window: Any = None):
        super().__init__()
        self.setMinimumWidth(380)
        self.state = state
        self.window_ = window
        self.viewer = getattr(window, "viewer", None)
        self.data: ReviewData | None = None
        self.flags = np.zeros(0, bool)
        self.latencies_ms: list[float] = []
        self._hist_area: float | None = None
        self._curves: CurveBuilder | None = None
        self._load_job: Any = None
        self._curve_run: int | None = None
        self._load_pending = False
        self._bin_filter: tuple[float, float] | None = None
        self._build()
        self._save_timer = QTimer(self, singleShot=True, interval=SAVE_DELAY_MS, timeout=self.save_setting)
        self._retry_load = QTimer(self, singleShot=True, interval=200, timeout=self._reload_current)
        self._curve_timer = QTimer(self, interval=0, timeout=self._curve_step)
        self._slow_timer = QTimer(self, singleShot=True, interval=SLOW_DELAY_MS, timeout=self._slow_update)
        state.projectChanged.connect(self._on_project)
        state.currentRunChanged.connect(self.load_run)
        state.scoresChanged.connect(self._on_scores_changed)
        state.currentItemChanged.connect(self.draw_item)
        state.displayChanged.connect(self._on_display)
        state.verdictsChanged.connect(self._on_verdicts)
        self.load_run(state.current_run)

    # -- layout ---------------------------------------------------------------------------------------
    def _build(self) -> None:
        self.run_label = QLabel("No run selected: train one or pick it in Runs.")
        self.run_label.setWordWrap(True)
        tspin = QDoubleSpinBox()
        tspin.setDecimals(4)
        self.threshold = _ValueSlider(tspin)
        self.threshold.setToolTip("Pixels with a raw score at or above the threshold are anomalous")
        aspin = QSpinBox()
        aspin.setSuffix(" px")
        self.min_area = _ValueSlider(aspin, power=2.0)
        self.min_area.setToolTip("Regions smaller than this (image pixels) are ignored; an item is anomalous "
                                 "when at least one region remains")
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(int(self.state.heatmap_opacity * 100))
        self.opacity.setToolTip("Heatmap opacity")
        self.pick_button = QPushButton("From validation")
        self.pick_button.setToolTip("Choose the threshold for this min area on the run's validation items")
        self.filter_combo = QComboBox()
        self.filter_combo.addItems(list(FILTERS))
        self.filter_combo.setToolTip("Show only these items in the browser")
        self.clear_filter_button = QPushButton("Show all")
        self.summary = QLabel("")
        self.summary.setStyleSheet("font-weight: bold;")
        grid = QGridLayout()
        grid.addWidget(QLabel("Threshold"), 0, 0)
        grid.addWidget(self.threshold, 0, 1)
        grid.addWidget(self.pick_button, 0, 2)
        grid.addWidget(QLabel("Min area"), 1, 0)
        grid.addWidget(self.min_area, 1, 1, 1, 2)
        grid.addWidget(QLabel("Opacity"), 2, 0)
        grid.addWidget(self.opacity, 2, 1, 1, 2)
        grid.addWidget(QLabel("Show"), 3, 0)
        grid.addWidget(self.filter_combo, 3, 1)
        grid.addWidget(self.clear_filter_button, 3, 2)
        grid.setColumnStretch(1, 1)
        self.histogram = ScoreHistogram()
        self.finetune = FinetunePlots()
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.histogram)
        split.addWidget(self.finetune)
        split.setChildrenCollapsible(False)
        lay = QVBoxLayout(self)
        lay.addWidget(self.run_label)
        lay.addLayout(grid)
        lay.addWidget(self.summary)
        lay.addWidget(split, 1)
        self.threshold.valueChanged.connect(self.set_threshold)
        self.min_area.valueChanged.connect(self.set_min_area)
        self.opacity.valueChanged.connect(self._on_opacity)
        self.histogram.thresholdDragged.connect(self.set_threshold)
        self.histogram.binClicked.connect(self.filter_bin)
        self.pick_button.clicked.connect(self.pick_from_validation)
        self.filter_combo.currentTextChanged.connect(self.apply_filter)
        self.clear_filter_button.clicked.connect(self.clear_filter)
        self._set_enabled(False)

    def _set_enabled(self, on: bool) -> None:
        for w in (self.threshold, self.min_area, self.pick_button, self.filter_combo, self.histogram, self.finetune):
            w.setEnabled(on)

    # -- run ------------------------------------------------------------------------------------------
    def load_run(self, run_id: int | None) -> None:
        """Read a run's cached results in a worker (no model runs), then show them at its saved setting."""
        self.data = None
        self.state.extra.pop("review", None)
        self._curve_timer.stop()
        project = self.state.project
        run = None
        if run_id is not None and project is not None:
            try:
                run = project.run(run_id)
            except KeyError:
                run = None
        self._set_enabled(False)
        self.flags = np.zeros(0, bool)
        self.state.set_predictions({})
        if self.viewer is not None:
            self.viewer.clear_layer("contours")
            self.viewer.set_heatmap(None)
        if run is None or project is None or run.status != "done" or not project.scores(run.id):
            self.run_label.setText("No run selected: train one or pick it in Runs." if run is None else
                                   f"Run “{run.title}” has no scores ({run.status}).")
            return
        self.run_label.setText(f"Loading the cached results of “{run.title}” …")
        if self._load_job is None and _cache_bytes(project, run.id) <= SYNC_LOAD_BYTES:
            try:  # a small cache loads at once (no flash, no thread)
                data = ReviewData(project, run.id)
            except (OSError, ValueError) as exc:
                self._on_load_failed(str(exc))
                return
            self._on_loaded(data)
            return
        if self._load_job is not None:
            self._load_pending = True  # the newest request is loaded once the running one ends
            return
        try:
            job = start_job(_load_job, project, run.id, title="Load run",
                            kind=f"review-load-{id(self)}")
        except JobBusyError:
            self._retry_load.start()
            return
        self._load_job = job
        job.result.connect(self._on_loaded)
        job.failed.connect(self._on_load_failed)
        job.finished.connect(self._on_load_finished)

    # -- small slots (bound methods: Qt disconnects them when the panel goes) ------------------------------
    def _on_project(self, _project: Any) -> None:
        self.load_run(None)

    def _reload_current(self) -> None:
        self.load_run(self.state.current_run)

    def _on_load_failed(self, message: str) -> None:
        self.run_label.setText(f"Cannot load the run: {message}")

    def set_threshold(self, value: float) -> None:
        self.state.set_display(threshold=float(value))

    def set_min_area(self, value: float) -> None:
        self.state.set_display(min_area=float(value))

    def _on_opacity(self, value: int) -> None:
        self.state.set_display(heatmap_opacity=value / 100.0)

    def _on_load_finished(self) -> None:
        self._load_job = None
        if self._load_pending:
            self._load_pending = False
            self.load_run(self.state.current_run)

    def _on_loaded(self, data: ReviewData) -> None:
        if self._load_pending or data.run_id != self.state.current_run or self.state.project is not data.project:
            return  # a newer request supersedes it
        run = data.run
        self.data = data
        self.state.extra["review"] = data
        crit0 = data.critical(0.0)
        finite = crit0[np.isfinite(crit0)]
        lo = min(data.range.lo, float(finite.min()) if finite.size else data.range.lo)
        hi = max(data.range.hi, float(finite.max()) if finite.size else data.range.hi)
        t = float(run.threshold) if run.threshold is not None else float(np.median(finite)) if finite.size else lo
        lo, hi = min(lo, t), max(hi, t)
        pad = (hi - lo) * 0.02 or 1e-3
        self.threshold.set_range(lo - pad, hi + pad)
        self.threshold.spin.setDecimals(decimals_for_span(hi - lo, significant=5, least=2))
        self.threshold.spin.setSingleStep((hi - lo) / 200 or 1e-3)
        areas = [w * h for w, h in (data.sizes[int(i)] or (1, 1) for i in data.map_ids)] or [1]
        self.min_area.set_range(0, max(10.0, float(np.median(areas)) * 0.05))
        self._hist_area = None
        self._set_enabled(True)
        method = run.metrics.get("threshold_method", "")
        self.run_label.setText(f"<b>{run.title}</b> — {run.engine}, {len(data)} scored items"
                               + (f"<br><small>threshold: {method}</small>" if method else ""))
        if data.problems:
            self.run_label.setText(self.run_label.text() + f"<br><span style='color:#ff6b6b'>{len(data.problems)} "
                                   f"cached map(s) unreadable, e.g. {data.problems[0]}</span>")
            self.state.message.emit(data.problems[0])
        self.state.set_display(threshold=t, min_area=float(run.min_area or 0.0))
        self.update_all(force_hist=True)
        self.draw_item()
        self.start_curves()
        self.loaded.emit(data.run_id)

    def _on_scores_changed(self, run_id: int) -> None:
        if run_id == self.state.current_run:
            self.load_run(run_id)

    def _on_verdicts(self) -> None:
        if self.data is not None:
            self.data.reload_verdicts()
            self.update_all()

    # -- the fast path ------------------------------------------------------------------------------------
    def _on_display(self) -> None:
        self.update_all()

    def current_setting(self) -> tuple[float, float]:
        t = self.state.threshold if self.state.threshold is not None else self.threshold.value()
        return float(t), float(self.state.min_area or 0.0)

    def update_all(self, force_hist: bool = False) -> None:
        """Everything that follows the sliders: widgets, all verdicts, overlay, histogram line, filter."""
        data = self.data
        if data is None:
            return
        t0 = time.perf_counter()
        t, a = self.current_setting()
        self.threshold.set_value(t)
        self.min_area.set_value(a)
        self.opacity.blockSignals(True)
        self.opacity.setValue(int(round(self.state.heatmap_opacity * 100)))
        self.opacity.blockSignals(False)
        self.flags = data.verdicts(t, a)
        self.state.set_predictions(dict(zip(data.item_ids.tolist(), self.flags.tolist())))
        n_anom = int(self.flags.sum())
        self.summary.setText(f"{n_anom} of {len(data)} items anomalous at t = {t:.4g}, min area {a:.0f} px")
        self.histogram.set_threshold(t)
        self.finetune.set_threshold(t)
        self.draw_regions()
        if self.filter_combo.currentText() != FILTERS[0]:
            self.apply_filter()
        self.latencies_ms.append((time.perf_counter() - t0) * 1000)
        if force_hist:
            self._slow_update()
        else:
            self._slow_timer.start()
            self._save_timer.start()

    def draw_item(self, *_: Any) -> None:
        """Heatmap (global levels) and kept regions of the current item."""
        if self.viewer is None:
            return
        data, item = self.data, self.state.current_item
        m = data.map(item) if data is not None and data.contains(item) else None
        if m is None:
            self.viewer.set_heatmap(None)
            self.viewer.clear_layer("contours")
            return
        self.viewer.set_heatmap(m, levels=(data.range.lo, data.range.hi))
        self.draw_regions()

    def current_mask(self) -> np.ndarray | None:
        """The kept-region mask of the current item at the current setting (map resolution)."""
        data, item = self.data, self.state.current_item
        m = data.map(item) if data is not None and data.contains(item) else None
        if m is None:
            return None
        t, a = self.current_setting()
        return pp.threshold_mask(m, t, a, data.image_size(int(item)))  # type: ignore[arg-type]

    def draw_regions(self) -> None:
        if self.viewer is None:
            return
        mask = self.current_mask()
        if mask is None or not mask.any():
            self.viewer.clear_layer("contours")
            return
        self.viewer.set_mask_contours(mask, REGION_COLOR, layer="contours", width=2.0)

    def _slow_update(self) -> None:
        """Debounced: histogram of per-item values at this min area, area distribution at this threshold."""
        data = self.data
        if data is None:
            return
        t, a = self.current_setting()
        if self._hist_area != a:
            self._hist_area = a
            self.histogram.set_values(data.critical(a), data.labels)
            self.histogram.set_threshold(t)
            self.start_curves()
        if data.small_maps:
            self.finetune.set_areas(th.area_distribution(data.small_maps[:CURVE_MAX_ITEMS], t,
                                                         data.small_sizes[:CURVE_MAX_ITEMS], max_side=None), a)

    # -- persistence ---------------------------------------------------------------------------------------
    def save_setting(self) -> None:
        """Store the current threshold / min area with the run."""
        data, project = self.data, self.state.project
        if data is None or project is None:
            return
        t, a = self.current_setting()
        run = project.run(data.run_id)
        if run.threshold != t or run.min_area != a:
            project.update_run(data.run_id, threshold=t, min_area=a)

    def pick_from_validation(self) -> None:
        from anomaly_gui.core.run_metrics import choose_threshold

        if self.data is None or self.state.project is None:
            return
        _t, a = self.current_setting()
        try:
            t, how = choose_threshold(self.state.project, self.data.run_id, a)
        except ValueError as exc:
            self.state.message.emit(str(exc))
            return
        self.state.set_display(threshold=t)
        self.state.message.emit(f"Threshold {t:.4g} for min area {a:.0f} px ({how})")

    # -- filters --------------------------------------------------------------------------------------------
    def apply_filter(self, *_: Any) -> None:
        if self.data is None:
            return
        self._bin_filter = None
        name = self.filter_combo.currentText()
        self.state.set_filter(filter_ids(self.data, name, self.flags))

    def filter_bin(self, lo: float, hi: float) -> None:
        """Show only the items whose value (at this min area) falls in [lo, hi]."""
        if self.data is None:
            return
        v = self.data.critical(self.current_setting()[1])
        ids = self.data.ids_where(np.isfinite(v) & (v >= lo) & (v <= hi))
        self.filter_combo.blockSignals(True)
        self.filter_combo.setCurrentIndex(0)
        self.filter_combo.blockSignals(False)
        self._bin_filter = (lo, hi)
        self.state.set_filter(ids)
        self.state.message.emit(f"{len(ids)} item(s) with a score in [{lo:.4g}, {hi:.4g}]")

    def clear_filter(self) -> None:
        self._bin_filter = None
        self.filter_combo.blockSignals(True)
        self.filter_combo.setCurrentIndex(0)
        self.filter_combo.blockSignals(False)
        self.state.set_filter(None)

    # -- finetune curves (worker) -------------------------------------------------------------------------
    def start_curves(self) -> None:
        """(Re)start building the finetune curves for the current run and min area."""
        data = self.data
        self._curve_timer.stop()
        self._curves = None
        if data is None or not data.small_maps:
            return
        self._curve_run = data.run_id
        self._curves = CurveBuilder(data.small_maps[:CURVE_MAX_ITEMS], data.small_sizes[:CURVE_MAX_ITEMS],
                                    self.current_setting()[1], self.threshold.lo, self.threshold.hi)
        self._curve_timer.start()

    def _curve_step(self) -> None:
        builder = self._curves
        if builder is None or self.data is None or self.data.run_id != self._curve_run:
            self._curve_timer.stop()
            return
        if builder.step():
            self._curve_timer.stop()
            self._curves = None
            self.finetune.set_curves(builder.result())
