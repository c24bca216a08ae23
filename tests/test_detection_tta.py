"""Test-time views of the detectors (`detection_common/tta.py`): every D4 view maps its boxes back exactly, the
fusions (weighted box fusion / NMS; mean over the views / max), one code path in both engines, a calibration per
view set measured after the fit, and model files from before the views scoring as they did."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from anomaly_gui.engines.detection_common.tta import (
    VIEW_SETS, VIEWS, fuse_variants, fuse_views, unview_boxes, view_image, view_set,
)


def _bright_box(img: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(img[..., 0] > 128)
    return np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float64)


def test_every_view_maps_its_boxes_back_to_the_image():
    img = np.zeros((50, 100, 3), np.uint8)
    img[20:26, 10:30] = 255  # a 20x6 ship near the top left of a wide image
    seen = set()
    for view in VIEWS:
        v = view_image(img, view)
        transposed = VIEWS[view][0]
        assert v.shape == ((100, 50, 3) if transposed else (50, 100, 3)) and v.flags["C_CONTIGUOUS"]
        assert np.allclose(unview_boxes(_bright_box(v), 100, 50, view), [[10, 20, 30, 26]])
        seen.add(v.tobytes())
    assert len(seen) == 8  # the eight symmetries are eight different images
    assert all(s[0] == "identity" for s in VIEW_SETS.values()) and VIEW_SETS["d4"] == tuple(VIEWS)
    assert len(VIEW_SETS["flips"]) == len(VIEW_SETS["rotations"]) == 4 and VIEW_SETS["none"] == ("identity",)


def test_view_set_reads_the_old_flips_switch():
    assert view_set(True) == VIEW_SETS["flips"] and view_set(False) == VIEW_SETS["none"] and view_set("d4") == tuple(VIEWS)
    with pytest.raises(ValueError, match="tta"):
        view_set("diagonal")


def _dets(boxes, scores):
    return {"boxes": np.array(boxes, np.float64).reshape(-1, 4), "scores": np.array(scores, np.float64),
            "labels": np.ones(len(scores), int)}


def test_fusions_average_or_keep_the_strongest_box_and_score_agreement():
    a = _dets([[10, 20, 30, 26]], [0.8])
    b = _dets([[12, 20, 32, 26], [60, 5, 70, 15]], [0.4, 0.9])  # the same ship shifted; a second object seen once
    empty = _dets([], [])
    views = [a, b, empty, empty]
    wbf = fuse_views(views, 0.55, "wbf_mean")
    assert np.allclose(wbf["scores"], [1.2 / 4, 0.9 / 4])  # a view that missed the object counts 0
    assert np.allclose(wbf["boxes"][0], [10 + 2 * 0.4 / 1.2, 20, 30 + 2 * 0.4 / 1.2, 26])  # score-weighted mean
    mx = fuse_views(views, 0.55, "wbf_max")
    assert np.allclose(mx["scores"], [0.9, 0.8]) and np.allclose(mx["boxes"][1], wbf["boxes"][0])
    nms = fuse_views(views, 0.55, "nms_max")
    assert np.allclose(nms["scores"], [0.9, 0.8]) and np.allclose(nms["boxes"], [[60, 5, 70, 15], [10, 20, 30, 26]])
    assert fuse_views([a], 0.55, "wbf_mean") is a  # one view: as found
    apart = fuse_views([a, b], 0.9, "wbf_mean")  # IoU 0.82 < 0.9: two objects
    assert len(apart["scores"]) == 3
    with pytest.raises(ValueError):
        fuse_variants([a, b], box="mean")


class _BlobNet(torch.nn.Module):
    """Stands in for torchvision's detector: boxes the bright pixels of each image it is given, scored 0.8 when
    the image it sees is wider than tall and 0.4 otherwise (so the views are told apart)."""

    nms_thresh = 0.5

    def forward(self, images):
        out = []
        for t in images:
            box = torch.as_tensor(_bright_box(t.permute(1, 2, 0).numpy() * 255), dtype=torch.float32)
            score = 0.8 if t.shape[2] > t.shape[1] else 0.4
            out.append({"boxes": box, "scores": torch.tensor([score]), "labels": torch.ones(1, dtype=torch.int64)})
        return out


def _wide_ship() -> np.ndarray:
    img = np.zeros((60, 120, 3), np.uint8)
    img[20:26, 10:40] = 255
    return img


@pytest.mark.parametrize("tta, merge, score", [("none", "wbf_mean", 0.8), ("flips", "wbf_mean", 0.8), ("rotations", "wbf_mean", 0.6),
                                               ("d4", "wbf_mean", 0.6), ("d4", "wbf_max", 0.8), ("flip_lr", "nms_max", 0.8)])
def test_retinanet_views_find_the_ship_in_place_and_fuse_its_scores(tta, merge, score):
    from anomaly_gui.engines.base import get_engine

    eng = get_engine("retinanet")(device="cpu", tta=tta, tta_merge=merge, box_refine="none")
    eng.model = _BlobNet()
    found = eng._raw([_wide_ship()], floor=0.0)[0]
    assert np.allclose(found["boxes"], [[10, 20, 40, 26]]) and np.allclose(found["scores"], [score])
    per_view = eng._views_found([_wide_ship()], VIEW_SETS[tta], 0.0)[0]
    assert list(per_view) == list(VIEW_SETS[tta])  # one network pass per view


def test_yolo_views_use_the_same_code_path():
    pytest.importorskip("ultralytics")
    from anomaly_gui.engines.base import get_engine

    eng = get_engine("yolo")(device="cpu", tta="d4", box_refine="none")
    eng._yolo = object()  # the network pass is replaced below
    calls: list[tuple[int, int]] = []

    def detect_once(images, conf):
        calls.extend(im.shape[:2] for im in images)
        return [{"boxes": _bright_box(im), "scores": np.array([0.8 if im.shape[1] > im.shape[0] else 0.4]),
                 "labels": np.zeros(1, int)} for im in images]

    eng._detect_once = detect_once
    found = eng._raw([_wide_ship()], floor=0.0)[0]
    assert len(calls) == 8 and calls.count((120, 60)) == 4
    assert np.allclose(found["boxes"], [[10, 20, 40, 26]]) and np.allclose(found["scores"], [0.6])
    eng.params.tta = "none"
    assert np.allclose(eng._raw([_wide_ship()], floor=0.0)[0]["scores"], [0.8])


def test_the_fit_calibrates_every_view_set_and_scoring_follows_the_views_in_use():
    """`decide_views` (after a fit) calibrates each view set and fusion on the validation chip; the engine then
    shifts scores by the calibration of the views in use, so switching `tta` off on a fitted model keeps a 0.5
    cut-off that means the same; files without per-view calibrations use their single shift."""
    from anomaly_gui.engines.base import get_engine
    from anomaly_gui.engines.detection_common import TrainingSet
    from anomaly_gui.engines.detection_common.cfar import CfarSettings
    from anomaly_gui.engines.detection_common.postfit import decide_views

    eng = get_engine("retinanet")(device="cpu", tta="d4", box_refine="none")
    eng.model, eng.stats = _BlobNet(), {"classes": ["ship"]}
    img = _wide_ship()
    clutter = _dets([[80, 40, 90, 50]], [0.7])  # a false alarm seen by the identity view only
    found = eng._views_found([img], tuple(VIEWS), 0.001)
    found[0]["identity"] = {k: np.concatenate([found[0]["identity"][k], clutter[k]]) for k in clutter}
    val = TrainingSet(boxes=[np.array([[10.0, 20, 40, 26]])], labels=[["ship"]], classes=["ship"])
    dec = decide_views(found, [img], val, eng._label_name, tta="d4", merge="wbf_mean", iou=eng._views_iou(), refine="none",
                       cfar=CfarSettings(), split=True, min_confidence=0.01, calibrate=True)
    assert set(dec["score_shifts"]) == {"none"} | {f"{s}/{m}" for s in VIEW_SETS if s != "none" for m in ("wbf_mean", "wbf_max", "nms_max")}
    assert dec["calibrated_views"] == "d4/wbf_mean" and dec["score_shift"] == dec["score_shifts"]["d4/wbf_mean"]
    # alone, the clutter (0.7) scores under the ship (0.8): the cut-off lies between; with d4 the clutter keeps 0.7 / 8
    assert 0.7 < dec["score_shifts"]["none"] and dec["raw_threshold"] < 0.6
    eng.stats.update(dec)
    assert eng._score_shift() == pytest.approx(dec["score_shift"])
    eng.params.tta = "none"
    assert eng._score_shift() == pytest.approx(dec["score_shifts"]["none"])
    eng.params.tta, eng.params.tta_merge = "flips", "nms_max"
    assert eng._score_shift() == pytest.approx(dec["score_shifts"]["flips/nms_max"])
    for key in ("score_shifts", "calibrated_views"):  # a model file from before the views
        eng.stats.pop(key)
    assert eng._score_shift() == pytest.approx(dec["score_shift"])


def test_model_files_from_before_the_views_score_as_they_did(tmp_path):
    """RetinaNet files stored `tta` as a switch: false scores the image alone, true the four flips with one
    fusion of every variant (as before); YOLO files without `tta` score the image alone."""
    from anomaly_gui.engines.base import Engine, get_engine
    from anomaly_gui.engines.modelfile import read_model_file, write_model_file

    torch.manual_seed(0)
    eng = get_engine("retinanet")(device="cpu", pretrained=False)
    eng.stats = {"classes": ["ship"], "scale": 1.0, "anchor_base": 8, "frozen_bn": False, "score_shift": 0.3}
    eng.model, eng.fitted = eng._build(1, None), True
    tensors, meta = read_model_file(eng.save(tmp_path / "new.agm"))
    for old_value, views in ((False, VIEW_SETS["none"]), (True, VIEW_SETS["flips"])):
        meta["params"]["tta"] = old_value
        meta["params"].pop("tta_merge", None)
        old = Engine.load(write_model_file(tmp_path / f"old_{old_value}.agm", tensors, meta), device="cpu")
        assert old.params.tta is old_value and old._views() == views and old._score_shift() == pytest.approx(0.3)
    old.model = _BlobNet()
    img = _wide_ship()
    variants = old._variants([img], old._members())[0]
    assert len(variants) == 4
    want = fuse_variants(variants, iou=old.params.merge_iou)  # the old joint fusion of the four flips
    got = old._raw([img])[0]
    assert np.allclose(got["scores"], want["scores"]) and np.allclose(got["boxes"], want["boxes"])
    assert get_engine("retinanet").Params().tta == "none"  # CV fold 0: every view set lowered a seed (decision 0018, session 7)
    pytest.importorskip("ultralytics")
    # YOLO fits now detect on the image and its left-right flip; its files from before the option: the image alone
    assert get_engine("yolo").Params().tta == "flip_lr" and get_engine("yolo").params_before_they_existed["tta"] == "none"
