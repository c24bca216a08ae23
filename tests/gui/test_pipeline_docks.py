"""Runs of every task started from the Train panel go through the one run pipeline and show in their
task's dock: a detection run in the Detection dock (mAP, confidence slider at the run's cut-off), an
embedding run in the Cluster view (its map), whoever started them."""
from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from anomaly_gui.core.project import open_project

from c2_engines import main_window_on, stop_jobs
from task_engines import make_scenes, make_species, register_task_engines

pytestmark = pytest.mark.gui


@pytest.fixture
def make_window(qtbot, tmp_path, monkeypatch):
    register_task_engines(monkeypatch)
    made = []

    def make(items):
        proj = open_project(tmp_path / "p.agproj")
        proj.add_items(items)
        win = main_window_on(qtbot, proj)
        made.append(proj)
        return win

    yield make
    stop_jobs(qtbot)
    for p in made:
        p.close()


def _train_from_panel(qtbot, win, engine: str) -> int:
    tp = win.panels["train"]
    tp.select_engine(engine)
    with qtbot.waitSignal(tp.runFinished, timeout=60000) as blocker:
        qtbot.mouseClick(tp.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not tp.is_running(), timeout=10000)
    return int(blocker.args[0])


def test_detection_run_from_train_panel_shows_map_and_confidence_in_detection_dock(qtbot, make_window, tmp_path):
    win = make_window(make_scenes(tmp_path / "scenes"))
    project = win.state.project
    run_id = _train_from_panel(qtbot, win, "t_brightbox")
    run = project.run(run_id)
    # the detection policy: confidence cut-off, mAP on the test items, no image-score threshold
    assert run.status == "done" and run.task == "detection"
    assert run.threshold == pytest.approx(0.5) and run.metrics["threshold_method"] == "default confidence cut-off"
    assert run.metrics["map50"] > 0.9 and run.metrics["n_test"] == 3 and run.metrics["classes"] == ["ship"]
    assert "mAP@0.5" in win.panels["train"].status.text()
    panel = win.panels["detection"]
    assert win.docks["detection"].isVisible()  # the dock that shows detection runs is raised
    qtbot.waitUntil(lambda: panel.run_id == run_id, timeout=5000)
    assert panel.run_combo.currentData() == run_id and "mAP50" in panel.run_combo.currentText()
    assert panel.conf_slider.value() == 50
    test_item = project.items(split="test")[0]
    win.state.set_current_item(test_item.id)
    assert "mAP@0.5" in panel.summary.text()
    boxes = project.annotations(test_item.id, source="model", run_id=run_id)
    assert panel.table.topLevelItemCount() == len(boxes) == 2
    panel.conf_slider.setValue(80)  # the second ship (brightness 205/255 = 0.80) stays, the first (200) goes
    assert panel.table.topLevelItemCount() == 1


def test_embedding_run_from_train_panel_shows_its_map_in_cluster_view(qtbot, make_window, tmp_path):
    win = make_window(make_species(tmp_path / "species"))
    project = win.state.project
    cluster = win.panels["cluster_view"]
    cluster.method.setCurrentIndex(cluster.method.findData("pca"))
    run_id = _train_from_panel(qtbot, win, "t_colourembed")
    run = project.run(run_id)
    assert run.status == "done" and run.task == "embedding"
    assert run.metrics["novelty_auroc"] == pytest.approx(1.0)  # the bright unknown species is far from both known
    assert "novelty AUROC 1.000" in win.panels["train"].status.text()
    n = project.count_items()
    qtbot.waitUntil(lambda: cluster.cmap is not None, timeout=30000)
    assert cluster.source.currentData() == run_id
    assert len(cluster.es) == n and cluster.cmap.xy.shape == (n, 2)
    assert cluster.es.meta["run_id"] == run_id and set(cluster.es.labels) == {"dark", "gray"}
