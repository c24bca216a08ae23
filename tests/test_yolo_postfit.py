"""YOLO after its fit (decision 0018, 2026-12-01 session 6): boxes snapped to CFAR bright blobs when that does
not lower the validation mAP50 (`box_refine` auto), confidences calibrated on the validation images so that
0.5 is the best-F1 cut-off, training stopped once validation is saturated; older model files score as before."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from anomaly_gui.core.formats.base import DatasetItem, import_dataset
from anomaly_gui.engines.base import Engine, RunContext, get_engine
from anomaly_gui.engines.detection_common import TrainingSet
from anomaly_gui.engines.detection_common.calibration import calibrate, logit
from anomaly_gui.engines.detection_common.cfar import CfarSettings
from anomaly_gui.engines.detection_common.postfit import choose_refine, score_shift, snap_all
from tests.conftest import shared_dataset


def test_snap_all_takes_the_blob_box_and_keeps_the_score():
    rng = np.random.default_rng(0)
    img = rng.normal(60, 8, (200, 200)).clip(0, 255).astype(np.uint8)
    img[50:60, 40:100] = 250  # a long bright ship: 60 x 10 px
    loose = {"boxes": np.array([[5.0, 5.0, 20.0, 20.0], [45.0, 35.0, 95.0, 75.0]]), "scores": np.array([0.3, 0.8]),
             "labels": np.array([0, 0])}
    out = snap_all([loose], [np.dstack([img] * 3)], CfarSettings(window=151, k=2.5), split=True)[0]
    assert np.allclose(out["boxes"][0], [40, 50, 100, 60]) and out["scores"][0] == 0.8  # highest score first, snapped
    assert np.allclose(out["boxes"][1], [5, 5, 20, 20])  # nothing bright under it: the learnt box stays


def test_choose_refine_keeps_cfar_unless_it_lowers_validation_map50():
    val = TrainingSet(boxes=[np.array([[0.0, 0.0, 10.0, 10.0]])], labels=[["ship"]])
    figures = {"none": (0.50, 0.30), "cfar": (0.60, 0.20)}
    choice, scores = choose_refine(lambda option: figures[option], val)
    assert choice == "cfar" and scores == {"none": [0.5, 0.3], "cfar": [0.6, 0.2]}  # mAP50-95 does not decide
    figures["cfar"] = (0.45, 0.40)
    assert choose_refine(lambda option: figures[option], val)[0] == "none"
    empty = TrainingSet(boxes=[np.zeros((0, 4))], labels=[[]])
    assert choose_refine(lambda option: figures[option], empty) == ("none", {})


def test_score_shift_maps_the_best_f1_threshold_to_one_half():
    gt = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)]
    # two true boxes at 0.8 and 0.7, two false ones at 0.6 and 0.2: the best F1 cut is between 0.7 and 0.6
    dets = [np.array([[0, 0, 10, 10, 0.8], [20, 20, 30, 30, 0.7], [50, 50, 60, 60, 0.6], [70, 70, 80, 80, 0.2]], float)]
    cal = score_shift(gt, dets)
    assert cal["raw_threshold"] == pytest.approx(0.65) and cal["calibration_f1"] == pytest.approx(1.0)
    assert cal["score_shift"] == pytest.approx(logit(0.65))
    after = calibrate(dets[0][:, 4], cal["score_shift"])
    assert (after >= 0.5).tolist() == [True, True, False, False]


@pytest.fixture(scope="module")
def hrsid_items() -> list[DatasetItem]:
    torch.set_num_threads(1)
    res = import_dataset(shared_dataset("hrsid_ships"))
    return sorted(res.items, key=lambda it: (not it.annotations, it.path))  # chips with ships first


@pytest.mark.slow
def test_yolo_calibrates_refines_stops_when_saturated_and_old_files_score_as_before(hrsid_items, tmp_path, monkeypatch):
    pytest.importorskip("ultralytics")
    from anomaly_gui.core.imageio import read_image
    from anomaly_gui.engines.modelfile import read_model_file, write_model_file

    monkeypatch.setattr("anomaly_gui.engines.yolo.EPOCH_IMAGES", 8)
    # every epoch counts as saturated: training stops after `stop_saturated` epochs of the 5 allowed
    monkeypatch.setattr("anomaly_gui.engines.yolo.SATURATED_MAP50", 0.0)
    eng = get_engine("yolo")(device="cpu", epochs=5, imgsz=160, batch=4, mosaic=0.0, stop_saturated=2, pretrained=False)
    train = [DatasetItem(path=it.path, annotations=it.annotations, width=it.width, height=it.height) for it in hrsid_items[:8]]
    logs: list[dict] = []
    eng.fit(train, RunContext(log=logs.append))
    assert [e["epoch"] for e in logs if "epoch" in e] == [1, 2] and eng.stats["stopped"].startswith("validation mAP50 >= 0.0 for 2")
    # the run log says what box_refine auto chose (validation figures of both) and how confidences were calibrated
    said = [str(e.get("message", "")) for e in logs]
    assert any(m.startswith(f"box_refine auto: {eng.stats['box_refine']} ") and "cfar" in m for m in said)
    assert set(eng.stats["box_refine_validation"]) == {"none", "cfar"}
    assert any(m.startswith("confidence calibrated on the validation images") for m in said)
    assert eng.stats["score_shift"] == pytest.approx(float(logit(eng.stats["raw_threshold"])))
    # calibrated scores are the raw ones shifted in logit space (a shift set here: one epoch barely detects)
    images = [eng._prepare(read_image(it.path)) for it in hrsid_items[:3]]
    eng.params.min_confidence, eng.params.box_refine, eng.stats["score_shift"] = 0.001, "cfar", 0.0
    raw = eng._raw(images)
    eng.stats["score_shift"] = 1.0
    got = eng.predict_arrays(images)
    for f, boxes in zip(raw, got):
        want = calibrate(f["scores"], 1.0)
        keep = want >= 0.001
        assert np.allclose([b.score for b in boxes], want[keep], atol=1e-6)
        assert np.allclose(np.array([b.box() for b in boxes]).reshape(-1, 4), f["boxes"][keep].reshape(-1, 4))
    assert sum(len(f["scores"]) for f in raw) > 0
    eng.params.min_confidence = 0.05
    path = eng.save(tmp_path / "new.agm")
    # a model file written before these options: raw confidences, learnt boxes, as it scored then
    tensors, meta = read_model_file(path)
    for key in ("calibrate", "box_refine", "cfar_window", "cfar_k", "cfar_min_area", "cfar_split", "stop_saturated"):
        del meta["params"][key]
    for key in ("score_shift", "raw_threshold", "calibration_f1", "calibrated_on", "box_refine", "box_refine_validation"):
        meta["stats"].pop(key, None)
    old = Engine.load(write_model_file(tmp_path / "old.agm", tensors, meta), device="cpu")
    assert (old.params.calibrate, old.params.box_refine, old.params.stop_saturated) == (False, "none", 0)
    res = old._yolo.predict([np.ascontiguousarray(im[:, :, ::-1]) for im in images], imgsz=old.stats["imgsz"], conf=0.05,
                            iou=old.params.iou, device="cpu", verbose=False, max_det=300)  # the network as it was read before
    for r, boxes in zip(res, old.predict_arrays(images)):
        assert np.allclose([b.score for b in boxes], r.boxes.conf.numpy(), atol=1e-6)
        assert np.allclose(np.array([b.box() for b in boxes]).reshape(-1, 4), r.boxes.xyxy.numpy(), atol=1e-4)
    # the new file keeps its decisions
    new = Engine.load(path, device="cpu")
    assert new.stats["score_shift"] == 1.0 and new._refining() and new.params.calibrate is True
