"""Small-object detector training parts: crops around objects, exact flips/rotations, speckle, confidence
calibration at the best-F1 point, the auto scale, and a short RetinaNet fit on the bundled SAR sample."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from anomaly_gui.engines.detection_common.calibration import best_f1_threshold, calibrate, logit, match_detections
from anomaly_gui.engines.detection_common.sampling import Crop, flip_rotate, gain_speckle, random_crop

SAMPLE_SAR = Path(__file__).resolve().parents[1] / "sample_data" / "sar"


def _marked(h: int, w: int, boxes: np.ndarray) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    for x1, y1, x2, y2 in boxes.astype(int):
        img[y1:y2, x1:x2] = 255
    return img


def test_object_crops_contain_their_box_and_background_crops_vary():
    rng = np.random.default_rng(0)
    boxes = np.array([[300.0, 420.0, 330.0, 436.0], [700.0, 100.0, 760.0, 130.0]])
    img = _marked(800, 800, boxes)
    hits = 0
    for _ in range(200):
        c = random_crop(img, boxes, ["ship", "ship"], 128, rng, object_fraction=1.0)
        assert c.image.shape == (128, 128, 3) and len(c.boxes) >= 1
        for x1, y1, x2, y2 in c.boxes.astype(int):  # each kept box still covers the bright pixels
            assert c.image[y1:y2, x1:x2].mean() > 200
        hits += len(c.boxes)
    assert hits >= 200
    empty = [len(random_crop(img, boxes, ["ship", "ship"], 128, rng, object_fraction=0.0).boxes) == 0 for _ in range(100)]
    assert sum(empty) > 80  # most random crops of a sparse scene are background
    small = random_crop(img[:100, :90], boxes[:0], [], 128, rng)
    assert small.image.shape == (100, 90, 3)  # smaller than a crop: used whole


def test_flips_and_rotations_move_boxes_with_pixels():
    rng = np.random.default_rng(1)
    boxes = np.array([[10.0, 5.0, 30.0, 12.0], [40.0, 50.0, 44.0, 70.0]])
    img = _marked(80, 60, boxes)
    seen_shapes = set()
    for _ in range(40):
        c = flip_rotate(Crop(img, boxes, ["a", "b"]), rng)
        seen_shapes.add(c.image.shape[:2])
        assert np.array_equal(_marked(*c.image.shape[:2], c.boxes), c.image)
    assert seen_shapes == {(80, 60), (60, 80)}


def test_gain_and_speckle_are_multiplicative():
    rng = np.random.default_rng(2)
    img = np.full((64, 64, 3), 100, np.uint8)
    img[:, :32] = 0
    out = gain_speckle(img, rng, speckle_prob=1.0)
    assert (out[:, :32] == 0).all()  # dark stays dark: no additive noise
    assert out[:, 32:].std() > 10 and out.dtype == np.uint8


def test_best_f1_threshold_and_calibration():
    gt = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float), np.zeros((0, 4))]
    dets = [np.array([[0, 0, 10, 10, 0.30], [20, 20, 30, 30, 0.25], [50, 50, 60, 60, 0.10]]),
            np.array([[5, 5, 15, 15, 0.05]])]
    scores, tp, n_gt = match_detections(gt, dets)
    assert n_gt == 2 and tp.sum() == 2 and len(scores) == 4
    thr, f1 = best_f1_threshold(gt, dets)
    assert f1 == pytest.approx(1.0) and 0.10 < thr < 0.25  # between the last true and the first false positive
    cal = calibrate(np.array([0.30, 0.25, 0.10, 0.05]), logit(thr))
    assert (cal[:2] > 0.5).all() and (cal[2:] < 0.5).all()
    assert np.all(np.diff(cal) < 0)  # monotone: mAP does not change
    assert best_f1_threshold([np.zeros((0, 4))], [np.zeros((0, 5))]) == (0.5, 0.0)


def test_auto_scale_upsamples_only_tiny_objects():
    from anomaly_gui.engines.retinanet import auto_scale

    assert auto_scale([np.array([[0, 0, 30, 15.0]])]) == 1.0
    assert auto_scale([np.array([[0, 0, 4, 2.0], [0, 0, 6, 4.0]])]) == pytest.approx(2.75)  # median short side 3 -> 8/3 up to a quarter
    assert auto_scale([np.zeros((0, 4))]) == 1.0


def test_anchor_aspects_follow_elongated_training_boxes():
    from anomaly_gui.core.errors import DataError
    from anomaly_gui.engines.retinanet import anchor_aspects

    square = np.array([[0, 0, 20, 20.0], [0, 0, 30, 20.0]] * 5)
    assert anchor_aspects("auto", [square]) == (0.5, 1.0, 2.0)
    ships = np.concatenate([square[:9], [[0, 0, 60, 16.0]]])  # 1 box in 10 is 3.75x longer than wide
    assert anchor_aspects("auto", [ships]) == (0.25, 0.5, 1.0, 2.0, 4.0)
    assert anchor_aspects("auto", [ships[:-1], np.zeros((0, 4))]) == (0.5, 1.0, 2.0)
    assert anchor_aspects(" 1, 3", [ships]) == (1.0, 3.0)
    with pytest.raises(DataError, match="anchor_aspects 'wide'"):
        anchor_aspects("wide", [ships], "train/labels")


@pytest.mark.slow
def test_retinanet_keeps_best_epoch_and_calibrates_on_validation(tmp_path, mobilenet_weights):
    """A short fit on the bundled SAR sample: validation mAP every epoch, the best epoch's weights are the
    ones kept (its validation mAP is what the final model scores), confidences are shifted so the
    validation F1-best raw score becomes 0.5, and the model file reloads to the same boxes.
    (Accuracy itself is measured by benchmarks/detection_shared.py: README.md of the engine.)"""
    from anomaly_gui.core.formats.base import import_dataset
    from anomaly_gui.core.metrics.detection import Boxes, mean_average_precision
    from anomaly_gui.engines.base import Engine, RunContext, get_engine
    from anomaly_gui.engines.detection_common import item_boxes

    torch.set_num_threads(1)
    items = import_dataset(SAMPLE_SAR).items
    train, val = [it for it in items if it.split == "train"], [it for it in items if it.split == "val"]
    # box_refine none: the boxes scored are the network's, as in the per-epoch validation
    eng = get_engine("retinanet")(device="cpu", epochs=4, crops_per_epoch=24, patience=0, min_confidence=0.0,
                                  backbone_weights=str(mobilenet_weights), box_refine="none", keep_epoch="best")
    logs = []
    eng.fit(train + val, RunContext(log=logs.append))
    epochs = [e for e in logs if "epoch" in e]
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4] and epochs[-1]["loss"] < epochs[0]["loss"]
    best = eng.stats["best_epoch"]
    assert eng.stats["val_map50"] == pytest.approx(max(e["map50"] for e in epochs))
    res = eng.score(val)
    gt = [item_boxes(it) for it in val]
    m = mean_average_precision([Boxes(b, lab) for b, lab in gt], [Boxes.from_annotations(r.boxes, with_scores=True) for r in res])
    assert m.map50 == pytest.approx(epochs[best - 1]["map50"], abs=1e-6)  # the best epoch's weights were restored
    assert eng.stats["calibrated_on"] == "validation"
    raw_thr = eng.stats["raw_threshold"]
    raw = eng._raw_detections([eng._prepare(__import__("anomaly_gui.core.imageio", fromlist=["read_image"]).read_image(it.path)) for it in val])
    n_raw = sum(int((d[:, 4] >= raw_thr).sum()) for d in raw)
    n_cal = sum(sum(1 for a in r.boxes if a.score >= 0.5) for r in res)
    assert n_cal == n_raw  # calibrated 0.5 is exactly the validation F1-best raw cut-off
    back = Engine.load(eng.save(tmp_path / "sar.agm"), device="cpu")
    again = back.score(val)
    for a, b in zip(res, again):
        assert np.allclose([x.box() + (x.score,) for x in a.boxes], [x.box() + (x.score,) for x in b.boxes], atol=1e-4)


def test_prefetcher_hands_batches_in_order_and_raises_producer_errors():
    from anomaly_gui.engines.detection_common.prefetch import BatchPrefetcher

    counter = iter(range(100))
    with BatchPrefetcher(lambda: next(counter), depth=2) as pf:
        assert [pf.next() for _ in range(5)] == [0, 1, 2, 3, 4]

    def broken():
        raise ValueError("bad crop")

    with BatchPrefetcher(broken) as pf, pytest.raises(ValueError, match="bad crop"):
        pf.next()


def test_flip_fusion_maps_boxes_back_and_averages_them():
    from anomaly_gui.engines.detection_common.tta import fuse_variants, unflip_boxes

    box = np.array([[10.0, 20.0, 30.0, 26.0]])
    # the same box found on the left-right flipped 100x50 image, mapped back
    assert np.allclose(unflip_boxes(np.array([[70.0, 20.0, 90.0, 26.0]]), 100, 50, True, False), box)
    assert np.allclose(unflip_boxes(np.array([[10.0, 24.0, 30.0, 30.0]]), 100, 50, False, True), box)
    lab = np.array([1])
    a = {"boxes": box, "scores": np.array([0.8]), "labels": lab}
    b = {"boxes": box + [2.0, 0, 2.0, 0], "scores": np.array([0.4]), "labels": lab}
    lone = {"boxes": np.array([[60.0, 5.0, 70.0, 15.0]]), "scores": np.array([0.9]), "labels": lab}
    empty = {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": lab[:0]}
    out = fuse_variants([a, b, lone | {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": lab[:0]}, empty])
    assert len(out["scores"]) == 1
    assert np.allclose(out["boxes"][0], [10 + 2 * 0.4 / 1.2, 20, 30 + 2 * 0.4 / 1.2, 26])  # score-weighted mean
    assert out["scores"][0] == pytest.approx((0.8 + 0.4) / 4)
    two = fuse_variants([a, lone])  # an object seen by one variant of two keeps half its score
    assert np.allclose(sorted(two["scores"]), [0.4, 0.45])


def test_yolo_validation_tiles_cover_the_chip_and_keep_whole_objects():
    from anomaly_gui.engines.yolo.staging import tiles

    boxes = np.array([[300.0, 420.0, 330.0, 436.0], [700.0, 100.0, 760.0, 130.0], [0.0, 0.0, 12.0, 12.0]])
    img = _marked(800, 800, boxes)
    parts = tiles(img, boxes, ["ship"] * 3, 320)
    assert len(parts) == 9 and all(p.image.shape == (320, 320, 3) for p in parts)
    assert sum(int(p.image.sum() // 255 // 3) for p in parts) >= int(img.sum() // 255 // 3)  # every pixel is in a tile
    whole = 0
    for p in parts:
        for x1, y1, x2, y2 in p.boxes.astype(int):
            assert p.image[y1:y2, x1:x2].mean() > 200  # kept boxes still cover their ship
            whole += (x2 - x1) * (y2 - y1) in (30 * 16, 60 * 30, 12 * 12)
    assert whole >= 3  # each ship lies whole inside at least one tile
    small = tiles(img[:200, :300], boxes[:1], ["ship"], 320)
    assert len(small) == 1 and small[0].image.shape == (200, 300, 3)


def test_retinanet_box_merge_fuses_or_suppresses_duplicates():
    """The network's scattered boxes around one ship: `nms` keeps the strongest box as it is, `wbf` keeps
    one box averaged over the cluster (weighted by score), and a separate ship stays separate."""
    from anomaly_gui.engines.base import get_engine

    class Net(torch.nn.Module):  # stands in for torchvision's detector: returns fixed raw detections
        nms_thresh = 0.5

        def forward(self, images):
            import torchvision

            boxes = torch.tensor([[10.0, 10, 30, 20], [14, 10, 34, 20], [60, 60, 70, 70]])
            scores = torch.tensor([0.9, 0.6, 0.8])
            keep = torchvision.ops.nms(boxes, scores, self.nms_thresh)
            return [{"boxes": boxes[keep], "scores": scores[keep], "labels": torch.ones(len(keep), dtype=torch.int64)}
                    for _ in images]

    eng = get_engine("retinanet")(device="cpu", box_merge="nms", merge_iou=0.7)
    eng.model = Net()
    image = np.zeros((100, 100, 3), np.uint8)
    assert len(eng._raw([image])[0]["boxes"]) == 3  # the two overlapping boxes have IoU 0.67 < 0.7
    eng.params.merge_iou = 0.5
    nms = eng._raw([image])[0]
    assert np.allclose(sorted(nms["scores"]), [0.8, 0.9])
    assert np.allclose(nms["boxes"][np.argmax(nms["scores"])], [10, 10, 30, 20])
    eng.params.box_merge = "wbf"
    wbf = eng._raw([image])[0]
    assert np.allclose(sorted(wbf["scores"]), [0.8, 0.9])
    fused = wbf["boxes"][np.argmax(wbf["scores"])]
    assert np.allclose(fused, [10 + 4 * 0.6 / 1.5, 10, 30 + 4 * 0.6 / 1.5, 20])  # score-weighted mean
    assert eng.model.nms_thresh == pytest.approx(0.9)  # the network keeps near-duplicates for the fusion


class _FixedNet(torch.nn.Module):
    """Stands in for torchvision's detector: returns the same raw detections for every image."""

    nms_thresh = 0.5

    def __init__(self, boxes, scores):
        super().__init__()
        self.boxes, self.scores = torch.tensor(boxes, dtype=torch.float32), torch.tensor(scores, dtype=torch.float32)

    def forward(self, images):
        return [{"boxes": self.boxes.clone(), "scores": self.scores.clone(), "labels": torch.ones(len(self.scores), dtype=torch.int64)}
                for _ in images]


