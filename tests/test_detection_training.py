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
    eng = get_engine("retinanet")(device="cpu", epochs=4, crops_per_epoch=24, patience=0, min_confidence=0.0,
                                  backbone_weights=str(mobilenet_weights))
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
