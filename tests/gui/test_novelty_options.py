"""The novelty engine's animal-crop and scorer options as a user meets them: in the Train panel's form (a run
started there stores the choice, reports how photos were cropped and which setting validation chose, shown
in the Runs panel) and in the Cluster view's embed controls."""
from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QSpinBox

from anomaly_gui.core.project import open_project

from c2_engines import main_window_on, stop_jobs
from task_engines import make_species

pytestmark = pytest.mark.gui


@pytest.fixture
def window(qtbot, tmp_path):
    from anomaly_gui.engines.embedding.network import find_mobilenet_weights

    try:
        find_mobilenet_weights()
    except Exception as exc:  # noqa: BLE001 - a clone without the offline weights
        pytest.skip(f"ImageNet MobileNetV2 weights not available: {exc}")
    proj = open_project(tmp_path / "p.agproj")
    proj.add_items(make_species(tmp_path / "species"))
    win = main_window_on(qtbot, proj)
    yield win
    stop_jobs(qtbot)
    proj.close()


def test_train_panel_animal_crop_choice_reaches_the_run(qtbot, window):
    tp = window.panels["train"]
    cluster = window.panels["cluster_view"]
    cluster.method.setCurrentIndex(cluster.method.findData("pca"))  # the run's map follows: quick
    tp.select_engine("simclr_ocsvm")
    box = tp.form.widget("animal_crop")
    assert isinstance(box, QComboBox) and box.currentData() == "auto"  # whole or cam_day, chosen per fit
    assert [box.itemData(i) for i in range(box.count())] == ["auto", "cam_day", "cam", "whole"]
    assert "infrared" in box.toolTip()
    assert "activation map" in box.toolTip()
    steps = tp.form.widget("cam_steps")  # advanced: the activation-map zoom steps
    assert isinstance(steps, QSpinBox) and steps.value() == 1 and (steps.minimum(), steps.maximum()) == (1, 3)
    assert tp.form.widget("flip_average").isChecked()
    scorer = tp.form.widget("scorer")  # the scoring options of issue 14, each with calibrated per-species scales
    assert isinstance(scorer, QComboBox) and [scorer.itemData(i) for i in range(scorer.count())] == ["auto", "knn", "mahalanobis", "ocsvm"]
    assert scorer.currentData() == "auto" and "leave-one-species-out" in scorer.toolTip()
    feats = tp.form.widget("features")  # raw = the untrained baselines' features, a candidate of auto
    assert isinstance(feats, QComboBox) and [feats.itemData(i) for i in range(feats.count())] == ["auto", "unit", "animal", "raw"]
    assert feats.currentData() == "auto" and "animal classes" in feats.toolTip()
    feats.setCurrentIndex(feats.findData("animal"))  # the ImageNet animal-class scores (decision 0028)
    scorer.setCurrentIndex(scorer.findData("mahalanobis"))
    box.setCurrentIndex(box.findData("whole"))
    tp.form.widget("image_size").setValue(64)
    qtbot.mouseClick(tp.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not tp.is_running(), timeout=120000)
    runs = window.state.project.runs(task="embedding")
    assert len(runs) == 1, tp.status.text()
    run = runs[0]
    assert run.status == "done", tp.status.text()
    assert run.status == "done" and run.params["animal_crop"] == "whole" and run.params["scorer"] == "mahalanobis"
    assert run.params["features"] == "animal" and run.metrics["features"] == "animal"
    assert run.metrics["animal_crop"] == "whole" and run.metrics["cam_boxes"] == 0
    sel = run.metrics["selection"]  # colour stayed auto: rgb and grey validated, the crop and scorer as asked
    assert set(sel["candidates"]) == {"whole animal rgb | mahalanobis", "whole animal gray | mahalanobis"}
    assert sel["chosen"] == f"whole animal {run.metrics['colour']} | mahalanobis" and run.metrics["scorer"] == "mahalanobis"
    runs = window.panels["runs"]
    runs.refresh()
    tip = runs.table.item(0, 0).toolTip()
    assert f"setting chosen: {sel['chosen']}" in tip and "validation whole animal gray | mahalanobis" in tip, tip
    qtbot.waitUntil(lambda: cluster.cmap is not None, timeout=30000)


def test_cluster_view_passes_the_crop_choice_to_the_embedding_run(qtbot, window, monkeypatch):
    panel = window.panels["cluster_view"]
    panel.engine_box.setCurrentIndex(panel.engine_box.findData("simclr_ocsvm"))
    assert panel.crop_box.isEnabled() and panel.crop_box.currentData() == "auto"
    assert [panel.crop_box.itemData(i) for i in range(panel.crop_box.count())] == ["auto", "cam_day", "cam", "whole"]
    panel.crop_box.setCurrentIndex(panel.crop_box.findData("whole"))
    panel.epochs.setValue(0)
    asked: list[tuple[str, dict]] = []
    monkeypatch.setattr(panel, "compute_embeddings", lambda engine, params: asked.append((engine, params)))
    panel.source.setCurrentIndex(panel.source.findData(-1))  # "Embed project items…"
    qtbot.mouseClick(panel.compute_btn, Qt.MouseButton.LeftButton)
    assert asked == [("simclr_ocsvm", {"epochs": 0, "animal_crop": "whole"})]
