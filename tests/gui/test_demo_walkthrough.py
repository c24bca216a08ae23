"""The analyst's first hour, one test per kind of imagery, driven as a user would (pytest-qt, offscreen):
open the demo from the welcome page -> the small run trains in a worker -> move the threshold / confidence /
eps / frame -> the verdicts change -> export. Runs are made tiny here (the demo's own schedule is longer)."""
from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from anomaly_gui.gui import demo as demo_mod

pytestmark = [pytest.mark.gui, pytest.mark.slow]

TINY = {
    "product": {"image_size": 128, "coreset_ratio": 0.05},
    "sar": {"epochs": 1, "min_confidence": 0.0},
    "wildlife": {"epochs": 0, "image_size": 64},
    "video": {"epochs": 1},
}


@pytest.fixture(autouse=True)
def _tiny_runs(monkeypatch):
    for domain, params in TINY.items():
        spec = demo_mod.DEMOS[domain]
        monkeypatch.setitem(demo_mod.DEMOS, domain, dataclasses.replace(spec, params={**spec.params, **params}))


def _open_demo(qtbot, window, domain: str, timeout: int = 120000) -> None:
    assert window.welcome.isVisible() and set(window.welcome.demo_buttons) == {"product", "sar", "wildlife", "video"}
    qtbot.mouseClick(window.welcome.demo_buttons[domain], Qt.MouseButton.LeftButton)
    demo = window.demo
    assert demo.bar.isVisible(), "the status bar shows the demo's progress"
    with qtbot.waitSignal(demo.ready, timeout=timeout, raising=True) as blocker:
        pass
    assert blocker.args == [domain] and demo.trained and not demo.bar.isVisible()
    assert Path(window.state.project.path) == demo_mod.demo_project_path(domain)
    assert not window.welcome.isVisible()
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=2000)


def _shown_docks(window) -> set[str]:
    return {pid for pid, d in window.docks.items() if d.isVisible()}


def _export_report(qtbot, window, out: Path) -> str:
    window.actions_by_name["file.export_report"].trigger()
    dlg = window.export_dialog
    dlg.path_edit.setText(str(out))
    dlg.open_after.setChecked(False)
    qtbot.mouseClick(dlg.export_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dlg.result is not None or bool(dlg.last_error), timeout=60000)
    assert not dlg.last_error, dlg.last_error
    return out.read_text(encoding="utf-8", errors="replace")


def test_product_demo_heatmap_threshold_and_report(qtbot, window, tmp_path, mobilenet_weights):
    _open_demo(qtbot, window, "product")
    shown = _shown_docks(window)
    assert {"review", "train", "browser"} <= shown and not {"video_player", "cluster_view", "detection"} & shown
    hidden = window.docks["video_player"].toggleViewAction()
    assert hidden in window.panels_menu.actions() and not hidden.isChecked(), "hidden docks stay in View ▸ Panels"
    tp = window.panels["train"]
    assert tp.engine_combo.itemData(0) == "patchcore" and "Offered first" in tp.engine_desc.text()
    rp, state = window.panels["review"], window.state
    qtbot.waitUntil(lambda: rp.data is not None, timeout=30000)
    item = window.presenter.item
    assert item.split == "test" and item.is_anomalous and window.viewer.heatmap_item.isVisible()
    rp.threshold.slider.setValue(0)
    assert sum(state.predictions.values()) == len(rp.data) == 18  # 14 test + 4 validation images
    rp.threshold.slider.setValue(rp.threshold.slider.maximum())
    assert sum(state.predictions.values()) == 0 and f"0 of {len(rp.data)}" in rp.summary.text()
    rp.threshold.set_value(float(state.extra["review"].run.threshold))
    rp.threshold.spin.setValue(rp.threshold.spin.value())
    n_flagged = sum(state.predictions.values())
    html = _export_report(qtbot, window, tmp_path / "report.html")
    assert "patchcore" in html and f"{n_flagged}" in html
    # a second open reuses the trained run: no training, straight to the populated view
    window.state.set_project(None)
    with qtbot.waitSignal(window.demo.ready, timeout=30000):
        window.open_demo("product")
    assert not window.demo.trained and len(window.state.project.runs()) == 1


def test_sar_demo_boxes_zone_confidence_and_export(qtbot, window, tmp_path):
    _open_demo(qtbot, window, "sar")
    shown = _shown_docks(window)
    assert "detection" in shown and not {"review", "video_player", "cluster_view", "train"} & shown
    dp, project = window.panels["detection"], window.state.project
    assert [z["name"] for z in project.zones()] == ["Harbour (restricted)"]
    assert dp.engine_combo.itemData(0) == "retinanet"
    assert "finished: test mAP@0.5" in dp.train_status.text() and dp.progress.format() == "finished"
    assert dp.curve.getViewBox().viewRange()[1][0] == pytest.approx(0.0, abs=1e-9), "the mAP axis starts at 0"
    assert dp.tabs.currentIndex() == 0 and dp.run_id is not None
    assert len(dp.zone_tool.rois) == 1, "the restricted zone is drawn on the chip"
    # the confidence slider re-filters the cached boxes: everything at 0, nothing at 1
    dp.conf_slider.setValue(0)
    many = len(dp.detections)
    assert many > 0 and window.viewer.layer_item_count("detections") + window.viewer.layer_item_count("detections:flagged") > 0
    flagged = sum(d.flagged for d in dp.detections)
    assert 0 < flagged == sum(bool(d.reasons) for d in dp.detections), "boxes inside the restricted zone are flagged"
    assert window.viewer.layer_item_count("detections:flagged") > 0
    dp.conf_slider.setValue(100)
    assert dp.detections == [] and "0 detection(s)" in dp.summary.text()
    dp.conf_slider.setValue(0)
    job = dp.export_to(str(tmp_path / "boxes"))
    qtbot.waitUntil(lambda: dp.last_export is not None, timeout=60000)
    assert job is not None and dp.last_export["boxes"] > 0 and dp.last_export["written"] > 0
    assert any((tmp_path / "boxes").rglob("*.png")) or any((tmp_path / "boxes").rglob("*.jpg"))
    assert "retinanet" in _export_report(qtbot, window, tmp_path / "report.html")