def test_retinanet_checkpoint_ensemble_fuses_the_members_boxes():
    """With `snapshots`, the boxes of the kept checkpoints are fused like test-time flips: one ship seen by
    both members becomes one score-weighted box with the mean score; a box only one member found keeps
    half its score."""
    from anomaly_gui.engines.base import get_engine

    eng = get_engine("retinanet")(device="cpu")
    eng.model = _FixedNet([[10.0, 10, 30, 20]], [0.8])
    image = np.zeros((100, 100, 3), np.uint8)
    alone = eng._raw([image])[0]
    assert np.allclose(alone["boxes"], [[10, 10, 30, 20]]) and np.allclose(alone["scores"], [0.8])
    eng.snapshot_models = [_FixedNet([[14.0, 10, 34, 20], [60, 60, 70, 70]], [0.4, 0.6])]
    both = eng._raw([image])[0]
    assert np.allclose(both["scores"], [0.6, 0.3])  # (0.8 + 0.4) / 2, then 0.6 / 2
    assert np.allclose(both["boxes"][0], [10 + 4 * 0.4 / 1.2, 10, 30 + 4 * 0.4 / 1.2, 20])
    eng.params.tta = True  # members x flips: 8 variants; the fixed nets ignore the flip, so boxes are mirrored back
    assert len(eng._variants([image], eng._members())[0]) == 8


