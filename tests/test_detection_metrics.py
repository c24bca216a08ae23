"""mAP against pycocotools (the reference) and a hand-computed case; the original split."""
from __future__ import annotations

import numpy as np
import pytest

from anomaly_gui.core.metrics.detection import Boxes, box_iou, mean_average_precision
from anomaly_gui.core.splits import original_split, split_items


def _random_case(rng: np.random.Generator, n_images: int = 12, classes=("ship", "boat")):
    gts, dets = [], []
    for _ in range(n_images):
        n = int(rng.integers(0, 6))
        xy = rng.uniform(0, 200, (n, 2))
        wh = rng.uniform(5, 60, (n, 2))
        g = np.hstack([xy, xy + wh])
        glab = [str(rng.choice(classes)) for _ in range(n)]
        # detections: jittered copies of some gts plus random false positives
        keep = rng.random(n) < 0.8
        d = g[keep] + rng.normal(0, 4, (int(keep.sum()), 4))
        dlab = [lab if rng.random() < 0.9 else str(rng.choice(classes)) for lab, k in zip(glab, keep) if k]
        m = int(rng.integers(0, 4))
        fxy = rng.uniform(0, 200, (m, 2))
        d = np.vstack([d.reshape(-1, 4), np.hstack([fxy, fxy + rng.uniform(5, 50, (m, 2))])])
        dlab += [str(rng.choice(classes)) for _ in range(m)]
        s = rng.uniform(0.05, 1.0, len(d))
        gts.append(Boxes(g.reshape(-1, 4), glab))
        dets.append(Boxes(d, dlab, s))
    return gts, dets


def _coco_reference(gts, dets):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    cats = sorted({c for g in gts for c in g.labels} | {c for d in dets for c in d.labels})
    cid = {c: i + 1 for i, c in enumerate(cats)}
    images, anns, results = [], [], []
    for i, (g, d) in enumerate(zip(gts, dets)):
        images.append({"id": i + 1, "width": 300, "height": 300})
        for b, lab in zip(g.xyxy, g.labels):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cid[lab], "bbox": [b[0], b[1], w, h],
                         "area": w * h, "iscrowd": 0})
        for b, lab, s in zip(d.xyxy, d.labels, d.scores):
            results.append({"image_id": i + 1, "category_id": cid[lab], "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                            "score": float(s)})
    coco = COCO()
    coco.dataset = {"images": images, "annotations": anns, "categories": [{"id": v, "name": k} for k, v in cid.items()]}
    coco.createIndex()
    ev = COCOeval(coco, coco.loadRes(results), "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return float(ev.stats[1]), float(ev.stats[0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_map_matches_pycocotools(seed):
    pytest.importorskip("pycocotools")
    gts, dets = _random_case(np.random.default_rng(seed))
    ref50, ref = _coco_reference(gts, dets)
    ours = mean_average_precision(gts, dets)
    assert ours.map50 == pytest.approx(ref50, abs=1e-6)
    assert ours.map50_95 == pytest.approx(ref, abs=1e-6)


def test_map_hand_computed():
    # one image, two ships; detections: a perfect hit (0.9), a false positive (0.8), a half-overlap (0.7)
    gt = Boxes(np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float), ["ship", "ship"])
    det = Boxes(np.array([[0, 0, 10, 10], [50, 50, 60, 60], [20, 25, 30, 35]], float), ["ship"] * 3,
                np.array([0.9, 0.8, 0.7]))
    res = mean_average_precision([gt], [det])
    # IoU of the third box is 50/150 = 1/3 < 0.5: at 0.5 only the first is a TP -> precision 1 up to recall 0.5
    # 101-point: recall points 0..0.5 (51 points) get precision 1, the rest 0 -> 51/101
    assert res.map50 == pytest.approx(51 / 101)
    assert box_iou(det.xyxy[2:], gt.xyxy[1:])[0, 0] == pytest.approx(1 / 3)
    perfect = mean_average_precision([gt], [Boxes(gt.xyxy, gt.labels, np.array([0.9, 0.8]))])
    assert perfect.map50 == pytest.approx(1.0) and perfect.map50_95 == pytest.approx(1.0)
    empty = mean_average_precision([gt], [Boxes(np.zeros((0, 4)), [], np.zeros(0))])
    assert empty.map50 == 0.0


def test_original_split_fractions_and_seed():
    keys = [f"img{i:03d}" for i in range(100)]
    a = original_split(keys)
    b = original_split(list(reversed(keys)))
    assert a == b  # order-independent, fixed seed
    counts = {s: sum(1 for v in a.values() if v == s) for s in ("train", "val", "test")}
    assert counts == {"test": 10, "val": 18, "train": 72}
    assert original_split(keys, seed=7) != a


def test_split_keeps_existing_and_stores(tmp_project):
    from anomaly_gui.core.formats.base import DatasetItem
    from anomaly_gui.core.splits import apply_original_split

    items = [DatasetItem(path=f"/x/{i}.jpg") for i in range(20)]
    items[0].split = "test"
    tmp_project.add_items(items)
    counts = apply_original_split(tmp_project)
    assert sum(counts.values()) == 20
    stored = {it.path: it.split for it in tmp_project.items()}
    assert stored["/x/0.jpg"] == "test"  # an existing split is kept (editable)
    assert set(stored.values()) <= {"train", "val", "test"}
    assert tmp_project.setting("split.recipe")["seed"] == 42
    groups = split_items(tmp_project.items())
    assert sum(len(v) for v in groups.values()) == 20
