"""PatchCore's border, intensity, centre-crop, bank-augmentation, test-rotation and normalisation options in the
Train panel, used as a user would."""
from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QCheckBox, QComboBox

from anomaly_gui.core.project import open_project

from c2_engines import make_images, stop_jobs

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("offline_mobilenet")]

INTENSITY_DEFAULT = "stretch"  # decision 0035


def test_patchcore_options_are_in_the_train_panel_and_reach_the_model(qtbot, tmp_path):
    from anomaly_gui.pipeline.lifecycle import load_run_engine
    from anomaly_gui.gui.main_window import MainWindow
    from anomaly_gui.gui.state import AppState

    proj = open_project(tmp_path / "p.agproj")
    proj.add_items(make_images(tmp_path / "data", n_train=6, n_good=2, n_bad=2))
    state = AppState()
    win = MainWindow(state)
    qtbot.addWidget(win)
    win.show()
    state.set_project(proj)
    tp = win.panels["train"]
    tp.select_engine("patchcore")
    form = tp.form
    border, augment, normalize = form.widget("border"), form.widget("bank_augment"), form.widget("normalize")
    assert isinstance(border, QComboBox) and isinstance(augment, QComboBox) and isinstance(normalize, QCheckBox)
    # the everyday options are shown without opening "Advanced"
    assert all(form._basic.isAncestorOf(w) for w in (border, augment, normalize))
    assert form._advanced.isAncestorOf(form.widget("border_pad"))  # folded under Advanced
    crop = form.widget("center_crop")
    assert form._advanced.isAncestorOf(crop) and crop.value() == 1.0 and "centre" in crop.toolTip()
    assert border.currentText() == "zero" and normalize.isChecked()  # decision 0034
    assert [augment.itemText(i) for i in range(augment.count())] == ["none", "flips", "rot90", "d4"]
    assert "orientation" in augment.toolTip()
    assert form.widget("image_size").value() == 512  # the default input size (decision 0021)
    form.widget("image_size").setValue(64)
    augment.setCurrentText("rot90")
    border.setCurrentText("reflect")  # the analyst mirrors the edges instead
    crop.setValue(0.75)  # anomalib's framing: the middle 48 of 64 px
    rotations = form.widget("test_rotations")
    assert isinstance(rotations, QComboBox) and form._basic.isAncestorOf(rotations)
    assert rotations.currentText() == "none" and "orientation" in rotations.toolTip()
    rotations.setCurrentText("rot90")
    intensity = form.widget("intensity")  # decision 0035: grey levels stretched per image
    assert isinstance(intensity, QComboBox) and form._basic.isAncestorOf(intensity)
    assert [intensity.itemText(i) for i in range(intensity.count())] == ["none", "stretch"]
    assert intensity.currentText() == INTENSITY_DEFAULT and "exposure" in intensity.toolTip()
    intensity.setCurrentText("none" if INTENSITY_DEFAULT == "stretch" else "stretch")
    with qtbot.waitSignal(tp.runFinished, timeout=120000) as blocker:
        qtbot.mouseClick(tp.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not tp.is_running(), timeout=10000)
    run = proj.run(int(blocker.args[0]))
    assert run.status == "done", run.log[-3:]
    assert run.params["bank_augment"] == "rot90" and run.params["border"] == "reflect" and run.params["normalize"]
    assert run.params["center_crop"] == 0.75
    model = load_run_engine(proj, run.id, device="cpu")
    # four orientations of every training image's 48 px centre (6 x 6 cells) went into the bank; the
    # normalisation was learnt
    assert model.stats["n_patches"] == 4 * 5 * 6 * 6 and model.stats["score_scale"] > 0
    assert model.stats["center_crop"] == 0.75
    assert run.params["test_rotations"] == "rot90" and model.model.test_rotations == "rot90"  # scored turned too
    chosen = intensity.currentText()
    assert run.params["intensity"] == chosen and model.model.embedder.intensity == chosen != INTENSITY_DEFAULT
    stop_jobs(qtbot)


def test_self_similarity_border_option_is_in_the_train_panel(qtbot, tmp_path):
    from anomaly_gui.gui.main_window import MainWindow
    from anomaly_gui.gui.state import AppState

    proj = open_project(tmp_path / "p.agproj")
    proj.add_items(make_images(tmp_path / "data", n_train=4, n_good=1, n_bad=1))
    state = AppState()
    win = MainWindow(state)
    qtbot.addWidget(win)
    state.set_project(proj)
    tp = win.panels["train"]
    tp.select_engine("selfsimilarity")
    border = tp.form.widget("border")
    assert isinstance(border, QComboBox) and tp.form._basic.isAncestorOf(border)
    assert border.currentText() == "reflect" and "edges" in border.toolTip()
    border.setCurrentText("zero")
    assert tp.form.values()["border"] == "zero"
    assert "textures" in tp.engine_desc.text()  # the description says where the engine is the right choice
