"""The viewer follows the current item: imported boxes ("annotations" layer), mask outlines ("gt"), video frames."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtWidgets import QGraphicsRectItem

from tests.conftest import shared_dataset

pytestmark = pytest.mark.gui


def test_real_sar_chips_show_yolo_boxes_and_ship_masks(qtbot, tmp_project):
    """The presenter alone (in the app the labeling panel replaces the read-only boxes by editable ones)."""
    from anomaly_gui.core.importer import import_into_project
    from anomaly_gui.gui.state import AppState
    from anomaly_gui.gui.viewer import ImageViewer
    from anomaly_gui.gui.viewer_item import ItemPresenter

    root = shared_dataset("hrsid_ships")
    import_into_project(tmp_project, root)
    state = AppState()
    viewer = ImageViewer(state)
    qtbot.addWidget(viewer)
    presenter = ItemPresenter(state, viewer)
    state.set_project(tmp_project)
    with_boxes = [it for it in tmp_project.items(with_annotations=True) if it.annotations]
    assert with_boxes, "the YOLO labels came in as annotations"
    item = with_boxes[0]
    state.set_current_item(item.id)
    assert presenter.item is not None and presenter.item.id == item.id
    assert viewer.image is not None and viewer.image.shape[:2] == (800, 800)
    rects = [i for i in viewer.layer("annotations").childItems() if isinstance(i, QGraphicsRectItem)]
    assert len(rects) == sum(a.kind == "box" for a in item.annotations)
    x1, y1, x2, y2 = item.annotations[0].box()
    assert any(r.rect().getCoords() == pytest.approx((x1, y1, x2, y2)) for r in rects)
    if item.mask_path:
        assert viewer.layer_item_count("gt") == 1
    # boxes follow the boxes toggle
    state.set_display(show_boxes=False)
    assert not viewer.layer("annotations").isVisible()
    state.set_display(show_boxes=True)
    assert viewer.layer("annotations").isVisible()
    # another item: the old overlays go first
    viewer.set_heatmap(np.ones((8, 8), np.float32))
    other = next(it for it in tmp_project.items() if it.id != item.id)
    state.set_current_item(other.id)
    assert viewer.heatmap_item.image is None or not viewer.heatmap_item.isVisible()


def test_video_item_shows_its_first_frame(window, wait_import, tmp_path):
    import cv2

    video = tmp_path / "clips" / "walk.avi"
    video.parent.mkdir()
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for i in range(5):
        frame = np.full((48, 64, 3), 40 * i, np.uint8)
        writer.write(frame)
    writer.release()
    assert window.open_project(tmp_path / "v.agproj")
    window.import_path(video)
    result = wait_import(window)
    assert result is not None and len(result.items) == 1 and result.items[0].kind == "video"
    assert window.viewer.image is not None and window.viewer.image.shape[:2] == (48, 64)
    assert window.viewer.image.mean() < 10, "frame 0 (dark) is shown"
    assert window.browser.model.rowCount() == 1


def test_missing_file_after_import_is_reported_not_fatal(window, wait_import, image_folder, tmp_path):
    assert window.open_project(tmp_path / "m.agproj")
    window.import_path(image_folder)
    assert wait_import(window) is not None
    project = window.state.project
    victim = next(it for it in project.items() if Path(it.path).name == "good_03.png")
    Path(victim.path).unlink()
    window.state.set_current_item(victim.id)
    assert window.viewer.image is None
    assert "good_03.png" in window.presenter.error and "not found" in window.presenter.error
    assert "not found" in window.statusBar().currentMessage()
    window.browser.move(+1)
    assert window.viewer.image is not None


def test_next_items_are_prefetched(window, qtbot, wait_import, image_folder, tmp_path):
    assert window.open_project(tmp_path / "f.agproj")
    window.import_path(image_folder)
    assert wait_import(window) is not None
    model, presenter = window.browser.model, window.presenter
    first = window.state.current_item
    assert first == model.item_id(0)
    nxt = model.item_id(1)
    qtbot.waitUntil(lambda: presenter.prefetcher.cached(nxt), timeout=5000)
    hits = presenter.prefetcher.hits
    qtbot.keyClick(window.viewer.view, "d")
    assert window.state.current_item == nxt
    assert presenter.prefetcher.hits == hits + 1, "D showed the prefetched image"
    assert window.viewer.image is not None
