"""The scatter of the cluster view: a pyqtgraph plot of 2-D embedding maps with lasso, hover and click.

`ClusterPlot` knows nothing of projects: it shows points (x, y) with one brush each, reports
`pointClicked(index)`, `lassoed(indices)` and `hovered(index | -1)`, and rings highlighted points.
Lasso mode (toggle, or hold Shift): a free-hand polygon drawn with the left button; plain drags pan.
Points are drawn by one `PointCloudItem` (one numpy raster and one drawImage per repaint): pan/zoom and
recolour stay fluid at 10,000+ points (`benchmarks/bench_embedding.py`).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QColor, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsPathItem

from anomaly_gui.core.embedding_maps import points_in_polygon
from anomaly_gui.gui.point_cloud import PointCloudItem, premultiplied_argb

#: qualitative palette (Tableau 20 order, readable on dark and light backgrounds)
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac", "#1f77b4", "#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d",
           "#9edae5", "#17becf")
NOISE_COLOR = "#d62728"


def palette_color(k: int) -> QColor:
    return QColor(PALETTE[k % len(PALETTE)])


def score_colors(scores: np.ndarray, levels: int = 32) -> tuple[np.ndarray, list[QColor]]:
    """Quantised viridis-like colours for scores: (level index per point, colour per level)."""
    s = np.asarray(scores, np.float64)
    finite = np.isfinite(s)
    lo, hi = (np.nanpercentile(s[finite], 2), np.nanpercentile(s[finite], 98)) if finite.any() else (0.0, 1.0)
    t = np.clip((np.nan_to_num(s, nan=lo) - lo) / max(hi - lo, 1e-12), 0, 1)
    idx = np.round(t * (levels - 1)).astype(int)
    cmap = pg.colormap.get("viridis")
    cols = [cmap.map(v / (levels - 1), mode="qcolor") for v in range(levels)]
    return idx, cols


class LassoViewBox(pg.ViewBox):
    """A ViewBox whose left drags draw a lasso when lasso mode is on (or Shift is held)."""

    def __init__(self) -> None:
        super().__init__()
        self._plot: "ClusterPlot | None" = None
        self.lasso_mode = False
        self._path: list[QPointF] = []
        self._item = QGraphicsPathItem()
        pen = QPen(QColor("#ffcc00"))
        pen.setWidth(2)
        pen.setCosmetic(True)
        pen.setStyle(Qt.PenStyle.DashLine)
        self._item.setPen(pen)
        self._item.setZValue(1e6)
        self.addItem(self._item, ignoreBounds=True)

    def mouseDragEvent(self, ev, axis=None):  # noqa: N802 (pyqtgraph naming)
        lasso = self.lasso_mode or bool(ev.modifiers() & Qt.KeyboardModifier.ShiftModifier)
        if not lasso or ev.button() != Qt.MouseButton.LeftButton:
            super().mouseDragEvent(ev, axis)
            return
        ev.accept()
        if ev.isStart():
            self._path = [self.mapSceneToView(ev.buttonDownScenePos())]
        self._path.append(self.mapSceneToView(ev.scenePos()))
        path = QPainterPath(self._path[0])
        for p in self._path[1:]:
            path.lineTo(p)
        path.closeSubpath()
        self._item.setPath(path)
        if ev.isFinish():
            poly = [(p.x(), p.y()) for p in self._path]
            self._path = []
            self._item.setPath(QPainterPath())
            if self._plot is not None:
                self._plot.finish_lasso(poly)

    def mouseClickEvent(self, ev):  # noqa: N802 (pyqtgraph naming)
        if ev.button() == Qt.MouseButton.LeftButton and self._plot is not None:
            k = self._plot.nearest(self.mapSceneToView(ev.scenePos()))
            if k >= 0:
                ev.accept()
                self._plot.pointClicked.emit(k)
                return
        super().mouseClickEvent(ev)


class ClusterPlot(pg.PlotWidget):
    """Scatter of a 2-D map. Indices in signals refer to the rows given to `set_points`."""

    pointClicked = Signal(int)
    lassoed = Signal(list)
    hovered = Signal(int)

    def __init__(self, parent=None):
        vb = LassoViewBox()
        super().__init__(parent, viewBox=vb, background="#1e1e1e")
        vb._plot = self
        self.vb = vb
        self.setMinimumSize(320, 260)
        # no grid: t-SNE axes carry no units, and the axes' translucent grid lines cost more to repaint
        # (~13 ms at 1000x650, software raster) than all 10,000 points (bench_embedding.py)
        self.getPlotItem().hideButtons()
        self.xy = np.zeros((0, 2), np.float32)
        self.visible = np.zeros(0, bool)
        self.cloud = PointCloudItem(7.0)  # all points, one raster per repaint (point_cloud.py)
        self.addItem(self.cloud)
        self.rings = pg.ScatterPlotItem(size=13, pen=pg.mkPen("#ffffff", width=1.6), brush=None, pxMode=True)
        self.hover_ring = pg.ScatterPlotItem(size=16, pen=pg.mkPen("#ffcc00", width=2), brush=None, pxMode=True)
        for it, z in ((self.rings, 1000), (self.hover_ring, 1001)):
            it.setZValue(z)
            self.addItem(it)
        self._codes = np.zeros(0, np.int64)
        self._group_brushes: list[object] = []
        self._shown = np.zeros(0, np.int64)
        self._hover = -1
        self._tree = None
        self.scene().sigMouseMoved.connect(self._on_mouse_moved)

    # -- data --------------------------------------------------------------------------------
    def set_points(self, xy: np.ndarray, codes: np.ndarray, brushes: Sequence[object], visible: np.ndarray | None = None,
                   size: float = 7.0, autorange: bool = True) -> None:
        """Show `xy`; point k is painted with `brushes[codes[k]]`. Hidden points are left out of the plot,
        of hover, click and lasso. Points of later brushes are drawn on top."""
        prev_xy, self.xy = self.xy, np.asarray(xy, np.float32).reshape(-1, 2)
        self._codes = np.asarray(codes, np.int64).reshape(-1)
        self._group_brushes = list(brushes)
        self.visible = np.ones(len(self.xy), bool) if visible is None else np.asarray(visible, bool)
        shown = np.flatnonzero(self.visible)
        same_points = np.array_equal(shown, self._shown) and np.array_equal(prev_xy, self.xy)
        self._shown = shown
        lut = premultiplied_argb([pg.mkBrush(b).color() for b in self._group_brushes])
        if self.cloud.size != size:
            self.cloud.set_size(size)
        self.cloud.set_data(self.xy[shown], self._codes[shown], lut)  # later brushes on top
        if not same_points or (self._tree is None and len(shown)):
            from scipy.spatial import cKDTree

            self._tree = cKDTree(self.xy[shown]) if len(shown) else None
        if autorange and len(self.xy):
            self.vb.autoRange(padding=0.05)

    def point_count(self) -> int:
        """Points drawn now (visible ones)."""
        return len(self.cloud)

    def brush_of(self, k: int) -> object:
        return self._group_brushes[int(self._codes[k])]

    def highlight(self, indices: Sequence[int]) -> None:
        idx = [i for i in indices if 0 <= i < len(self.xy) and self.visible[i]]
        self.rings.setData(pos=self.xy[idx] if idx else np.zeros((0, 2)))

    def set_lasso_mode(self, on: bool) -> None:
        self.vb.lasso_mode = bool(on)
        self.setCursor(Qt.CursorShape.CrossCursor if on else Qt.CursorShape.ArrowCursor)

    # -- geometry ----------------------------------------------------------------------------
    def pixel_radius(self, px: float = 8.0) -> float:
        """`px` screen pixels in data units (the larger of x and y)."""
        w, h = self.vb.viewPixelSize()
        return float(max(abs(w), abs(h)) * px)

    def nearest(self, pos: QPointF, px: float = 8.0) -> int:
        """Index of the visible point within `px` pixels of a view position, else -1."""
        if self._tree is None:
            return -1
        w, h = self.vb.viewPixelSize()
        w, h = abs(w) or 1e-12, abs(h) or 1e-12
        cand = self._tree.query_ball_point([pos.x(), pos.y()], r=max(w, h) * px)
        if not cand:
            return -1
        pts = self.xy[self._shown[cand]]
        d = ((pts[:, 0] - pos.x()) / w) ** 2 + ((pts[:, 1] - pos.y()) / h) ** 2
        k = int(np.argmin(d))
        return int(self._shown[cand[k]]) if d[k] <= px * px else -1

    def view_to_widget(self, x: float, y: float) -> QPointF:
        """Widget (viewport) coordinates of a data point: for tests and insets."""
        scene = self.vb.mapViewToScene(QPointF(float(x), float(y)))
        return QPointF(self.mapFromScene(scene))

    def finish_lasso(self, polygon: list[tuple[float, float]]) -> None:
        inside = np.zeros(len(self.xy), bool)
        if len(polygon) >= 3:
            poly = np.asarray(polygon, np.float64)
            (x0, y0), (x1, y1) = poly.min(0), poly.max(0)
            cand = self._shown[(self.xy[self._shown, 0] >= x0) & (self.xy[self._shown, 0] <= x1)
                               & (self.xy[self._shown, 1] >= y0) & (self.xy[self._shown, 1] <= y1)]
            inside[cand[points_in_polygon(self.xy[cand], poly)]] = True
        self.lassoed.emit(np.flatnonzero(inside).tolist())

    def _on_mouse_moved(self, scene_pos: QPointF) -> None:
        if not self.sceneBoundingRect().contains(scene_pos) or len(self.xy) == 0:
            return
        k = self.nearest(self.vb.mapSceneToView(scene_pos))
        if k != self._hover:
            self._hover = k
            self.hover_ring.setData(pos=self.xy[[k]] if k >= 0 else np.zeros((0, 2)))
            self.hovered.emit(k)