def test_retinanet_checkpoint_ensemble_round_trips_and_old_files_have_none(tmp_path):
    from anomaly_gui.engines.base import Engine, get_engine
    from anomaly_gui.engines.modelfile import read_model_file, write_model_file

    torch.manual_seed(0)
    eng = get_engine("retinanet")(device="cpu", pretrained=False, snapshots=2)
    eng.stats = {"classes": ["ship"], "scale": 1.0, "anchor_base": 8, "frozen_bn": False, "score_shift": 0.0}
    eng.model = eng._build(1, None)
    other = {k: v + 0.01 * torch.randn_like(v) if v.dtype.is_floating_point else v for k, v in eng.model.state_dict().items()}
    eng.snapshot_models, eng.fitted = [eng._snapshot(other)], True
    back = Engine.load(eng.save(tmp_path / "ens.agm"), device="cpu")
    assert len(back.snapshot_models) == 1 and back.params.snapshots == 2
    for a, b in ((eng.model, back.model), (eng.snapshot_models[0], back.snapshot_models[0])):
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(back.model.state_dict()["head.classification_head.cls_logits.weight"],
                           back.snapshot_models[0].state_dict()["head.classification_head.cls_logits.weight"])
    # a model file written before the checkpoint ensemble: no member tensors, no `snapshots` parameter
    tensors, meta = read_model_file(tmp_path / "ens.agm")
    del meta["params"]["snapshots"]
    old = Engine.load(write_model_file(tmp_path / "old.agm", {k: v for k, v in tensors.items() if not k.startswith("snapshot")}, meta),
                      device="cpu")
    assert old.snapshot_models == [] and old.params.snapshots == 1 and len(old._members()) == 1