def test_wildlife_demo_map_eps_and_noise_filter(qtbot, window, tmp_path):
    _open_demo(qtbot, window, "wildlife")
    shown = _shown_docks(window)
    assert "cluster_view" in shown and not {"review", "video_player", "detection", "train"} & shown
    cp = window.panels["cluster_view"]
    assert cp.cmap is not None and len(cp.cmap.xy) == 18
    dock = window.docks["cluster_view"]
    assert dock.height() >= 0.4 * window.height(), f"the map is a {dock.height()} px strip"
    project = window.state.project
    assert {it.split for it in project.items() if it.label == demo_mod.UNSEEN_SPECIES} == {"test"}
    assert "boar" in cp.es.labels
    scores = dict(zip(cp.es.labels, cp.es.scores.tolist()))
    assert scores["boar"] > 0, "the unseen species is scored outside every one-class model"
    # eps: tiny -> every point is noise; large -> none
    cp.set_eps(1e-3)
    assert len(cp.noise_ids()) == 18 and "18 noise point(s)" in cp.noise_label.text()
    cp.set_eps(1e4)
    assert cp.noise_ids() == []
    cp.set_eps(1e-3)
    qtbot.mouseClick(cp.noise_btn, Qt.MouseButton.LeftButton)
    assert window.state.filter is not None and len(window.state.filter) == 18
    html = _export_report(qtbot, window, tmp_path / "report.html")
    assert "simclr_ocsvm" in html and "boar" in html


def test_video_demo_player_curve_keys_and_csv(qtbot, window, tmp_path):
    _open_demo(qtbot, window, "video")
    shown = _shown_docks(window)
    assert "video_player" in shown and not {"review", "cluster_view", "detection"} & shown
    tp, player = window.panels["train"], window.panels["video_player"]
    assert tp.engine_combo.itemData(0) == "future_frame" == tp.engine_name()
    assert player.clip is not None and player.clip.name.startswith("Test001") and len(player.clip) == 60
    assert player.scores is not None and len(player.scores) == 60
    assert window.docks["video_player"].height() >= 0.45 * window.height()
    player.pause()
    # keys work wherever focus is (here: the browser), unless a text field has it
    player.seek(10)
    window.browser.grid.setFocus()
    qtbot.keyClick(window.browser.grid, Qt.Key.Key_Right)
    assert player.index == 11
    qtbot.keyClick(window.browser.grid, Qt.Key.Key_Left)
    assert player.index == 10
    qtbot.keyClick(window.browser.grid, Qt.Key.Key_Space)
    assert player.playing
    qtbot.keyClick(window.browser.grid, Qt.Key.Key_Space)
    assert not player.playing
    window.browser.search.setFocus()
    qtbot.keyClick(window.browser.search, Qt.Key.Key_Right)
    qtbot.keyClick(window.browser.search, Qt.Key.Key_Space)
    assert player.index == 10 and not player.playing and window.browser.search.text() == " "
    window.browser.search.clear()
    # the threshold decides which frames are anomalous
    player.set_threshold(float(player.scores.min()) - 1e-6)
    assert int(player.detected().sum()) == 60
    player.set_threshold(float(player.scores.max()) + 1e-6)
    assert int(player.detected().sum()) == 0
    player.set_threshold(float(player.scores.mean()))
    n = int(player.detected().sum())
    assert 0 < n < 60
    out = player.export_csv_to(tmp_path / "frames.csv")
    rows = list(csv.DictReader(Path(out).open()))
    assert len(rows) == 60
    assert sum(r["verdict"] == "anomalous" for r in rows) == n
    assert "future_frame" in _export_report(qtbot, window, tmp_path / "report.html")


def test_video_demo_needs_no_imagenet_weights(qtbot, window, monkeypatch):
    """A clone without the MobileNetV2 weights file: the video demo still trains and plays; it shows the predictor
    alone (the appearance term of decision 0036, which needs the weights, is off in the demo)."""
    from anomaly_gui.engines import backbones

    monkeypatch.setattr(backbones, "find_weights", lambda *a, **k: None)  # the engine cannot load them
    _open_demo(qtbot, window, "video")
    run = window.state.project.run(window.state.current_run)
    assert run.engine == "future_frame" and run.status == "done" and run.params["appearance_weight"] == 0.0
    player = window.panels["video_player"]
    assert player.scores is not None and len(player.scores) == 60
