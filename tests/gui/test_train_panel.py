"""Train panel, parameter form and runs list, driven as a user would (pytest-qt, offscreen)."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLineEdit, QMessageBox, QSpinBox

from anomaly_gui.core.project import open_project
from anomaly_gui.engines.base import param
from anomaly_gui.gui.param_form import ParamForm

from c2_engines import main_window_on, make_images, register_tiny_engine, stop_jobs

pytestmark = pytest.mark.gui


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch):
    register_tiny_engine(monkeypatch)
    proj = open_project(tmp_path / "p.agproj")
    proj.add_items(make_images(tmp_path / "data"))
    win = main_window_on(qtbot, proj)
    yield win
    stop_jobs(qtbot)


def _train(qtbot, win, epochs: int = 2, **params) -> int:
    tp = win.panels["train"]
    tp.select_engine("c2_meandiff")
    tp.form.widget("epochs").setValue(epochs)
    for k, v in params.items():
        tp.form.widget(k).setValue(v)
    with qtbot.waitSignal(tp.runFinished, timeout=30000) as blocker:
        qtbot.mouseClick(tp.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not tp.is_running(), timeout=10000)
    return int(blocker.args[0])


def test_train_through_panel_fills_runs_curve_and_review(qtbot, window):
    tp, runs = window.panels["train"], window.panels["runs"]
    assert not {"train", "runs", "review", "metrics"} & set(window.panel_errors)
    assert "c2_meandiff" in [tp.engine_combo.itemData(k) for k in range(tp.engine_combo.count())]
    run_id = _train(qtbot, window, epochs=3)
    project = window.state.project
    run = project.run(run_id)
    assert run.status == "done" and run.params["epochs"] == 3
    assert window.state.current_run == run_id
    qtbot.waitUntil(lambda: not tp.is_running(), timeout=5000)
    assert tp.curve.curves["loss"].getData()[0].tolist() == [1.0, 2.0, 3.0]
    assert "done" in tp.status.text() and tp.start_button.isEnabled() and not tp.cancel_button.isEnabled()
    assert runs.table.rowCount() == 1 and runs.selected_run() == run_id
    assert runs.table.item(0, 3).text() == "done" and runs.table.item(0, 4).text() == "1.000"
    assert project.setting("train.params.c2_meandiff")["epochs"] == 3
    # the next time the engine is picked, its last parameters come back
    tp.form.reset_defaults()
    tp.refresh_engines()
    assert tp.form.widget("epochs").value() == 3
    # "From run" puts the selected run's parameters back into the form
    tp.form.reset_defaults()
    assert tp.form.widget("epochs").value() == 2 and tp.from_run_button.isEnabled()
    qtbot.mouseClick(tp.from_run_button, Qt.MouseButton.LeftButton)
    assert tp.engine_name() == "c2_meandiff" and tp.form.widget("epochs").value() == 3
    review = window.panels["review"]
    qtbot.waitUntil(lambda: review.data is not None and review.data.run_id == run_id, timeout=20000)
    assert len(window.state.predictions) == len(review.data) == 2 + 8


def test_cancel_mid_training(qtbot, window):
    tp = window.panels["train"]
    tp.select_engine("c2_meandiff")
    tp.form.widget("epochs").setValue(50)
    tp.form.widget("delay").setValue(0.02)
    qtbot.mouseClick(tp.start_button, Qt.MouseButton.LeftButton)
    assert tp.is_running() and tp.cancel_button.isEnabled() and not tp.start_button.isEnabled()
    qtbot.waitUntil(lambda: tp.progress.maximum() > 0 and tp.progress.value() > 0, timeout=20000)
    qtbot.mouseClick(tp.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not tp.is_running(), timeout=20000)
    (run,) = window.state.project.runs()
    assert run.status == "cancelled"
    assert "cancelled" in tp.status.text() and tp.start_button.isEnabled()
    assert window.panels["runs"].table.item(0, 3).text() == "cancelled"
    assert window.panels["review"].data is None


def test_training_without_training_items_says_why(qtbot, window):
    project = window.state.project
    project.set_split([it.id for it in project.items(split="train")], "test")
    tp = window.panels["train"]
    row = tp.engine_combo.findData("c2_meandiff")
    assert not tp.engine_combo.model().item(row).isEnabled()
    assert "no normal training items" in tp.engine_combo.itemData(row, Qt.ItemDataRole.ToolTipRole)
    tp.select_engine("c2_meandiff")
    qtbot.mouseClick(tp.start_button, Qt.MouseButton.LeftButton)
    assert not tp.is_running()
    assert "no normal training items" in tp.status.text()
    assert project.runs() == []


def test_runs_rename_delete_and_reopen(qtbot, window, tmp_path, monkeypatch):
    first = _train(qtbot, window)
    second = _train(qtbot, window)
    runs = window.panels["runs"]
    assert runs.table.rowCount() == 2 and runs.table.item(0, 0).data(Qt.ItemDataRole.UserRole + 1) == second
    # rename by editing the name cell
    runs.table.selectRow(runs.row_of(first))
    assert window.state.current_run == first
    runs.table.item(runs.row_of(first), 0).setText("baseline")
    assert window.state.project.run(first).name == "baseline"
    # delete asks first; "No" keeps the run
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.No)
    assert not runs.delete_selected()
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    runs.table.setFocus()
    runs.delete_action.trigger()
    assert [r.id for r in window.state.project.runs()] == [second]
    assert window.state.current_run is None and runs.table.rowCount() == 1
    # reopening the project restores the list and selects the last finished run
    path = window.state.project.path
    window.state.set_project(None)
    window.state.set_project(open_project(path))
    assert runs.table.rowCount() == 1 and window.state.current_run == second
    assert runs.table.item(0, 0).text().startswith(f"#{second}")


@dataclass
class _AllKinds:
    size: int = param(64, "side in pixels", minimum=8, maximum=512, step=8)
    lr: float = param(1e-4, "learning rate", minimum=1e-6, maximum=1.0)
    loss: str = param("ssim", "loss", choices=["mse", "l2", "ssim", "ms-ssim"])
    gray: bool = param(True, "grayscale")
    backbone: str = param("mobilenet_v2", "backbone name")
    layers: list = param([2, 3], "feature layers", advanced=True)
    seed: int = param(0, "random seed", advanced=True, label="Random seed")


def test_param_form_builds_every_kind_and_round_trips(qtbot):
    form = ParamForm()
    qtbot.addWidget(form)
    form.set_params_class(_AllKinds, {"size": 128, "unknown": 1})
    form.show()
    assert isinstance(form.widget("size"), QSpinBox) and form.widget("size").maximum() == 512
    assert form.widget("size").singleStep() == 8 and form.widget("size").toolTip() == "side in pixels"
    lr = form.widget("lr")
    assert isinstance(lr, QDoubleSpinBox) and lr.decimals() >= 6 and lr.value() == pytest.approx(1e-4)
    assert isinstance(form.widget("loss"), QComboBox) and isinstance(form.widget("gray"), QCheckBox)
    assert isinstance(form.widget("backbone"), QLineEdit)
    # advanced fields are folded until asked for
    assert not form.widget("layers").isVisible() and form.advanced_toggle.text() == "Advanced (2)"
    qtbot.mouseClick(form.advanced_toggle, Qt.MouseButton.LeftButton)
    assert form.widget("layers").isVisible()
    form.widget("loss").setCurrentIndex(3)
    form.widget("gray").setFocus()
    qtbot.keyClick(form.widget("gray"), Qt.Key.Key_Space)
    form.widget("layers").clear()
    qtbot.keyClicks(form.widget("layers"), "1, 2,4")
    values = form.values()
    assert values == {"size": 128, "lr": pytest.approx(1e-4), "loss": "ms-ssim", "gray": False,
                      "backbone": "mobilenet_v2", "layers": [1, 2, 4], "seed": 0}
    _AllKinds(**values)  # a valid Params
    form.widget("layers").setText("1, two")
    with pytest.raises(ValueError, match="Layers"):
        form.values()
    form.reset_defaults()
    assert form.values()["size"] == 64 and form.values()["layers"] == [2, 3]
    form.set_params_class(None)
    assert form.names() == [] and not form.advanced_toggle.isVisible()


def test_mvtec_screw_subset_through_panel(qtbot, tmp_path, monkeypatch, shared_data):
    """Real images: import mvtec_screw, keep a few training images, train from the panel."""
    from anomaly_gui.core.importer import import_into_project
    from anomaly_gui.gui.main_window import MainWindow
    from anomaly_gui.gui.state import AppState

    root = shared_data / "mvtec_screw"
    if not root.is_dir():
        pytest.skip(f"real dataset mvtec_screw not found at {root}")
    register_tiny_engine(monkeypatch)
    proj = open_project(tmp_path / "screw.agproj")
    import_into_project(proj, root)
    train = proj.items(split="train")
    proj.remove_items([it.id for it in train[8:]])
    state = AppState()
    win = MainWindow(state)
    qtbot.addWidget(win)
    state.set_project(proj)
    run_id = _train(qtbot, win, epochs=1, size=48)
    run = proj.run(run_id)
    assert run.status == "done" and run.metrics["n_test"] == 20 and run.threshold is not None
    assert win.panels["metrics"].values["image_auroc"].text() not in ("", "–")
    qtbot.waitUntil(lambda: len(state.predictions) == 20 + run.metrics["n_val"], timeout=20000)
    # the sliders on real 1024x1024 screws: outline and verdicts follow
    rp = win.panels["review"]
    defect = next(it for it in proj.items(split="test") if it.is_anomalous)
    state.set_current_item(defect.id)
    rp.threshold.slider.setValue(0)
    assert all(state.predictions.values()) and rp.current_mask().any()
    rp.threshold.slider.setValue(rp.threshold.slider.maximum())
    assert not any(state.predictions.values()) and not rp.current_mask().any()
    stop_jobs(qtbot)


def test_unsplit_project_gets_the_original_split(qtbot, window):
    """A plain folder without splits: Start applies the original 10 % test / 20 % validation split first."""
    project = window.state.project
    project.set_split(project.item_ids(), "")
    tp = window.panels["train"]
    assert tp.engine_combo.model().item(tp.engine_combo.findData("c2_meandiff")).isEnabled()
    run_id = _train(qtbot, window, epochs=1)
    assert project.run(run_id).status == "done"
    assert {it.split for it in project.items()} == {"train", "val", "test"}
    assert any("original split" in str(e.get("message", "")) for e in tp.curve.entries)


def test_left_out_items_are_a_named_warning_in_the_panel_and_runs_list(qtbot, window):
    """Issue 12: unlabelled test items are scored but left out of the metrics, and the GUI says so."""
    from anomaly_gui.gui.runs_panel import RunIdRole

    project = window.state.project
    tests = [int(it.id) for it in project.items(split="test") if not it.is_anomalous][:2]
    project.db.execute(f"UPDATE items SET is_anomalous=NULL WHERE id IN ({','.join(map(str, tests))})")
    project.db.commit()
    tp, runs = window.panels["train"], window.panels["runs"]
    run_id = _train(qtbot, window, epochs=1)
    run = project.run(run_id)
    assert run.metrics["n_unlabelled"] == 2 and run.metrics["threshold_source"] == "validation"
    assert "2 unlabelled test item(s) scored but left out of every metric" in tp.status.text()
    row = next(r for r in range(runs.table.rowCount()) if runs.table.item(r, 0).data(RunIdRole) == run_id)
    assert "left out of every metric" in runs.table.item(row, 0).toolTip()