def _sea_with_ship(seed: int = 0) -> tuple[np.ndarray, list[float]]:
    """400x300 speckled sea (gamma, 4 looks) with one bright 53x15 ship lying along x."""
    rng = np.random.default_rng(seed)
    sea = rng.gamma(4.0, 40.0 / 4.0, (300, 400))
    sea[100:115, 200:253] += 160.0
    img = np.clip(sea, 0, 255).astype(np.uint8)
    return np.repeat(img[:, :, None], 3, axis=2), [200.0, 100.0, 253.0, 115.0]


def test_bright_blobs_trace_a_long_ship_and_ignore_speckle():
    from anomaly_gui.engines.detection_common.cfar import CfarSettings, bright_blobs

    img, ship = _sea_with_ship()
    blobs = bright_blobs(img)
    assert len(blobs) == 1 and np.allclose(blobs[0], ship, atol=2)
    sea_only = img.copy()
    sea_only[100:115, 200:253] = img[200:215, 200:253]
    assert len(bright_blobs(sea_only)) == 0  # speckle alone makes no blob of 40 pixels
    assert len(bright_blobs(img, CfarSettings(min_area=53 * 15 + 200))) == 0


def test_snap_to_blobs_takes_the_blob_box_and_drops_duplicates():
    from anomaly_gui.engines.detection_common.cfar import snap_to_blobs

    blobs = np.array([[200.0, 100, 253, 115]])
    found = {"boxes": np.array([[210.0, 92, 243, 124], [205, 95, 238, 120], [20, 20, 40, 40]]),
             "scores": np.array([0.9, 0.5, 0.7]), "labels": np.array([1, 1, 1])}
    out = snap_to_blobs(found, blobs)
    # the square box on the long ship becomes the ship's box; the second box on it is a duplicate; the box
    # without a blob stays as it was
    assert np.allclose(out["scores"], [0.9, 0.7])
    assert np.allclose(out["boxes"], [[200, 100, 253, 115], [20, 20, 40, 40]])
    assert len(snap_to_blobs(found, np.zeros((0, 4)))["scores"]) == 2  # no blob: nothing snapped (no duplicate then)


