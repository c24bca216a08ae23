"""Labeling as a user does it: keys pick tools, the mouse draws on the viewer, Ctrl+Z / Ctrl+Shift+Z,
and what was drawn is in the project after closing and reopening it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

pytestmark = pytest.mark.gui


@pytest.fixture
def labeled_project(tmp_path: Path) -> Path:
    """A project with three 160x120 images (no annotations)."""
    from PIL import Image

    from anomaly_gui.core.formats.base import DatasetItem
    from anomaly_gui.core.project import open_project

    rng = np.random.default_rng(1)
    items = []
    for k in range(3):
        p = tmp_path / "img" / f"img_{k}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((rng.random((120, 160, 3)) * 200).astype(np.uint8)).save(p)
        items.append(DatasetItem(path=str(p), split="test", label="good", is_anomalous=False, width=160, height=120))
    path = tmp_path / "lab.agproj"
    with open_project(path) as proj:
        proj.add_items(items)
    return path


def _open(window, qtbot, path: Path, item_index: int = 0) -> int:
    assert window.open_project(path)
    iid = window.state.project.item_ids()[item_index]
    window.state.set_current_item(iid)
    qtbot.waitUntil(lambda: window.viewer.image_size == (160, 120), timeout=5000)
    window.activateWindow()
    window.viewer.view.setFocus()
    return iid


def _widget_pos(viewer, x: float, y: float) -> QPoint:
    scene = viewer.view_box.mapViewToScene(QPointF(x, y))
    return viewer.view.mapFromScene(scene)


def _mouse(viewer, kind: QEvent.Type, x: float, y: float, buttons: Qt.MouseButton = Qt.MouseButton.LeftButton) -> None:
    vp = viewer.view.viewport()
    pos = QPointF(_widget_pos(viewer, x, y))
    button = Qt.MouseButton.NoButton if kind == QEvent.Type.MouseMove else Qt.MouseButton.LeftButton
    ev = QMouseEvent(kind, pos, vp.mapToGlobal(pos), button, buttons, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(vp, ev)


def _drag(viewer, points: list[tuple[float, float]]) -> None:
    _mouse(viewer, QEvent.Type.MouseButtonPress, *points[0])
    for p in points[1:]:
        _mouse(viewer, QEvent.Type.MouseMove, *p)
    _mouse(viewer, QEvent.Type.MouseButtonRelease, *points[-1], buttons=Qt.MouseButton.NoButton)


def _click(viewer, x: float, y: float) -> None:
    _mouse(viewer, QEvent.Type.MouseButtonPress, x, y)
    _mouse(viewer, QEvent.Type.MouseButtonRelease, x, y, buttons=Qt.MouseButton.NoButton)


def _key(qtbot, window, key: Qt.Key, mods: Qt.KeyboardModifier = Qt.KeyboardModifier.NoModifier) -> None:
    qtbot.keyClick(window.viewer.view, key, mods)


def _user_shapes(project, iid: int) -> list:
    return [a for a in project.annotations(iid) if a.source == "user"]


def test_draw_box_and_polygon_undo_redo_and_reopen(window, qtbot, labeled_project):
    iid = _open(window, qtbot, labeled_project)
    panel = window.panels["labeling"]
    _key(qtbot, window, Qt.Key.Key_R)
    assert panel.canvas.tool == "rectangle" and panel.tool_buttons["rectangle"].isChecked()
    _drag(window.viewer, [(20, 30), (50, 50), (80, 90)])
    proj = window.state.project
    boxes = _user_shapes(proj, iid)
    assert [a.kind for a in boxes] == ["box"]
    g = boxes[0].geometry
    assert g["x1"] == pytest.approx(20, abs=1.5) and g["y1"] == pytest.approx(30, abs=1.5)
    assert g["x2"] == pytest.approx(80, abs=1.5) and g["y2"] == pytest.approx(90, abs=1.5)
    assert boxes[0].label == "defect" and "defect" in proj.label_classes()

    _key(qtbot, window, Qt.Key.Key_P)
    for x, y in [(100, 20), (140, 25), (130, 70), (105, 60)]:
        _click(window.viewer, x, y)
    _click(window.viewer, 100.5, 20.5)  # a click on the first vertex closes the polygon
    shapes = _user_shapes(proj, iid)
    assert [a.kind for a in shapes] == ["box", "polygon"]
    pts = np.array(shapes[1].geometry["points"])
    assert pts.shape == (4, 2)
    assert np.allclose(pts, [(100, 20), (140, 25), (130, 70), (105, 60)], atol=1.5)
    assert window.viewer.layer_item_count("annotations:labels") == 2
    assert panel.shape_list.count() == 2

    _key(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert [a.kind for a in _user_shapes(proj, iid)] == ["box"]
    _key(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert _user_shapes(proj, iid) == []
    assert window.viewer.layer_item_count("annotations:labels") == 0
    _key(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    _key(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert [a.kind for a in _user_shapes(proj, iid)] == ["box", "polygon"]

    window.state.set_project(None)  # closes the project file
    from anomaly_gui.core.project import open_project

    with open_project(labeled_project) as again:
        kept = _user_shapes(again, iid)
    assert [a.kind for a in kept] == ["box", "polygon"]
    assert kept[0].geometry["x1"] == pytest.approx(20, abs=1.5)
    assert np.allclose(np.array(kept[1].geometry["points"]), pts)


def test_select_move_delete_and_escape(window, qtbot, labeled_project):
    iid = _open(window, qtbot, labeled_project)
    panel = window.panels["labeling"]
    proj = window.state.project
    _key(qtbot, window, Qt.Key.Key_R)
    _drag(window.viewer, [(10, 10), (40, 40)])
    _key(qtbot, window, Qt.Key.Key_P)
    _click(window.viewer, 60, 60)
    _click(window.viewer, 90, 60)
    _key(qtbot, window, Qt.Key.Key_Escape)  # cancels the unfinished polygon
    assert [a.kind for a in _user_shapes(proj, iid)] == ["box"]

    _key(qtbot, window, Qt.Key.Key_V)
    box = _user_shapes(proj, iid)[0]
    box_id = box.id
    w, h = box.geometry["x2"] - box.geometry["x1"], box.geometry["y2"] - box.geometry["y1"]
    roi = panel.canvas._rois[box_id]
    roi.setPos((30, 50))  # what a drag with the mouse ends in (emits sigRegionChangeFinished)
    g = _user_shapes(proj, iid)[0].geometry
    assert (g["x1"], g["y1"], g["x2"], g["y2"]) == pytest.approx((30, 50, 30 + w, 50 + h))
    _key(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert _user_shapes(proj, iid)[0].geometry["x1"] == pytest.approx(10, abs=1.5)

    panel.shape_list.item(0).setSelected(True)
    assert panel.canvas.selected == [box_id]
    _key(qtbot, window, Qt.Key.Key_Delete)
    assert _user_shapes(proj, iid) == []
    _key(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    restored = _user_shapes(proj, iid)
    assert len(restored) == 1 and restored[0].geometry["x1"] == pytest.approx(10, abs=1.5)
    # redo the delete, then undo it again: the re-issued id is followed
    _key(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert _user_shapes(proj, iid) == []
    _key(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert len(_user_shapes(proj, iid)) == 1


def test_resize_box_and_move_polygon_with_their_rois(window, qtbot, labeled_project):
    iid = _open(window, qtbot, labeled_project)
    panel = window.panels["labeling"]
    proj = window.state.project
    _key(qtbot, window, Qt.Key.Key_R)
    _drag(window.viewer, [(10, 10), (40, 30)])
    _key(qtbot, window, Qt.Key.Key_P)
    for x, y in [(60, 60), (100, 60), (80, 100)]:
        _click(window.viewer, x, y)
    _key(qtbot, window, Qt.Key.Key_Return)
    box, poly = _user_shapes(proj, iid)
    _key(qtbot, window, Qt.Key.Key_V)
    roi = panel.canvas._rois[box.id]
    roi.setSize((50, 45))  # a drag of the lower-right handle ends like this
    g = _user_shapes(proj, iid)[0].geometry
    assert g["x2"] - g["x1"] == pytest.approx(50) and g["y2"] - g["y1"] == pytest.approx(45)
    roi = panel.canvas._rois[poly.id]
    roi.setPos((5, -10))  # the whole polygon dragged by 5 right, 10 up
    moved = np.array(_user_shapes(proj, iid)[1].geometry["points"])
    assert np.allclose(moved - np.array(poly.geometry["points"]), [5, -10])
    assert panel.editor.stack.count() == 4  # box, polygon, resize, move


def test_brush_eraser_and_point(window, qtbot, labeled_project):
    from anomaly_gui.core.export.masks import annotation_mask

    iid = _open(window, qtbot, labeled_project)
    panel = window.panels["labeling"]
    proj = window.state.project
    panel.brush_spin.setValue(10)
    messages: list[str] = []
    window.state.message.connect(messages.append)
    _key(qtbot, window, Qt.Key.Key_B)
    assert messages and messages[-1].startswith("Brush")
    _mouse(window.viewer, QEvent.Type.MouseMove, 30, 30, buttons=Qt.MouseButton.NoButton)  # hovering
    assert window.viewer.layer_item_count("annotations:cursor") == 1  # the brush outline follows the cursor
    assert _user_shapes(proj, iid) == []
    _drag(window.viewer, [(20, 60), (60, 60), (100, 60)])
    masks = [a for a in _user_shapes(proj, iid) if a.kind == "mask"]
    assert len(masks) == 1
    m = annotation_mask(masks[0], (160, 120))
    assert m[60, 20:100].all() and not m[30].any()
    area = int(m.sum())
    assert 700 < area < 1100  # a 10 px wide stroke, 80 px long, round ends

    _key(qtbot, window, Qt.Key.Key_X)
    _drag(window.viewer, [(55, 40), (55, 80)])
    m2 = annotation_mask(_user_shapes(proj, iid)[0], (160, 120))
    assert not m2[60, 52:58].any() and m2[60, 30] and m2[60, 90]
    assert m2.sum() < area
    _key(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert int(annotation_mask(_user_shapes(proj, iid)[0], (160, 120)).sum()) == area

    _key(qtbot, window, Qt.Key.Key_K)
    _click(window.viewer, 150, 10)
    pts = [a for a in _user_shapes(proj, iid) if a.kind == "point"]
    assert len(pts) == 1 and pts[0].geometry["x"] == pytest.approx(150, abs=1.5)


def test_verdicts_verified_next_unverified_and_copy(window, qtbot, labeled_project):
    iid = _open(window, qtbot, labeled_project)
    panel = window.panels["labeling"]
    proj = window.state.project
    ids = proj.item_ids()
    _key(qtbot, window, Qt.Key.Key_2)
    assert proj.verdict(iid).verdict == "anomalous" and panel.verdict_buttons["anomalous"].isChecked()
    qtbot.mouseClick(panel.verdict_buttons["unsure"], Qt.MouseButton.LeftButton)
    assert proj.verdict(iid).verdict == "unsure"
    _key(qtbot, window, Qt.Key.Key_F)
    assert proj.verdict(iid).verified and panel.verified_box.isChecked()
    _key(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert not proj.verdict(iid).verified
    _key(qtbot, window, Qt.Key.Key_F)

    _key(qtbot, window, Qt.Key.Key_R)
    _drag(window.viewer, [(10, 10), (30, 40)])
    proj.set_verdict(ids[1], verified=True)
    _key(qtbot, window, Qt.Key.Key_U)  # skips the verified second item
    assert window.state.current_item == ids[2]
    qtbot.waitUntil(lambda: window.viewer.image_size is not None, timeout=5000)
    window.viewer.view.setFocus()
    _key(qtbot, window, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    copied = _user_shapes(proj, ids[2])
    assert [a.kind for a in copied] == ["box"] and copied[0].geometry["x2"] == pytest.approx(30, abs=1.5)
    assert "1 of 3" in panel.progress_label.text() or "2 of 3" in panel.progress_label.text()


def test_label_classes_add_rename_colour_with_undo(window, qtbot, labeled_project):
    iid = _open(window, qtbot, labeled_project)
    panel = window.panels["labeling"]
    proj = window.state.project
    panel.add_class("scratch")
    assert panel.current_label() == "scratch"
    _key(qtbot, window, Qt.Key.Key_R)
    _drag(window.viewer, [(10, 10), (30, 40)])
    assert _user_shapes(proj, iid)[0].label == "scratch"
    panel.rename_class("crack")
    assert "crack" in proj.label_classes() and "scratch" not in proj.label_classes()
    assert _user_shapes(proj, iid)[0].label == "crack"
    panel.recolor_class("#123456")
    assert proj.label_classes()["crack"] == "#123456"
    _key(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    _key(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert _user_shapes(proj, iid)[0].label == "scratch" and "scratch" in proj.label_classes()


def test_label_a_real_mvtec_image_and_export_it(window, qtbot, tmp_path):
    """On a real 1024x1024 screw image: draw a box and paint a mask, export labelme, read it back."""
    import os

    from anomaly_gui.core.export import export_annotations
    from anomaly_gui.core.export.masks import annotation_mask
    from anomaly_gui.core.formats.base import DatasetItem, import_dataset
    from anomaly_gui.core.project import open_project

    data = Path(os.environ.get("ANOMALY_GUI_DATA") or Path(__file__).resolve().parents[3] / "shared" / "data")
    img = data / "mvtec_screw" / "test" / "defect" / "000.png"
    if not img.is_file():
        pytest.skip(f"real image not found at {img}")
    path = tmp_path / "real.agproj"
    with open_project(path) as proj:
        proj.add_items([DatasetItem(path=str(img), split="test", label="defect", is_anomalous=True)])
    assert window.open_project(path)
    iid = window.state.project.item_ids()[0]
    window.state.set_current_item(iid)
    qtbot.waitUntil(lambda: window.viewer.image_size == (1024, 1024), timeout=10000)
    window.activateWindow()
    window.viewer.view.setFocus()
    _key(qtbot, window, Qt.Key.Key_R)
    _drag(window.viewer, [(300, 320), (520, 610)])
    window.panels["labeling"].brush_spin.setValue(40)
    _key(qtbot, window, Qt.Key.Key_B)
    _drag(window.viewer, [(600, 600), (700, 650), (800, 640)])
    proj = window.state.project
    shapes = _user_shapes(proj, iid)
    assert [a.kind for a in shapes] == ["box", "mask"]
    assert shapes[0].box() == pytest.approx((300, 320, 520, 610), abs=3)
    m = annotation_mask(shapes[1], (1024, 1024))
    assert m[600:650, 600:800].any() and m.sum() > 40 * 200
    export_annotations(proj, "labelme", tmp_path / "lm")
    back = import_dataset(tmp_path / "lm", "labelme")
    anns = back.items[0].annotations
    assert [a.kind for a in anns][0] == "box" and anns[0].box() == pytest.approx(shapes[0].box())
    assert (annotation_mask(anns[1], (1024, 1024)) == m).all()  # the painted mask comes back as its outline
