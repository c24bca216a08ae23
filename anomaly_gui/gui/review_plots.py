"""Plots of the review panel (pyqtgraph): the score histogram with a draggable threshold line, and the
original finetune plots (regions vs threshold, region area vs threshold, area distribution).

Every plot that summarises items filters them on a click: a click on a histogram bar emits the bin's range
(the panel then sets `state.filter` to those items, FiftyOne-style).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QTabWidget, QWidget

from anomaly_gui.core import thresholds as th

BACKGROUND = "#1e1e22"
NORMAL_COLOR = "#3cb44b"
ANOMALOUS_COLOR = "#e6194b"
UNKNOWN_COLOR = "#9e9e9e"
LINE_COLOR = "#ffd60a"


def _plot(title: str, x: str, y: str) -> pg.PlotWidget:
    w = pg.PlotWidget(background=BACKGROUND)
    w.setTitle(title, color="#dddddd", size="9pt")
    w.setLabel("bottom", x)
    w.setLabel("left", y)
    w.showGrid(x=True, y=True, alpha=0.2)
    w.setMenuEnabled(False)
    w.setMinimumHeight(120)
    return w


def _threshold_line(movable: bool) -> pg.InfiniteLine:
    return pg.InfiniteLine(angle=90, movable=movable, pen=pg.mkPen(LINE_COLOR, width=2),
                           hoverPen=pg.mkPen("#ffffff", width=3),
                           label="t" if movable else None, labelOpts={"color": LINE_COLOR, "position": 0.92})


class ScoreHistogram(pg.PlotWidget):
    """Normal / anomalous / unlabelled item counts per score bin, with the threshold as a draggable line."""

    thresholdDragged = Signal(float)
    binClicked = Signal(float, float)  # lo, hi of the clicked bin

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent, background=BACKGROUND)
        self.setTitle("Image scores at this min area (click a bar to filter)", color="#dddddd", size="9pt")
        self.setLabel("bottom", "score")
        self.setLabel("left", "items")
        self.showGrid(x=False, y=True, alpha=0.2)
        self.setMenuEnabled(False)
        self.setMinimumHeight(150)
        self.addLegend(offset=(-6, 6), labelTextSize="8pt")
        self.bars: dict[str, pg.BarGraphItem] = {}
        self.edges = np.zeros(0)
        self.hist: dict[str, np.ndarray] = {}
        self.line = _threshold_line(True)
        self.line.setZValue(10)
        self.addItem(self.line)
        self._quiet = False
        self.line.sigPositionChanged.connect(self._on_line)
        self.scene().sigMouseClicked.connect(self._on_click)

    def set_values(self, values: np.ndarray, labels: np.ndarray, bins: int = 30) -> None:
        """Histogram of per-item values (labels 1 / 0 / -1 unknown)."""
        for item in self.bars.values():
            self.removeItem(item)
        self.bars = {}
        legend = self.getPlotItem().legend
        if legend is not None:
            legend.clear()
        lab = [None if v < 0 else int(v) for v in labels]
        finite = np.isfinite(values)
        self.hist = th.score_histograms(values[finite], [l for l, ok in zip(lab, finite) if ok], bins=bins)
        self.edges = self.hist["edges"]
        width = float(np.diff(self.edges).mean()) if len(self.edges) > 1 else 1.0
        centers = (self.edges[:-1] + self.edges[1:]) / 2
        parts = [("normal", NORMAL_COLOR), ("anomalous", ANOMALOUS_COLOR), ("unlabelled", UNKNOWN_COLOR)]
        bottom = np.zeros(len(centers))
        for key, color in parts:
            h = self.hist[key].astype(float)
            if not h.any():
                continue
            c = pg.mkColor(color)
            c.setAlpha(190)
            bar = pg.BarGraphItem(x=centers, height=h, y0=bottom.copy(), width=width * 0.92, brush=c, pen=None, name=key)
            bottom += h
            self.bars[key] = bar
            self.addItem(bar)  # named: the legend picks it up
        axis = self.getAxis("left")
        if bottom.max(initial=0) <= 10:
            axis.setTickSpacing(2, 1)  # whole items
        else:
            axis.setTickSpacing()
        self.getPlotItem().enableAutoRange()

    def set_threshold(self, t: float) -> None:
        self._quiet = True
        try:
            self.line.setValue(float(t))
        finally:
            self._quiet = False

    def threshold(self) -> float:
        return float(self.line.value())

    def _on_line(self) -> None:
        if not self._quiet:
            self.thresholdDragged.emit(float(self.line.value()))

    def bin_at(self, x: float) -> tuple[float, float] | None:
        if len(self.edges) < 2 or x < self.edges[0] or x > self.edges[-1]:
            return None
        k = int(np.clip(np.searchsorted(self.edges, x, side="right") - 1, 0, len(self.edges) - 2))
        return float(self.edges[k]), float(self.edges[k + 1])

    def _on_click(self, ev: Any) -> None:
        if ev.button() != Qt.MouseButton.LeftButton:
            return
        vb = self.getPlotItem().vb
        if not vb.sceneBoundingRect().contains(ev.scenePos()):
            return
        if self.line.mouseHovering:
            return
        x = vb.mapSceneToView(ev.scenePos()).x()
        rng = self.bin_at(x)
        if rng is not None:
            self.binClicked.emit(*rng)


class FinetunePlots(QTabWidget):
    """The original finetune plots, each with the current threshold as a line."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setDocumentMode(True)
        self.regions = _plot("Defective regions vs threshold", "threshold", "regions")
        self.area = _plot("Region area vs threshold (mean ± std)", "threshold", "area (px)")
        self.dist = _plot("Region areas at the threshold", "area (px, log)", "regions")
        self.dist.setLogMode(x=True, y=False)
        self.addTab(self.regions, "Regions")
        self.addTab(self.area, "Area")
        self.addTab(self.dist, "Area distribution")
        self.lines = [_threshold_line(False), _threshold_line(False)]
        self.regions.addItem(self.lines[0])
        self.area.addItem(self.lines[1])
        self.min_area_line = pg.InfiniteLine(angle=90, pen=pg.mkPen("#42d4f4", width=2, style=Qt.PenStyle.DashLine))
        self.dist.addItem(self.min_area_line)
        self.curves: dict[str, np.ndarray] = {}
        self._items: list[Any] = []

    def set_curves(self, curves: dict[str, np.ndarray]) -> None:
        """Output of `core.thresholds.region_curves`."""
        self.curves = curves
        for plot, item in self._items:
            plot.removeItem(item)
        self._items = []
        t = curves["thresholds"]
        pen = pg.mkPen("#ff9f1c", width=2)
        self._add(self.regions, pg.PlotDataItem(t, curves["n_regions"], pen=pen, symbol="o", symbolSize=4,
                                                symbolBrush="#ff9f1c"))
        self._add(self.regions, pg.PlotDataItem(t, curves["n_anomalous_images"], pen=pg.mkPen("#e6194b", width=1.5),
                                                name="anomalous images"))
        mean, std = curves["mean_area"], curves["std_area"]
        ok = np.isfinite(mean)
        if ok.any():
            upper = pg.PlotDataItem(t[ok], (mean + std)[ok], pen=None)
            lower = pg.PlotDataItem(t[ok], np.maximum(mean - std, 0)[ok], pen=None)
            self._add(self.area, upper)
            self._add(self.area, lower)
            self._add(self.area, pg.FillBetweenItem(upper, lower, brush=pg.mkBrush(255, 159, 28, 60)))
            self._add(self.area, pg.PlotDataItem(t[ok], mean[ok], pen=pen, symbol="o", symbolSize=4, symbolBrush="#ff9f1c"))

    def set_areas(self, areas: np.ndarray, min_area: float) -> None:
        """Histogram of region areas at the current threshold, with the min area as a dashed line."""
        for item in [i for p, i in self._items if p is self.dist]:
            self.dist.removeItem(item)
        self._items = [(p, i) for p, i in self._items if p is not self.dist]
        counts, edges = th.area_histogram(areas, bins=25, log=True)
        if counts.any():
            self._add(self.dist, pg.PlotDataItem(np.maximum(edges, 1e-9), counts, stepMode="center",
                                                 fillLevel=0, brush=pg.mkBrush(255, 159, 28, 120),
                                                 pen=pg.mkPen("#ff9f1c")))
        self.min_area_line.setValue(np.log10(max(min_area, 1.0)))
        self.min_area_line.setVisible(min_area > 0)

    def set_threshold(self, t: float) -> None:
        for line in self.lines:
            line.setValue(float(t))

    def _add(self, plot: pg.PlotWidget, item: Any) -> None:
        plot.addItem(item)
        self._items.append((plot, item))
