"""The Detection dock offers the detectors' small-object defaults and passes what the analyst sets to the
training job: YOLO's default network is the ImageNet MobileNetV2 one and its model field takes the path of
the analyst's own ultralytics .pt; RetinaNet's schedule (steps), test-time flips and the checkpoint ensemble are in the form."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.gui


def _capture_job(monkeypatch):
    import anomaly_gui.gui.detection_panel as dp

    calls = []

    def fake_start_job(fn, project, name, params, device, **kw):
        calls.append((name, params))
        raise dp.JobBusyError("captured (test)")

    monkeypatch.setattr(dp, "start_job", fake_start_job)
    return calls


def test_detection_dock_yolo_default_and_own_pt(qtbot, window, tmp_path, monkeypatch):
    from anomaly_gui.core.project import open_project

    window.state.set_project(open_project(tmp_path / "p.agproj"))
    panel = window.panels["detection"]
    panel.engine_combo.setCurrentIndex(panel.engine_combo.findData("yolo"))
    model = panel.param_form.widget("model")
    assert model.currentData() == "mobilenetv2-p2" and model.isEditable()
    assert panel.param_form.values()["imgsz"] == 0  # automatic input size
    # the training schedule for a pretrained backbone is in the form (under Advanced)
    form = panel.param_form
    optimizer, accumulate, freeze = form.widget("optimizer"), form.widget("accumulate"), form.widget("freeze_blocks")
    assert all(form._advanced.isAncestorOf(w) for w in (optimizer, accumulate, freeze, form.widget("warmup_epochs")))
    assert (optimizer.currentText(), accumulate.value(), freeze.value()) == ("SGD", 1, 0)
    assert form.values()["warmup_epochs"] == 0.5
    optimizer.setCurrentIndex(optimizer.findText("AdamW"))
    freeze.setValue(4)
    calls = _capture_job(monkeypatch)
    pt = tmp_path / "my_ships.pt"
    model.setEditText(str(pt))
    panel.start_training()
    assert calls and calls[-1][0] == "yolo" and calls[-1][1]["model"] == str(pt)
    assert calls[-1][1]["optimizer"] == "AdamW" and calls[-1][1]["freeze_blocks"] == 4
    # the analyst's choice is kept for the next session, path included
    panel._on_engine()
    assert panel.param_form.values()["model"] == str(pt)


def test_detection_dock_retinanet_schedule_and_flips_reach_the_job(qtbot, window, tmp_path, monkeypatch):
    from anomaly_gui.core.project import open_project
    from anomaly_gui.engines.base import get_engine

    window.state.set_project(open_project(tmp_path / "p.agproj"))
    panel = window.panels["detection"]
    panel.engine_combo.setCurrentIndex(panel.engine_combo.findData("retinanet"))
    form = panel.param_form
    defaults = get_engine("retinanet").Params()
    assert form.values()["steps"] == defaults.steps and form.values()["tta"] == defaults.tta
    form.widget("steps").setValue(120)
    other_tta = "d4" if defaults.tta != "d4" else "none"
    form.widget("tta").setCurrentIndex(form.widget("tta").findText(other_tta))
    form.widget("snapshots").setValue(defaults.snapshots + 2)  # the checkpoint ensemble
    # the detector head and the merge of overlapping boxes are choices in the form (under Advanced for the merge)
    for name, value in (("detector", "fcos"), ("box_merge", "nms" if defaults.box_merge == "wbf" else "wbf")):
        combo = form.widget(name)
        combo.setCurrentIndex(combo.findText(value))
    form.widget("merge_iou").setValue(0.35)
    refine = form.widget("box_refine")  # the CFAR snap of the boxes: auto by default, none / cfar to force it
    assert refine.currentText() == defaults.box_refine == "auto"
    refine.setCurrentIndex(refine.findText("none"))
    split = form.widget("cfar_split")  # one box per blob when a box covers ships side by side: on by default
    assert split.isChecked() is defaults.cfar_split is True
    split.setChecked(False)
    keep = form.widget("keep_epoch")  # which weights the run keeps: the best-validated epoch or the last
    assert keep.currentText() == defaults.keep_epoch
    other_keep = "best" if defaults.keep_epoch == "last" else "last"
    keep.setCurrentIndex(keep.findText(other_keep))
    form.widget("anchor_aspects").setText("auto")
    calls = _capture_job(monkeypatch)
    panel.start_training()
    job = calls[-1][1]
    assert job["steps"] == 120 and job["tta"] == other_tta and job["snapshots"] == defaults.snapshots + 2
    assert job["detector"] == "fcos" and job["box_merge"] != defaults.box_merge and job["merge_iou"] == pytest.approx(0.35)
    assert job["anchor_aspects"] == "auto" != defaults.anchor_aspects and job["box_refine"] == "none" and job["cfar_split"] is False
    assert job["keep_epoch"] == other_keep


def test_detection_dock_yolo_calibration_refine_and_saturation_stop_reach_the_job(qtbot, window, tmp_path, monkeypatch):
    """YOLO's confidence calibration, CFAR box snap and stop on a saturated validation are in the form
    (the CFAR details and the stop under Advanced) and what the analyst sets reaches the training job."""
    from anomaly_gui.core.project import open_project
    from anomaly_gui.engines.base import get_engine

    window.state.set_project(open_project(tmp_path / "p.agproj"))
    panel = window.panels["detection"]
    panel.engine_combo.setCurrentIndex(panel.engine_combo.findData("yolo"))
    form = panel.param_form
    defaults = get_engine("yolo").Params()
    calib, refine, stop = form.widget("calibrate"), form.widget("box_refine"), form.widget("stop_saturated")
    assert calib.isChecked() is defaults.calibrate is True and refine.currentText() == defaults.box_refine == "auto"
    assert stop.value() == defaults.stop_saturated == 3
    assert all(form._advanced.isAncestorOf(w) for w in (stop, form.widget("cfar_k"), form.widget("cfar_split")))
    assert not form._advanced.isAncestorOf(refine) and not form._advanced.isAncestorOf(calib)
    calib.setChecked(False)
    refine.setCurrentIndex(refine.findText("cfar"))
    stop.setValue(0)
    form.widget("cfar_k").setValue(3.0)
    calls = _capture_job(monkeypatch)
    panel.start_training()
    job = calls[-1][1]
    assert calls[-1][0] == "yolo" and job["calibrate"] is False and job["box_refine"] == "cfar"
    assert job["stop_saturated"] == 0 and job["cfar_k"] == pytest.approx(3.0)


@pytest.mark.parametrize("engine", ["yolo", "retinanet"])
def test_detection_dock_test_time_views_reach_the_job(qtbot, window, tmp_path, monkeypatch, engine):
    """Both detectors offer the test-time views (`tta`: none, flips, rotations, d4 ...) and their fusion under
    Advanced, with the engine's defaults; what the analyst picks reaches the training job."""
    from anomaly_gui.core.project import open_project
    from anomaly_gui.engines.base import get_engine
    from anomaly_gui.engines.detection_common.tta import TTA_CHOICES, TTA_MERGES

    if engine == "yolo":
        pytest.importorskip("ultralytics")
    window.state.set_project(open_project(tmp_path / "p.agproj"))
    panel = window.panels["detection"]
    panel.engine_combo.setCurrentIndex(panel.engine_combo.findData(engine))
    form = panel.param_form
    defaults = get_engine(engine).Params()
    tta, merge = form.widget("tta"), form.widget("tta_merge")
    assert form._advanced.isAncestorOf(tta) and form._advanced.isAncestorOf(merge)
    assert [tta.itemText(i) for i in range(tta.count())] == TTA_CHOICES
    assert [merge.itemText(i) for i in range(merge.count())] == TTA_MERGES
    assert (tta.currentText(), merge.currentText()) == (defaults.tta, defaults.tta_merge)
    other_tta = "rotations" if defaults.tta != "rotations" else "none"
    other_merge = "nms_max" if defaults.tta_merge != "nms_max" else "wbf_mean"
    tta.setCurrentIndex(tta.findText(other_tta))
    merge.setCurrentIndex(merge.findText(other_merge))
    calls = _capture_job(monkeypatch)
    panel.start_training()
    assert calls[-1][0] == engine and calls[-1][1]["tta"] == other_tta and calls[-1][1]["tta_merge"] == other_merge