def test_retinanet_box_refine_snaps_boxes_and_auto_decides_on_validation():
    """`box_refine=cfar` replaces the network's too-square box of a long ship by the blob's; `auto` keeps the
    blob boxes unless they lower the validation mAP50: cfar on a SAR-like chip (also at equal mAP50), none
    where the labelled object is not the bright blob."""
    from anomaly_gui.engines.base import get_engine
    from anomaly_gui.engines.detection_common import TrainingSet

    img, ship = _sea_with_ship()
    eng = get_engine("retinanet")(device="cpu", box_refine="none")
    eng.model = _FixedNet([[210.0, 92, 243, 124]], [0.9])  # 33x32, as the network boxes a 53x15 ship
    assert np.allclose(eng._raw([img])[0]["boxes"], [[210, 92, 243, 124]])
    eng.params.box_refine = "cfar"
    assert np.allclose(eng._raw([img])[0]["boxes"], [ship])
    eng.params.box_refine, eng.stats["classes"] = "auto", ["ship"]
    val = TrainingSet(boxes=[np.array([ship])], labels=[["ship"]], classes=["ship"])
    assert eng._choose_refine([img], val) == "cfar"
    assert eng.stats["box_refine_validation"]["cfar"][0] == 1.0 > eng.stats["box_refine_validation"]["none"][0]
    eng.model = _FixedNet([[203.0, 99, 250, 117]], [0.9])  # a good learnt box: equal mAP50, the blob box is kept
    assert eng._choose_refine([img], val) == "cfar" and eng.stats["box_refine_validation"]["none"][0] == 1.0
    eng.model = _FixedNet([[210.0, 92, 243, 124]], [0.9])
    eng.stats["box_refine"] = "cfar"
    assert np.allclose(eng._raw([img])[0]["boxes"], [ship])  # auto follows the decision
    # an object that is not the bright blob (a labelled area around it): the blob box would miss it, so auto
    # keeps the learnt box
    area = [180.0, 80, 280, 140]
    eng.model = _FixedNet([area], [0.9])
    val = TrainingSet(boxes=[np.array([area])], labels=[["ship"]], classes=["ship"])
    assert eng._choose_refine([img], val) == "none"
    assert eng.stats["box_refine_validation"]["none"][0] == 1.0 > eng.stats["box_refine_validation"]["cfar"][0]
    assert eng._choose_refine([img], TrainingSet(boxes=[np.zeros((0, 4))], labels=[[]], classes=["ship"])) == "none"
    eng.params.box_refine = "cfar"  # a choice the analyst makes is kept as it is
    assert eng._choose_refine([img], val) == "cfar"


