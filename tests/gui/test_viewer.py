"""ImageViewer: any image type, overlay layers, toggles, zoom at the cursor, mouse signals in image pixels."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QGraphicsPathItem, QGraphicsRectItem

from anomaly_gui.core.formats.base import Annotation
from anomaly_gui.gui.state import AppState
from anomaly_gui.gui.viewer import ImageViewer

pytestmark = pytest.mark.gui


@pytest.fixture
def viewer(qtbot):
    v = ImageViewer(AppState())
    qtbot.addWidget(v)
    v.resize(640, 480)
    v.show()
    qtbot.waitExposed(v)
    return v


@pytest.mark.parametrize("arr", [
    np.arange(200 * 100, dtype=np.uint16).reshape(100, 200) * 3,
    np.linspace(-1.5, 2.5, 100 * 200, dtype=np.float32).reshape(100, 200),
    np.full((100, 200, 4), 200, np.uint8),
    np.zeros((100, 200, 1), np.uint8),
])
def test_any_image_type_and_pixel_readout(viewer, arr):
    viewer.set_image(arr)
    assert viewer.image_size == (200, 100)
    text = viewer.pixel_text(12.7, 40.2)
    assert text.startswith("x 12, y 40: ")
    value = np.atleast_1d(arr[40, 12]).ravel()[0]
    assert text.split(": ")[1].split()[0] == (f"{float(value):.4g}" if arr.dtype.kind == "f" else str(int(value)))
    assert viewer.pixel_text(-1, 5) == "" and viewer.pixel_text(200, 5) == ""


def test_heatmap_is_stretched_to_the_image_and_follows_opacity(viewer):
    viewer.set_image(np.zeros((256, 512, 3), np.uint8))
    viewer.set_heatmap(np.random.default_rng(0).random((32, 64)).astype(np.float32), levels=(0.2, 0.9))
    rect = viewer.heatmap_item.mapRectToParent(viewer.heatmap_item.boundingRect())
    assert (rect.width(), rect.height()) == pytest.approx((512, 256))
    assert viewer.heatmap_item.levels == pytest.approx([0.2, 0.9])
    viewer.state.set_display(heatmap_opacity=0.8)
    assert viewer.heatmap_item.opacity() == pytest.approx(0.8)
    viewer.state.set_display(show_heatmap=False)
    assert not viewer.heatmap_item.isVisible()
    viewer.state.set_display(show_heatmap=True)
    assert viewer.heatmap_item.isVisible()
    viewer.set_heatmap(None)
    assert not viewer.heatmap_item.isVisible()
    with pytest.raises(ValueError):
        viewer.set_heatmap(np.zeros((2, 2, 2)))


def test_mask_contours_scaled_to_the_image(viewer):
    viewer.set_image(np.zeros((200, 400), np.uint8))
    mask = np.zeros((50, 100), bool)
    mask[10:20, 30:40] = True  # in image pixels: x 120..160, y 40..80
    mask[30:35, 70:90] = True
    viewer.set_mask_contours(mask, "#ff0000", layer="gt")
    (item,) = viewer.layer("gt").childItems()
    assert isinstance(item, QGraphicsPathItem)
    assert item.path().toFillPolygons().__len__() == 2
    br = item.path().boundingRect()
    assert br.left() == pytest.approx(120 + 2, abs=2.5) and br.top() == pytest.approx(40 + 2, abs=2.5)
    assert br.right() == pytest.approx(360, abs=4) and br.bottom() == pytest.approx(140, abs=4)
    viewer.set_mask_contours(None, layer="gt")
    assert viewer.layer_item_count("gt") == 0


def test_boxes_and_polygons_with_labels_and_scores(viewer):
    import pyqtgraph as pg

    viewer.set_image(np.zeros((100, 100, 3), np.uint8))
    anns = [
        Annotation("box", "ship", {"x1": 10, "y1": 20, "x2": 40, "y2": 60}, score=0.87),
        Annotation("polygon", "scratch", {"points": [[50, 50], [90, 55], [70, 90]]}),
        Annotation("point", "x", {"x": 1, "y": 1}),
    ]
    viewer.set_boxes(anns, {"ship": "#00ff00"})
    items = viewer.layer("boxes").childItems()
    rects = [i for i in items if isinstance(i, QGraphicsRectItem)]
    texts = [i.textItem.toPlainText() for i in items if isinstance(i, pg.TextItem)]
    assert len(rects) == 1 and rects[0].rect().getCoords() == (10, 20, 40, 60)
    assert rects[0].pen().color().name() == "#00ff00"
    assert sorted(texts) == ["scratch", "ship 0.87"]
    viewer.set_polygons([[[0, 0], [10, 0], [10, 10]], anns[1]], layer="zones")
    assert viewer.layer_item_count("zones") == 2


def test_generic_layers_and_overlay_toggle(viewer):
    viewer.set_image(np.zeros((50, 50), np.uint8))
    zone = viewer.layer("zones")
    zone.addItem(QGraphicsRectItem(0, 0, 10, 10))
    QGraphicsRectItem(5, 5, 10, 10).setParentItem(viewer.layer("video:marks"))
    viewer.set_boxes([Annotation("box", "a", {"x1": 1, "y1": 1, "x2": 5, "y2": 5})], layer="detections")
    assert {"zones", "video:marks", "detections"} <= set(viewer.layer_names())
    viewer.state.set_display(show_boxes=False)
    assert not viewer.layer("detections").isVisible()
    assert viewer.layer("video:marks").isVisible(), "other layers stay while any overlay flag is on"
    viewer.state.set_display(show_heatmap=False, show_contours=False)
    assert not viewer.layer("video:marks").isVisible() and not viewer.layer("zones").isVisible()
    viewer.state.set_display(show_heatmap=True, show_contours=True, show_boxes=True)
    assert viewer.layer("zones").isVisible() and viewer.layer("detections").isVisible()
    viewer.clear_layers("video")
    assert viewer.layer_item_count("video:marks") == 0 and viewer.layer_item_count("detections") == 2
    viewer.clear_overlays()
    assert all(viewer.layer_item_count(n) == 0 for n in viewer.layer_names())


def test_wheel_zooms_at_the_cursor_and_fit_restores(viewer, qtbot):
    viewer.set_image(np.zeros((300, 400), np.uint8))
    qtbot.wait(20)
    viewer.fit()
    scale0 = viewer.view_scale()
    vp = viewer.view.viewport()
    pos = QPoint(vp.width() // 4, vp.height() // 3)
    before = viewer.view_box.mapSceneToView(viewer.view.mapToScene(pos))
    for mods in (Qt.KeyboardModifier.NoModifier, Qt.KeyboardModifier.ControlModifier):
        ev = QWheelEvent(QPointF(pos), QPointF(vp.mapToGlobal(pos)), QPoint(0, 0), QPoint(0, 120),
                         Qt.MouseButton.NoButton, mods, Qt.ScrollPhase.NoScrollPhase, False)
        QApplication.sendEvent(vp, ev)
    assert viewer.view_scale() > scale0 * 1.2
    after = viewer.view_box.mapSceneToView(viewer.view.mapToScene(pos))
    assert (after.x(), after.y()) == pytest.approx((before.x(), before.y()), abs=2.0), "zoom keeps the point under the cursor"
    viewer.fit()
    assert viewer.view_scale() == pytest.approx(scale0, rel=0.01)
    viewer.zoom_by(2.0)
    assert viewer.view_scale() == pytest.approx(2 * scale0, rel=0.02)
    viewer.actual_pixels()
    assert viewer.view_scale() == pytest.approx(1.0, rel=0.02)
    with pytest.raises(ValueError):
        viewer.zoom_by(0)


def test_click_and_move_signals_in_image_pixels(viewer, qtbot):
    viewer.set_image(np.zeros((100, 100), np.uint8))
    qtbot.wait(20)
    vp = viewer.view.viewport()
    target = viewer.view.mapFromScene(viewer.view_box.mapViewToScene(QPointF(25.5, 70.5)))
    moves: list[tuple[float, float]] = []
    viewer.mouseMoved.connect(lambda x, y: moves.append((x, y)))
    qtbot.mouseMove(vp, target)
    qtbot.waitUntil(lambda: bool(moves), timeout=2000)
    assert moves[-1] == pytest.approx((25.5, 70.5), abs=1.0)
    with qtbot.waitSignal(viewer.imageClicked, timeout=2000) as sig:
        qtbot.mouseClick(vp, Qt.MouseButton.LeftButton, pos=target)
    assert sig.args == pytest.approx([25.5, 70.5], abs=1.0)


def test_placeholder_and_clear(viewer):
    from PySide6.QtWidgets import QLabel

    label = QLabel("welcome")
    viewer.set_placeholder(label)
    viewer.show_placeholder(True)
    assert label.isVisible() and not viewer.view.isVisible()
    viewer.set_image(np.zeros((10, 10), np.uint8))
    assert viewer.view.isVisible(), "an image replaces the placeholder"
    viewer.set_info("a.png")
    viewer.clear_image()
    assert viewer.image is None and viewer.info_label.text() == ""
