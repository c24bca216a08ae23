"""A scatter item for tens of thousands of points: one raster per repaint, drawn as one image.

pyqtgraph's ScatterPlotItem draws one pixmap fragment per point and rebuilds per-point records on every
`setData`; at 10,000 points that is ~30 ms a repaint and ~60 ms a recolour (CPU time). Here the points are
disks of one pixel size, each with a colour code: a repaint maps them to device pixels with the painter's
transform, writes code + 1 at the centres of a uint16 buffer (points sorted by code), grows the centres
into disks with one `cv2.dilate` (a maximum filter: higher codes stay on top), looks the codes up in the
colour table, and draws the result with one `drawImage`. A recolour only replaces codes and table.
"""
from __future__ import annotations

import cv2
import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF
from PySide6.QtGui import QColor, QImage, QPainter

MAX_COLOURS = 65534


def premultiplied_argb(colors: list[QColor]) -> np.ndarray:
    """(k,) uint32 premultiplied ARGB of each colour, the pixel format of QImage.Format_ARGB32_Premultiplied."""
    out = np.zeros(len(colors), np.uint32)
    for i, c in enumerate(colors):
        a = c.alpha()
        r, g, b = (round(v * a / 255) for v in (c.red(), c.green(), c.blue()))
        out[i] = (a << 24) | (r << 16) | (g << 8) | b
    return out


def disk_kernel(size: float) -> np.ndarray:
    """uint8 structuring element of a filled disk `size` pixels across."""
    r = max(0.5, size / 2.0)
    k = int(np.ceil(r))
    dy, dx = np.mgrid[-k : k + 1, -k : k + 1]
    return (dx**2 + dy**2 <= r * r).astype(np.uint8)


class PointCloudItem(pg.GraphicsObject):
    """Points (x, y) in data coordinates with a colour code each; higher codes drawn on top."""

    def __init__(self, size: float = 7.0) -> None:
        super().__init__()
        self._xy = np.zeros((0, 2), np.float64)
        self._codes = np.zeros(0, np.uint16)  # colour index + 1 per point (0: no point)
        self._lut = np.zeros(1, np.uint32)  # 0 -> transparent, then one premultiplied ARGB per code
        self._data_rect = QRectF()
        self._last_image: np.ndarray | None = None
        self.set_size(size)

    def set_size(self, size: float) -> None:
        self.size = float(size)
        self._kernel = disk_kernel(self.size)
        self._radius = self._kernel.shape[0] // 2
        self.prepareGeometryChange()
        self.update()

    def set_data(self, xy: np.ndarray, codes: np.ndarray, colors: np.ndarray) -> None:
        """Points (n, 2), their colour index (n,) into `colors` (k,) premultiplied ARGB; higher codes on top."""
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        codes = np.asarray(codes, np.int64).reshape(-1)
        if len(colors) > MAX_COLOURS:
            raise ValueError(f"at most {MAX_COLOURS} colours per point cloud, got {len(colors)}")
        order = np.argsort(codes, kind="stable")
        self.prepareGeometryChange()
        self._xy = xy[order]
        self._codes = (codes[order] + 1).astype(np.uint16)
        self._lut = np.concatenate([np.zeros(1, np.uint32), np.asarray(colors, np.uint32).reshape(-1)])
        if len(xy):
            (x0, y0), (x1, y1) = xy.min(0), xy.max(0)
            self._data_rect = QRectF(x0, y0, max(x1 - x0, 1e-12), max(y1 - y0, 1e-12))
        else:
            self._data_rect = QRectF()
        self.informViewBoundsChanged()
        self.update()

    def set_colors(self, colors: np.ndarray) -> None:
        """A new colour table for the same codes (a recolour that keeps the grouping)."""
        self._lut = np.concatenate([np.zeros(1, np.uint32), np.asarray(colors, np.uint32).reshape(-1)])
        self.update()

    def __len__(self) -> int:
        return len(self._xy)

    # -- pyqtgraph / Qt geometry ------------------------------------------------------------
    def dataBounds(self, ax: int, frac: float = 1.0, orthoRange=None):  # noqa: N802 (pyqtgraph naming)
        if not len(self._xy):
            return None, None
        col = self._xy[:, ax]
        return float(col.min()), float(col.max())

    def pixelPadding(self) -> float:  # noqa: N802 (pyqtgraph naming): room for the disks at the edges
        return float(self._radius + 1)

    def boundingRect(self) -> QRectF:  # noqa: N802 (Qt naming)
        if self._data_rect.isNull():
            return QRectF()
        px, py = self.pixelVectors()
        w = abs(px.x()) if px is not None else 0.0
        h = abs(py.y()) if py is not None else 0.0
        pad = self._radius + 1
        return self._data_rect.adjusted(-w * pad, -h * pad, w * pad, h * pad)

    def viewTransformChanged(self) -> None:  # noqa: N802 (pyqtgraph naming): the pixel padding changes
        self.prepareGeometryChange()
        super().viewTransformChanged()

    # -- drawing ----------------------------------------------------------------------------
    def paint(self, p: QPainter, *args) -> None:
        if len(self._xy) == 0:
            return
        # the painter's own (world) transform, not deviceTransform(): in a window the latter also holds the
        # widget's offset in the window's backing store, which the painter adds again after resetTransform()
        # below (the points landed shifted by the dock's position: an empty cluster map in the main window)
        t = p.worldTransform()
        dev = p.device()
        dpr = float(dev.devicePixelRatioF()) if hasattr(dev, "devicePixelRatioF") else 1.0
        W, H = int(round(dev.width() * dpr)), int(round(dev.height() * dpr))
        if W <= 0 or H <= 0:
            return
        x, y = self._xy[:, 0], self._xy[:, 1]
        px = np.rint((x * t.m11() + y * t.m21() + t.dx()) * dpr).astype(np.intp)
        py = np.rint((x * t.m12() + y * t.m22() + t.dy()) * dpr).astype(np.intp)
        k = self._radius
        keep = (px >= -k) & (px < W + k) & (py >= -k) & (py < H + k)  # disks that touch the viewport
        buf = np.zeros((H + 2 * k, W + 2 * k), np.uint16)
        buf[py[keep] + k, px[keep] + k] = self._codes[keep]  # sorted by code: the highest code wins a pixel
        buf = cv2.dilate(buf, self._kernel)
        img = np.ascontiguousarray(self._lut[buf[k : k + H, k : k + W]])
        qimg = pg.functions.ndarray_to_qimage(img, QImage.Format.Format_ARGB32_Premultiplied)
        qimg.setDevicePixelRatio(dpr)
        p.save()
        p.resetTransform()
        p.drawImage(0, 0, qimg)
        p.restore()
        self._last_image = img  # keeps the buffer alive while Qt may still read it
