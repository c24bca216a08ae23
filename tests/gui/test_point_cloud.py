"""The Cluster view's point raster: points land where the axes say, in their colour, later codes on top,
clipped to the plot; a recolour changes only colours."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtGui import QColor

from anomaly_gui.gui.cluster_view import ClusterPlot
from anomaly_gui.gui.point_cloud import premultiplied_argb

pytestmark = pytest.mark.gui


def _pixel(plot: ClusterPlot, img, x: float, y: float) -> QColor:
    p = plot.view_to_widget(x, y)
    return QColor(img.pixel(int(round(p.x())), int(round(p.y()))))


def test_points_are_drawn_at_their_position_in_their_colour_with_later_codes_on_top(qtbot):
    plot = ClusterPlot()
    qtbot.addWidget(plot)
    plot.resize(400, 300)
    plot.show()
    qtbot.waitExposed(plot)
    xy = np.array([[0.0, 0.0], [10.0, 10.0], [5.0, 5.0], [5.0, 5.0]])
    red, green, blue = QColor("#ff0000"), QColor("#00ff00"), QColor("#0000ff")
    plot.set_points(xy, np.array([0, 1, 2, 1]), [pg.mkBrush(red), pg.mkBrush(green), pg.mkBrush(blue)])
    assert plot.point_count() == 4
    img = plot.viewport().grab().toImage()
    assert _pixel(plot, img, 0, 0) == red
    assert _pixel(plot, img, 10, 10) == green
    assert _pixel(plot, img, 5, 5) == blue  # code 2 over code 1 at the same place
    assert _pixel(plot, img, 2.5, 7.5) != red and _pixel(plot, img, 2.5, 7.5) != green  # background between
    plot.set_points(xy, np.array([1, 0, 0, 0]), [pg.mkBrush(red), pg.mkBrush(green)], autorange=False)
    img = plot.viewport().grab().toImage()
    assert _pixel(plot, img, 0, 0) == green and _pixel(plot, img, 10, 10) == red
    plot.set_points(xy, np.zeros(4, int), [pg.mkBrush(red)], visible=np.array([True, False, True, True]))
    assert plot.point_count() == 3
    img = plot.viewport().grab().toImage()
    assert _pixel(plot, img, 10, 10) != red  # hidden point not drawn


def test_points_land_in_place_when_the_plot_sits_inside_a_window(qtbot):
    """In the main window the plot is a dock's child: the painter's device transform then also holds the
    dock's offset in the window. Points were drawn shifted by it (an empty cluster map in the window)."""
    from PySide6.QtWidgets import QVBoxLayout, QWidget

    top = QWidget()
    qtbot.addWidget(top)
    lay = QVBoxLayout(top)
    lay.setContentsMargins(180, 140, 0, 0)
    plot = ClusterPlot()
    lay.addWidget(plot)
    top.resize(700, 560)
    top.show()
    qtbot.waitExposed(top)
    red = QColor("#ff0000")
    plot.set_points(np.array([[0.0, 0.0], [10.0, 10.0], [3.0, 8.0]]), np.zeros(3, int), [pg.mkBrush(red)])
    img = top.grab().toImage()  # the whole window, as a screenshot (and the screen's backing store) paints it
    for x, y in ((0.0, 0.0), (10.0, 10.0), (3.0, 8.0)):
        at = plot.viewport().mapTo(top, plot.view_to_widget(x, y).toPoint())
        assert QColor(img.pixel(at.x(), at.y())) == red, (x, y)
    shifted = plot.viewport().mapTo(top, plot.view_to_widget(3.0, 8.0).toPoint()) + plot.mapTo(top, plot.rect().topLeft())
    assert not top.rect().contains(shifted) or QColor(img.pixel(shifted.x(), shifted.y())) != red


def test_premultiplied_colours():
    out = premultiplied_argb([QColor(255, 0, 0, 255), QColor(200, 100, 50, 128)])
    assert out[0] == 0xFFFF0000
    assert out[1] == (128 << 24) | (round(200 * 128 / 255) << 16) | (round(100 * 128 / 255) << 8) | round(50 * 128 / 255)
