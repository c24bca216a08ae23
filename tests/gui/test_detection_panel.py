"""Detection panel as an analyst uses it: draw a restricted zone on the viewer, see the detections in it
flagged; confidence slider re-filters cached boxes; accept / reject / edit; export with boxes drawn."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt

from anomaly_gui.core.formats.base import Annotation, DatasetItem

pytestmark = pytest.mark.gui


def _box(x1, y1, x2, y2, score, label="ship"):
    return Annotation("box", label, {"x1": x1, "y1": y1, "x2": x2, "y2": y2}, score=score, source="model")


@pytest.fixture
def detection_project(tmp_path):
    """Two 200x160 images; a finished detection run whose cached boxes are stored like a detector stores them."""
    from PIL import Image

    from anomaly_gui.core.project import open_project

    paths = []
    for k in range(2):
        img = np.full((160, 200, 3), 40, np.uint8)
        img[20:40, 20:50] = 220
        img[100:130, 140:180] = 220
        p = tmp_path / f"scene_{k}.png"
        Image.fromarray(img).save(p)
        paths.append(p)
    proj = open_project(tmp_path / "det.agproj")
    ids = proj.add_items([DatasetItem(path=str(p), split="test", width=200, height=160) for p in paths])
    run = proj.create_run("yolo", "detection", {})
    proj.update_run(run.id, status="done", metrics={"classes": ["ship"]})
    proj.add_annotations(ids[0], [_box(20, 20, 50, 40, 0.9), _box(140, 100, 180, 130, 0.8), _box(60, 60, 80, 80, 0.3),
                                  _box(150, 20, 170, 40, 0.7, label="whale")], run_id=run.id)
    proj.save_scores(run.id, ids, [0.9, 0.0])
    yield proj, ids, run.id
    proj.close()


def _panel(window, project, item_id):
    window.state.set_project(project)
    panel = window.panels["detection"]
    window.docks["detection"].raise_()
    window.state.set_current_item(item_id)
    return panel


def _click_image(qtbot, viewer, x, y, double=False):
    from anomaly_gui.gui.zone_tool import image_to_widget

    pos = image_to_widget(viewer, x, y)
    if double:  # what a real double-click delivers: click, double-click press, release
        qtbot.mouseClick(viewer.view.viewport(), Qt.MouseButton.LeftButton, pos=pos)
        qtbot.mouseDClick(viewer.view.viewport(), Qt.MouseButton.LeftButton, pos=pos)
        qtbot.mouseRelease(viewer.view.viewport(), Qt.MouseButton.LeftButton, pos=pos)
    else:
        qtbot.mouseClick(viewer.view.viewport(), Qt.MouseButton.LeftButton, pos=pos)


def test_drawn_zone_flags_detections_inside(window, qtbot, detection_project, tmp_path):
    project, ids, run_id = detection_project
    panel = _panel(window, project, ids[0])
    qtbot.waitUntil(lambda: window.viewer.image is not None)
    window.viewer.fit()
    qtbot.wait(50)
    assert panel.run_id == run_id
    # default slider 0.5: three boxes (0.9, 0.8, 0.7 'whale'); the whale is unseen in training
    assert panel.table.topLevelItemCount() == 3
    flags = {panel.table.topLevelItem(r).text(0): panel.table.topLevelItem(r).text(3) for r in range(3)}
    assert "not seen in training" in flags["whale"]
    assert sum(1 for d in panel.detections if d.flagged) == 1

    # draw a zone around the lower-right ship: click four vertices, close with Enter
    qtbot.mouseClick(panel.draw_zone_button, Qt.MouseButton.LeftButton)
    assert panel.zone_tool.drawing
    for x, y in [(120, 90), (195, 90), (195, 150)]:
        _click_image(qtbot, window.viewer, x, y)
    _click_image(qtbot, window.viewer, 120, 150)
    assert len(panel.zone_tool.points) == 4
    qtbot.keyClick(window.viewer.view, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: len(project.zones()) == 1)
    zone = project.zones()[0]
    assert np.allclose(zone["polygon"], [[120, 90], [195, 90], [195, 150], [120, 150]], atol=2.0)
    qtbot.waitUntil(lambda: sum(1 for d in panel.detections if d.flagged) == 2)
    flagged = {tuple(round(v) for v in d.ann.box()): d.reasons for d in panel.detections if d.flagged}
    assert any("restricted zone 'Zone 1'" in r for r in flagged[(140, 100, 180, 130)])
    assert window.viewer.layer_item_count("detections:flagged") >= 2  # drawn in red (box + caption each)
    assert panel.zone_list.count() == 1

    # the zone is editable by dragging its vertices: pulling two corners left of the ship clears the flag
    roi = panel.zone_tool.rois[zone["id"]]
    handles = roi.getHandles()
    roi.movePoint(handles[1], QPointF(130, 90), finish=False)  # what dragging a vertex handle does
    roi.movePoint(handles[2], QPointF(130, 150), finish=True)
    qtbot.waitUntil(lambda: sum(1 for d in panel.detections if d.flagged) == 1)
    assert np.allclose(project.zones()[0]["polygon"][1:3], [[130, 90], [130, 150]], atol=1.0)
    # a second, double-click-closed zone around the first ship
    panel.start_zone()
    for x, y in [(10, 10), (60, 10), (60, 50)]:  # a rectangle: the ship's centre (35, 30) is well inside
        _click_image(qtbot, window.viewer, x, y)
    _click_image(qtbot, window.viewer, 10, 50, double=True)
    qtbot.waitUntil(lambda: len(project.zones()) == 2)
    qtbot.waitUntil(lambda: any("Zone 2" in r for d in panel.detections for r in d.reasons))
    # delete the selected zone with the Delete button
    panel.zone_list.setCurrentRow(1)
    qtbot.mouseClick(panel.delete_zone_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(project.zones()) == 1)


def test_slider_review_and_export(window, qtbot, detection_project, tmp_path):
    project, ids, run_id = detection_project
    panel = _panel(window, project, ids[0])
    qtbot.waitUntil(lambda: panel.table.topLevelItemCount() == 3)
    panel.conf_slider.setValue(20)  # cached boxes re-filtered: no model run
    assert panel.table.topLevelItemCount() == 4 and panel.conf_label.text() == "0.20"
    assert window.viewer.layer_item_count("detections") + window.viewer.layer_item_count("detections:flagged") == 8
    qtbot.keyClick(panel.conf_slider, Qt.Key.Key_End)
    assert panel.conf_slider.value() == 100 and panel.table.topLevelItemCount() == 0
    panel.conf_slider.setValue(50)

    # reject the first (0.9) box, accept the second, via the buttons
    panel.table.topLevelItem(0).setSelected(True)
    qtbot.mouseClick(panel.reject_button, Qt.MouseButton.LeftButton)
    assert panel.table.topLevelItem(0).text(2) == "rejected"
    anns = {a.score: a for a in project.annotations(ids[0], source="model")}
    assert anns[0.9].status == "rejected"
    panel.table.clearSelection()
    panel.table.topLevelItem(1).setSelected(True)
    qtbot.mouseClick(panel.accept_button, Qt.MouseButton.LeftButton)
    assert {a.score: a.status for a in project.annotations(ids[0], source="model")}[0.8] == "accepted"

    # edit a box: the ROI appears; moving it and clicking again saves the geometry
    panel.table.clearSelection()
    panel.table.topLevelItem(1).setSelected(True)
    qtbot.mouseClick(panel.edit_button, Qt.MouseButton.LeftButton)
    assert panel.edit_roi is not None
    panel.edit_roi.setPos([138, 98])
    qtbot.mouseClick(panel.edit_button, Qt.MouseButton.LeftButton)
    edited = {a.score: a for a in project.annotations(ids[0], source="model")}[0.8]
    assert edited.box() == pytest.approx((138, 98, 178, 128))

    # export: every scored image, boxes drawn, a CSV with the flags
    panel.export_to(str(tmp_path / "export"))
    qtbot.waitUntil(lambda: panel.last_export is not None, timeout=20000)
    assert panel.last_export["written"] == 2
    out = tmp_path / "export" / "scene_0.png"
    from anomaly_gui.core.imageio import read_image

    drawn = read_image(out)
    assert drawn.shape == (160, 200, 3)
    assert tuple(drawn[128, 160]) != (220, 220, 220)  # a box edge was drawn over the ship
    csv_text = (tmp_path / "export" / "detections.csv").read_text()
    assert "whale" in csv_text and "not seen in training" in csv_text and "rejected" not in csv_text
    window.grab().save(str(tmp_path / "panel.png"))


def test_rules_editor_changes_flags(window, qtbot, detection_project):
    project, ids, run_id = detection_project
    panel = _panel(window, project, ids[0])
    qtbot.waitUntil(lambda: panel.table.topLevelItemCount() == 3)
    panel.tabs.setCurrentIndex(2)
    low = panel.rules_editor.findChild(type(panel.rules_editor.boxes[0]), "rule_low_confidence")
    low.setChecked(True)  # default cut-off 0.6: nothing shown is under it
    spin = panel.rules_editor.findChild(object, "rule_low_confidence_below")
    spin.setValue(0.85)  # now 0.8 and 0.7 are 'unsure'
    assert sum(1 for d in panel.detections if d.flagged) == 2
    from anomaly_gui.core.rules import load_rules

    saved = {r.kind: r for r in load_rules(project)}
    assert saved["low_confidence"].enabled and saved["low_confidence"].value("below") == pytest.approx(0.85)
    unseen = panel.rules_editor.findChild(object, "rule_unseen_class")
    unseen.setChecked(False)
    assert sum(1 for d in panel.detections if d.flagged) == 2  # whale is still 'unsure' (0.7)


def test_train_from_panel_plots_map_live(window, qtbot, tmp_path):
    """Train button -> worker -> per-epoch mAP on the live plot -> run with test mAP -> boxes reviewed."""
    from pathlib import Path

    import torch

    from anomaly_gui.core.formats.base import import_dataset
    from anomaly_gui.core.project import open_project

    torch.set_num_threads(1)  # oversubscribed CI cores: one thread avoids OpenMP spin-waits
    sar = Path(__file__).resolve().parents[2] / "sample_data" / "sar"
    if not sar.is_dir():
        pytest.skip("sample_data/sar missing")
    project = open_project(tmp_path / "sar.agproj")
    project.add_items(import_dataset(sar).items)
    window.state.set_project(project)
    panel = window.panels["detection"]
    panel.tabs.setCurrentIndex(1)
    panel.engine_combo.setCurrentIndex(panel.engine_combo.findData("retinanet"))
    panel.param_form.set_values({"epochs": 2, "crops_per_epoch": 16, "batch": 4, "pretrained": False, "lr": 0.003})
    panel.device_combo.setCurrentText("cpu")
    qtbot.mouseClick(panel.train_button, Qt.MouseButton.LeftButton)
    assert panel.job is not None and not panel.train_button.isEnabled()
    qtbot.waitUntil(lambda: panel.job is None, timeout=300_000)
    assert f"Run #{project.runs('detection')[-1].id} finished: test mAP@0.5" in panel.train_status.text()
    assert panel.progress.format() == "finished", "the end of training says so (not 'idle')"
    ymin, ymax = panel.curve.getViewBox().viewRange()[1]
    assert ymin == pytest.approx(0.0, abs=1e-9) and ymax <= 1.0, "the mAP axis starts at 0"
    assert len(panel.curve.entries) == 2  # one point per epoch, plotted as the log arrived
    xs, ys = panel.curve.map50.getData()
    assert list(xs) == [1.0, 2.0] and all(0 <= y <= 1 for y in ys)
    run = project.runs("detection")[-1]
    assert run.status == "done" and run.metrics["classes"] == ["ship"]
    assert 0.0 <= run.metrics["map50"] <= 1.0 and run.metrics["n_test"] == 4
    assert panel.run_id == run.id
    test_item = project.items(split="test")[0]
    window.state.set_current_item(test_item.id)
    panel.conf_slider.setValue(0)  # every cached box of the run on this item
    cached = project.annotations(test_item.id, source="model", run_id=run.id)
    assert panel.table.topLevelItemCount() == len(cached)
    project.close()