def test_snap_split_gives_ships_moored_side_by_side_one_box_each():
    """One loose box over two adjacent ships (as the network boxes 14-px ships in a harbour) snaps to one
    blob and, with `split`, also yields the other blob lying inside it, with the same score; a blob mostly
    outside the box is not taken, and without `split` the second ship is lost (the behaviour of before)."""
    from anomaly_gui.engines.detection_common.cfar import snap_to_blobs

    blobs = np.array([[280.0, 567, 296, 580], [292.0, 581, 310, 593], [300.0, 598, 330, 640], [20.0, 20, 40, 40]])
    found = {"boxes": np.array([[272.0, 565, 308, 603]]), "scores": np.array([0.9]), "labels": np.array([1])}
    out = snap_to_blobs(found, blobs, split=True)
    assert np.allclose(out["boxes"], [[280, 567, 296, 580], [292, 581, 310, 593]]) and np.allclose(out["scores"], [0.9, 0.9])
    assert np.allclose(snap_to_blobs(found, blobs)["boxes"], [[280, 567, 296, 580]])
    # an extra blob that another, stronger detection already took stays that detection's (no duplicate)
    two = {"boxes": np.array([[290.0, 579, 312, 595], [272.0, 565, 308, 603]]), "scores": np.array([0.95, 0.6]), "labels": np.array([1, 1])}
    out = snap_to_blobs(two, blobs, split=True)
    assert np.allclose(out["boxes"], [[292, 581, 310, 593], [280, 567, 296, 580]]) and np.allclose(out["scores"], [0.95, 0.6])


def test_retinanet_keep_last_keeps_the_weights_where_training_ended(mobilenet_weights):
    """`keep_epoch=last`: the model is the averaged weights of the last epoch (what its validation measured),
    not the best-validated one; the stats say so."""
    from anomaly_gui.core.formats.base import import_dataset
    from anomaly_gui.core.metrics.detection import Boxes, mean_average_precision
    from anomaly_gui.engines.base import RunContext, get_engine
    from anomaly_gui.engines.detection_common import item_boxes

    torch.set_num_threads(1)
    items = import_dataset(SAMPLE_SAR).items
    train, val = [it for it in items if it.split == "train"], [it for it in items if it.split == "val"]
    eng = get_engine("retinanet")(device="cpu", epochs=3, crops_per_epoch=16, patience=0, min_confidence=0.0,
                                  backbone_weights=str(mobilenet_weights), box_refine="none", keep_epoch="last", calibrate=False)
    logs = []
    eng.fit(train + val, RunContext(log=logs.append))
    epochs = [e for e in logs if "epoch" in e]
    assert eng.stats["best_epoch"] == 3 == epochs[-1]["epoch"] and eng.stats["kept"] == "last"
    assert eng.stats["val_map50"] == epochs[-1]["map50"]
    res = eng.score(val)
    m = mean_average_precision([Boxes(*item_boxes(it)) for it in val], [Boxes.from_annotations(r.boxes, with_scores=True) for r in res])
    assert m.map50_95 == pytest.approx(epochs[-1]["map50_95"], abs=1e-6)  # the last epoch's weights, as validated
