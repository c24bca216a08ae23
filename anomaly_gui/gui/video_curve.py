"""Per-frame score curve for the video player (pyqtgraph): threshold line (draggable), playhead (draggable),
ground-truth and detected segments shaded, click anywhere to seek."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal

from anomaly_gui.gui.review_plots import BACKGROUND

GT_BRUSH = (255, 170, 0, 45)  # labelled anomalous ranges
DETECTED_BRUSH = (255, 40, 40, 40)  # frames over the threshold


def segments(flags: np.ndarray) -> list[tuple[int, int]]:
    """[(first, last)] inclusive index ranges where `flags` is true."""
    f = np.asarray(flags, bool)
    if f.size == 0:
        return []
    d = np.diff(np.concatenate([[0], f.astype(np.int8), [0]]))
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1) - 1
    return [(int(a), int(b)) for a, b in zip(starts, ends)]


class ScoreCurve(pg.PlotWidget):
    """Scores against frame number. Emits `seekRequested(frame)` and `thresholdChanged(value)`."""

    seekRequested = Signal(int)
    thresholdChanged = Signal(float)

    def __init__(self, parent=None):
        super().__init__(parent, background=BACKGROUND)  # the dark theme of the other plots
        self.setMinimumHeight(120)
        self.setMenuEnabled(False)
        self.getPlotItem().setLabel("bottom", "frame")
        self.getPlotItem().setLabel("left", "anomaly score")
        for axis in ("left", "bottom"):
            self.getPlotItem().getAxis(axis).enableAutoSIPrefix(False)  # scores 0..1 must not read "800 m"
        self.getPlotItem().showGrid(x=True, y=True, alpha=0.2)
        self.getPlotItem().setMouseEnabled(x=True, y=False)
        self.curve = self.plot([], [], pen=pg.mkPen((90, 160, 255), width=2))
        self.threshold_line = pg.InfiniteLine(angle=0, movable=True, pen=pg.mkPen((220, 30, 30), width=2, style=Qt.DashLine),
                                              label="threshold {value:.3f}", labelOpts={"position": 0.97, "color": (240, 80, 80), "anchors": [(1, 1), (1, 1)]})
        self.playhead = pg.InfiniteLine(angle=90, movable=True, pen=pg.mkPen((230, 230, 230), width=1.5))
        self.addItem(self.threshold_line)
        self.addItem(self.playhead)
        self._quiet = False
        self.threshold_line.sigPositionChanged.connect(self._threshold_moved)
        self.playhead.sigDragged.connect(lambda l: self.seekRequested.emit(int(round(l.value()))))
        self.scene().sigMouseClicked.connect(self._clicked)
        self._regions: list[pg.LinearRegionItem] = []
        self._gt_regions: list[pg.LinearRegionItem] = []
        self.n = 0

    def set_scores(self, scores: np.ndarray | None, labels: np.ndarray | None = None) -> None:
        for r in self._gt_regions:
            self.removeItem(r)
        self._gt_regions = []
        if scores is None:
            self.curve.setData([], [])
            self.n = 0
            return
        s = np.asarray(scores, float)
        self.n = len(s)
        self.curve.setData(np.arange(len(s)), s)
        if labels is not None:
            for a, b in segments(labels):
                r = pg.LinearRegionItem((a - 0.5, b + 0.5), movable=False, brush=pg.mkBrush(*GT_BRUSH), pen=pg.mkPen(None))
                r.setZValue(-20)
                self.addItem(r)
                self._gt_regions.append(r)
        lo, hi = float(np.nanmin(s)), float(np.nanmax(s))
        pad = 0.05 * (hi - lo or 1.0)
        self.setXRange(0, max(1, len(s) - 1), padding=0.01)
        self.setYRange(lo - pad, hi + pad, padding=0)

    def set_threshold(self, value: float) -> None:
        self._quiet = True  # the label still follows; only our own signal stays silent
        try:
            self.threshold_line.setValue(value)
        finally:
            self._quiet = False

    def _threshold_moved(self, line: pg.InfiniteLine) -> None:
        if not self._quiet:
            self.thresholdChanged.emit(float(line.value()))

    def set_detected(self, flags: np.ndarray | None) -> None:
        for r in self._regions:
            self.removeItem(r)
        self._regions = []
        if flags is None:
            return
        for a, b in segments(flags):
            r = pg.LinearRegionItem((a - 0.5, b + 0.5), movable=False, brush=pg.mkBrush(*DETECTED_BRUSH), pen=pg.mkPen(None))
            r.setZValue(-10)
            self.addItem(r)
            self._regions.append(r)

    def set_playhead(self, frame: int) -> None:
        self.playhead.blockSignals(True)
        self.playhead.setValue(frame)
        self.playhead.blockSignals(False)

    def _clicked(self, ev) -> None:
        if ev.button() != Qt.LeftButton or self.n == 0:
            return
        vb = self.getPlotItem().vb
        if not vb.sceneBoundingRect().contains(ev.scenePos()):
            return
        x = vb.mapSceneToView(ev.scenePos()).x()
        self.seekRequested.emit(int(np.clip(round(x), 0, self.n - 1)))

    def frame_to_widget(self, frame: int, y: float | None = None):
        """Widget coordinates of (frame, y) (for tests that click the curve)."""
        vb = self.getPlotItem().vb
        yv = y if y is not None else float(np.mean(vb.viewRange()[1]))
        scene = vb.mapViewToScene(pg.Point(frame, yv))
        return self.mapFromScene(scene)
