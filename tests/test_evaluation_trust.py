"""Issue 12: evaluation an analyst can trust. One regression test (or more) per defect; each failed before the fix.

Fast: tiny synthetic data and a tiny test engine (`c2_engines.MeanDiffEngine`), no real model is trained.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytest

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.formats.base import Annotation, DatasetItem
from anomaly_gui.core.imageio import write_image
from anomaly_gui.engines import base
from anomaly_gui.engines.base import Engine, RunContext, ScoreResult, Task

from c2_engines import MeanDiffEngine, make_images, register_tiny_engine


@pytest.fixture
def tiny(monkeypatch):
    return register_tiny_engine(monkeypatch)


def _mvtec_folder(root: Path, n_train: int = 8, private: int = 0) -> Path:
    """A small MVTec AD (2) layout on disk from `make_images`, plus unlabelled `test_private/` images."""
    items = make_images(root / "_src", n_train=n_train)
    for it in items:
        sub = "train/good" if it.split == "train" else f"test/{it.label}"
        dst = root / "ds" / sub / Path(it.path).name
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(Path(it.path).read_bytes())
        if it.mask_path:
            m = root / "ds" / "ground_truth" / it.label / Path(it.mask_path).name
            m.parent.mkdir(parents=True, exist_ok=True)
            m.write_bytes(Path(it.mask_path).read_bytes())
    rng = np.random.default_rng(5)
    for k in range(private):
        write_image(root / "ds" / "test_private" / f"p{k:03d}.png", (rng.random((64, 64)) * 200).astype(np.uint8))
    return root / "ds"


# -- 1. polygons count as their bounding box ---------------------------------------------------------------
def test_polygon_ground_truth_counts_as_its_box_in_map_and_training():
    from anomaly_gui.core.metrics.detection import map_from_items
    from anomaly_gui.engines.detection_common import item_boxes

    poly = Annotation("polygon", "ship", {"points": [[10, 10], [30, 12], [28, 40], [12, 38]]})
    it = DatasetItem("/x/a.png", annotations=[poly])
    det = Annotation("box", "ship", {"x1": 10, "y1": 10, "x2": 30, "y2": 40}, score=0.9, source="model")
    res = map_from_items([it], [[det]])
    assert res.map50 == pytest.approx(1.0) and res.per_class["ship"]["n_gt"] == 1
    boxes, labels = item_boxes(it)
    assert boxes.tolist() == [[10, 10, 30, 40]] and labels == ["ship"]


class _OracleDetector(Engine):
    """Returns, for each item, the bounding boxes of its own ground truth (read from a side table)."""

    name = "t12_oracle"
    task = Task.DETECTION
    title = "oracle (test)"
    needs = frozenset({"boxes", "classes"})
    Params = MeanDiffEngine.Params
    truth: dict[str, list[tuple[float, float, float, float]]] = {}

    def fit(self, items: Sequence[DatasetItem], ctx: RunContext | None = None) -> None:
        self.stats = {"classes": ["ship"], "n_train": len(items)}
        self.fitted = True

    def score(self, items: Sequence[DatasetItem], ctx: RunContext | None = None) -> list[ScoreResult]:
        out = []
        for it in items:
            boxes = [Annotation("box", "ship", dict(zip(("x1", "y1", "x2", "y2"), b)), score=0.9, source="model")
                     for b in self.truth.get(Path(it.path).name, [])]
            out.append(ScoreResult(score=0.9 if boxes else 0.0, boxes=boxes))
        return out

    def state_tensors(self) -> dict[str, Any]:
        return {}

    def load_state_tensors(self, tensors: dict[str, Any]) -> None:
        self.fitted = True


def _coco_polygons(root: Path, n: int = 12) -> Path:
    from anomaly_gui.core.formats.coco import write_coco

    rng = np.random.default_rng(1)
    items = []
    _OracleDetector.truth = {}
    for k in range(n):
        img = (rng.random((64, 64)) * 255).astype(np.uint8)
        p = root / "src" / f"scene{k:02d}.png"
        write_image(p, img)
        x, y = 5 + k, 8 + k
        pts = [[x, y], [x + 20, y + 2], [x + 18, y + 25], [x + 1, y + 22]]
        items.append(DatasetItem(str(p), annotations=[Annotation("polygon", "ship", {"points": pts})], width=64, height=64))
        _OracleDetector.truth[p.name] = [(x, y, x + 20, y + 25)]
    write_coco(items, root / "coco")
    return root / "coco"


def test_evaluate_detection_on_coco_polygons_counts_them(tmp_path, monkeypatch):
    from anomaly_gui.evaluation.detection import evaluate_detection

    base.list_engines()
    monkeypatch.setitem(base._ENGINES, _OracleDetector.name, _OracleDetector)
    data = _coco_polygons(tmp_path)
    out = evaluate_detection(data, "t12_oracle", device="cpu")
    assert out["per_class"]["ship"]["n_gt"] == out["n_test"] > 0
    assert out["map50"] == pytest.approx(1.0)
    assert "threshold_source" in out


# -- 2. unlabelled test items are left out and counted -----------------------------------------------------
def test_mvtec_ad2_private_images_are_counted_as_unlabelled_not_normal(tmp_path, tiny):
    from anomaly_gui.evaluation.image import evaluate_image

    data = _mvtec_folder(tmp_path, private=5)
    out = evaluate_image(data, "c2_meandiff", device="cpu")
    assert out["n_unlabelled"] == 5
    assert out["n_test"] == 13 and out["n_measured"] == 8
    # image AUROC on the 8 labelled items only: the tiny engine separates them perfectly
    assert out["image_auroc"] == pytest.approx(1.0)


# -- 3. the threshold never comes from test labels ---------------------------------------------------------
def test_gui_run_with_three_training_images_never_reads_test_items_for_its_threshold(tmp_path, tiny, monkeypatch):
    from anomaly_gui.core import run_metrics
    from anomaly_gui.core.project import open_project
    from anomaly_gui.pipeline import run_split, train_run

    proj = open_project(tmp_path / "p.agproj")
    proj.add_items(make_images(tmp_path / "d", n_train=3))
    test_ids = {int(it.id) for it in proj.items(split="test")}
    seen: list[int] = []
    real = run_metrics.critical_values

    def spy(project, run_id, item_ids, min_area, use_maps=True):
        if spying[0]:
            seen.extend(int(i) for i in item_ids)
        return real(project, run_id, item_ids, min_area, use_maps)

    spying = [False]

    def watched(real):
        def choose(*a, **k):
            spying[0] = True
            try:
                return real(*a, **k)
            finally:
                spying[0] = False
        return choose

    monkeypatch.setattr(run_metrics, "critical_values", spy)
    for name in ("choose_threshold", "choose_threshold_with_source"):  # whichever the pipeline calls
        if hasattr(run_metrics, name):
            monkeypatch.setattr(run_metrics, name, watched(getattr(run_metrics, name)))
    run_id = train_run(proj, "c2_meandiff", {}, device="cpu")
    run = proj.run(run_id)
    assert seen and not set(seen) & test_ids
    split = run_split(proj, run_id)
    assert set(seen) <= set(split["val"]) | set(split["train"])
    assert "test" not in run.metrics["threshold_source"]
    # a single training item: the threshold comes from it, and the run log says so
    proj.set_split([int(it.id) for it in proj.items(split="train")][1:], "")
    seen.clear()
    run_id = train_run(proj, "c2_meandiff", {}, device="cpu")
    assert seen and not set(seen) & test_ids
    assert proj.run(run_id).metrics["threshold_source"] == "training"
    assert any("chosen on the training items" in e.get("warning", "") for e in proj.run(run_id).log)
    proj.close()


def test_save_model_stores_a_validation_threshold_and_names_its_source(tmp_path, tiny):
    from anomaly_gui.evaluation.image import evaluate_image

    data = _mvtec_folder(tmp_path)
    out = evaluate_image(data, "c2_meandiff", device="cpu", save_model=tmp_path / "m.agm")
    assert "test" not in out["threshold_source"] and "validation" in out["threshold_source"]
    eng = Engine.load(tmp_path / "m.agm", device="cpu")
    assert eng.stats["threshold"] == pytest.approx(out["threshold"])
    assert "test" not in eng.stats["threshold_method"]
    assert out["n_train"] + out["n_val"] == 8 and out["n_val"] >= 1


# -- 4. test data must differ from training data -----------------------------------------------------------
def test_evaluate_refuses_test_set_equal_to_training_set(tmp_path, tiny, monkeypatch):
    from anomaly_gui.evaluation.detection import evaluate_detection
    from anomaly_gui.evaluation.image import evaluate_image

    data = _mvtec_folder(tmp_path)
    other = tmp_path / "other"
    (other / "test" / "good").mkdir(parents=True)
    src = next((data / "train" / "good").iterdir())
    (other / "test" / "good" / "copy.png").write_bytes(src.read_bytes())
    (other / "test" / "good" / "x.png").write_bytes(next((data / "test" / "good").iterdir()).read_bytes())
    with pytest.raises(DataError, match=r"1 test item.*identical.*copy\.png"):
        evaluate_image(data, "c2_meandiff", test=other, device="cpu")
    out = evaluate_image(data, "c2_meandiff", test=other, device="cpu", allow_overlap=True)
    assert out["n_overlap"] == 1 and any("identical" in w for w in out["warnings"])

    base.list_engines()
    monkeypatch.setitem(base._ENGINES, _OracleDetector.name, _OracleDetector)
    coco = _coco_polygons(tmp_path / "c")
    with pytest.raises(DataError, match=r"identical"):
        evaluate_detection(coco, "t12_oracle", test=coco, device="cpu")


def test_cli_evaluate_x_test_x_refuses_naming_the_overlap(tmp_path, monkeypatch, capsys):
    """A detection dataset trains on all of X with `--test`: X as its own test set is refused."""
    from anomaly_gui.cli import main

    base.list_engines()
    monkeypatch.setitem(base._ENGINES, _OracleDetector.name, _OracleDetector)
    data = _coco_polygons(tmp_path)
    rc = main(["evaluate", str(data), "--test", str(data), "--engine", "t12_oracle", "--device", "cpu", "--json"])
    out = capsys.readouterr()
    assert rc == 2 and out.out == ""
    assert "12 test item(s) byte-identical to training items" in out.err and "scene00.png" in out.err
    rc = main(["evaluate", str(data), "--test", str(data), "--engine", "t12_oracle", "--device", "cpu",
               "--allow-overlap", "--json"])
    assert rc == 0 and '"n_overlap": 12' in capsys.readouterr().out


# -- 5. splits keep groups together ------------------------------------------------------------------------
def test_split_keeps_sequences_scenes_and_clips_on_one_side():
    from anomaly_gui.core.splits import split_items, train_val_split

    seq = [DatasetItem(f"/c/{s}_{k}.jpg", meta={"seq_id": f"s{s}", "location": "L1"}) for s in range(20) for k in range(3)]
    split_items(seq, overwrite=True)
    by_seq: dict[str, set[str]] = {}
    for it in seq:
        by_seq.setdefault(it.meta["seq_id"], set()).add(it.split)
    assert all(len(v) == 1 for v in by_seq.values()) and {"train", "test"} <= {it.split for it in seq}
    tiles = [DatasetItem(f"/h/P{s:04d}_{y}_{y + 800}_0_800.jpg") for s in range(15) for y in (0, 600, 1200)]
    train, val = train_val_split(tiles, 0.2)
    scenes = lambda xs: {Path(t.path).name.split("_")[0] for t in xs}  # noqa: E731
    assert val and not scenes(train) & scenes(val)
    frames = [DatasetItem(f"/v/c{c}/{i}.jpg", kind="frame", group=f"c{c}", frame_index=i) for c in range(4) for i in range(10)]
    train, val = train_val_split(frames, 0.25)
    assert val and not {f.group for f in train} & {f.group for f in val}
    one = [f for f in frames if f.group == "c0"]
    train, val = train_val_split(one, 0.2)  # one clip: its end is held out, in time
    assert [f.frame_index for f in val] == [8, 9] and max(f.frame_index for f in train) == 7


def test_embedding_protocol_holds_out_whole_sequences():
    from anomaly_gui.evaluation.embedding import split_known_novel

    items = [DatasetItem(f"/c/{sp}_{s}_{k}.jpg", label=sp, meta={"seq_id": f"{sp}{s}"})
             for sp in ("deer", "fox") for s in range(6) for k in range(3)]
    items += [DatasetItem(f"/c/wolf_{k}.jpg", label="wolf") for k in range(1)]
    train, test, flags = split_known_novel(items)
    assert not {it.meta.get("seq_id") for it in train} & {it.meta.get("seq_id") for it, f in zip(test, flags) if not f}


def test_dataset_own_validation_split_is_kept():
    from anomaly_gui.core.splits import train_val_split

    items = [DatasetItem(f"/x/{k}.png", split="val" if k < 2 else "train") for k in range(10)]
    train, val = train_val_split(items)
    assert [Path(v.path).stem for v in val] == ["0", "1"] and len(train) == 8


# -- 6. silent fallbacks become named warnings -------------------------------------------------------------
class _NanEngine(MeanDiffEngine):
    name = "t12_nan"

    def score(self, items, ctx=None):
        out = super().score(items, ctx)
        for it, r in zip(items, out):
            if Path(it.path).name == "000.png" and "defect" in it.path:
                r.score = float("nan")
        return out


def test_non_finite_scores_are_a_named_warning_and_counts_agree(tmp_path, monkeypatch):
    from anomaly_gui.core.metrics import auroc_report
    from anomaly_gui.evaluation.image import evaluate_image

    rep = auroc_report([0, 1, 1], [0.1, float("nan"), 0.9])
    assert rep.n == 3 and rep.n_dropped == 1 and rep.value == pytest.approx(1.0) and "non-finite" in rep.warning
    base.list_engines()
    monkeypatch.setitem(base._ENGINES, _NanEngine.name, _NanEngine)
    out = evaluate_image(_mvtec_folder(tmp_path), "t12_nan", device="cpu")
    assert out["n_not_scored"] == 1 and out["n_measured"] == out["n_test"] - 1
    assert any("non-finite" in w and "000.png" in w for w in out["warnings"])


def _ucsd(root: Path, n_test: int = 3, m_entries: int = 3, with_json: bool = False) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("Train", 1), ("Test", n_test)):
        for c in range(1, n + 1):
            for f in range(1, 11):
                write_image(root / split / f"{split}{c:03d}" / f"{f:03d}.png", (rng.random((24, 32)) * 255).astype(np.uint8))
    lines = ["TestVideoFile = {};"] + [f"TestVideoFile{{end+1}}.gt_frame = [{3 + k}:{6 + k}];" for k in range(m_entries)]
    (root / "Test" / "UCSDped2.m").write_text("\n".join(lines) + "\n")
    return root


def test_m_file_count_mismatch_is_a_warning_in_the_output_and_scan_ucsd_reads_m(tmp_path):
    from anomaly_gui.core.video_io import scan_ucsd
    from anomaly_gui.evaluation.video import read_split

    good = _ucsd(tmp_path / "good")
    items = scan_ucsd(good, "test")
    assert sum(1 for it in items if it.is_anomalous) == 12  # ranges 3-6, 4-7, 5-8
    problems: list[str] = []
    read_split(_ucsd(tmp_path / "bad", m_entries=2), "test", problems)
    assert any("2 clip entries for 3 test clips" in p for p in problems)


def test_partly_labelled_clip_keeps_its_labelled_frames():
    from anomaly_gui.core.video_io import clips_from_items

    items = [DatasetItem(f"/v/c/{i:03d}.png", kind="frame", group="c", frame_index=i,
                         is_anomalous=None if i < 3 else (i >= 6)) for i in range(10)]
    (clip,) = clips_from_items(items)
    assert clip.labels is not None and clip.known is not None
    assert clip.known.tolist() == [False] * 3 + [True] * 7
    assert clip.labels[clip.known].tolist() == [False] * 3 + [True] * 4


# -- 7. thin defects survive the comparison ----------------------------------------------------------------
def test_thin_scratch_is_kept_when_the_mask_is_shrunk_to_the_map():
    from anomaly_gui.core.metrics.segmentation import align_mask

    mask = np.zeros((256, 256), np.uint8)
    mask[:, 100] = 255  # a one-pixel scratch
    small = align_mask(mask, (64, 64))
    assert small.any() and small[:, 25].all()


def test_run_pixel_metrics_keep_thin_defects(tmp_path, tiny):
    from anomaly_gui.core.project import open_project
    from anomaly_gui.core.run_metrics import pixel_metrics

    proj = open_project(tmp_path / "p.agproj")
    mp = tmp_path / "m.png"
    mask = np.zeros((1024, 1024), np.uint8)
    mask[:, 500] = 255
    write_image(mp, mask)
    img = tmp_path / "i.png"
    write_image(img, np.zeros((1024, 1024), np.uint8))
    (item_id,) = proj.add_items([DatasetItem(str(img), split="test", is_anomalous=True, mask_path=str(mp), width=1024, height=1024)])
    run = proj.create_run("c2_meandiff", "image", {})
    amap = np.zeros((1024, 1024), np.float32)
    amap[:, 498:503] = 1.0
    proj.save_scores(run.id, [item_id], [1.0], [amap], [{"image_size": [1024, 1024]}])
    out = pixel_metrics(proj, run.id, proj.items(ids=[item_id]))
    assert out.get("pixel_auroc") == pytest.approx(1.0)
    proj.close()


# -- 8. iscrowd and VOC difficult objects are ignored ------------------------------------------------------
def test_crowd_and_difficult_objects_are_neither_true_nor_false_positives():
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from anomaly_gui.core.metrics.detection import Boxes, mean_average_precision

    gt = Boxes(np.array([[0, 0, 10, 10], [50, 50, 90, 90], [20, 20, 30, 30]], float), ["a", "a", "a"],
               ignore=np.array([False, True, False]), crowd=np.array([False, True, False]))
    det = Boxes(np.array([[0, 0, 10, 10], [55, 55, 80, 80], [60, 60, 85, 85], [20, 20, 31, 30]], float),
                ["a"] * 4, np.array([0.9, 0.95, 0.85, 0.5]))
    ours = mean_average_precision([gt], [det])
    coco = COCO()
    coco.dataset = {"images": [{"id": 1, "width": 100, "height": 100}], "categories": [{"id": 1, "name": "a"}],
                    "annotations": [{"id": i + 1, "image_id": 1, "category_id": 1, "iscrowd": int(ig),
                                     "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "area": float((b[2] - b[0]) * (b[3] - b[1]))}
                                    for i, (b, ig) in enumerate(zip(gt.xyxy, gt.ignore))]}
    coco.createIndex()
    dt = coco.loadRes([{"image_id": 1, "category_id": 1, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": float(s)}
                       for b, s in zip(det.xyxy, det.scores)])
    ev = COCOeval(coco, dt, "bbox")
    ev.params.areaRng = [[0, 1e10]]
    ev.params.areaRngLbl = ["all"]
    ev.evaluate()
    ev.accumulate()
    prec = ev.eval["precision"][:, :, 0, 0, -1]
    assert ours.map50 == pytest.approx(float(prec[0].mean())) and ours.map50 == pytest.approx(1.0)
    assert ours.map50_95 == pytest.approx(float(prec.mean()))
    assert ours.per_class["a"]["n_gt"] == 2


def test_readers_mark_iscrowd_and_difficult(tmp_path):
    import json

    from anomaly_gui.core.formats.base import import_dataset
    from anomaly_gui.core.metrics.detection import ground_truth_boxes

    write_image(tmp_path / "images" / "a.png", np.zeros((50, 50), np.uint8))
    (tmp_path / "annotations.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "images/a.png", "width": 50, "height": 50}],
        "categories": [{"id": 1, "name": "ship"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10], "iscrowd": 0},
                        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [20, 20, 10, 10], "iscrowd": 1,
                         "segmentation": {"counts": [0, 100], "size": [50, 50]}}]}))
    (item,) = import_dataset(tmp_path).items
    boxes = ground_truth_boxes(item.annotations)
    assert boxes.ignore.tolist() == [False, True]
    voc = Annotation("box", "ship", {"x1": 1, "y1": 1, "x2": 5, "y2": 5, "difficult": True})
    assert ground_truth_boxes([voc]).ignore.tolist() == [True]


# -- 9. video: per-clip normalised and deployable frame AUC side by side ----------------------------------
def test_video_output_labels_both_frame_aucs():
    from anomaly_gui.evaluation.video import frame_auc_figures

    labels = [np.array([0, 0, 1, 1], bool), np.array([0, 1, 1, 1], bool)]
    normalised = [np.array([0.0, 0.1, 0.9, 1.0]), np.array([0.0, 0.8, 0.9, 1.0])]
    raw = [np.array([1.0, 1.1, 1.9, 2.0]), np.array([5.0, 5.8, 5.9, 6.0])]
    out = frame_auc_figures(labels, normalised, raw)
    assert out["frame_auc"] == pytest.approx(1.0)
    assert out["frame_auc_raw"] == pytest.approx(13 / 15)  # a clip's offset hurts the deployable figure
    assert "per-clip" in out["frame_auc_normalisation"] and "test clip" in out["frame_auc_normalisation"]
    assert math.isfinite(out["frame_auc_raw"])


# -- one evaluate_run: the GUI's stored metrics and the report's are the same numbers ----------------------
def test_report_prints_the_run_metrics_of_the_gui(tmp_path, tiny):
    from anomaly_gui.core.project import open_project
    from anomaly_gui.core.report.data import run_evaluation
    from anomaly_gui.pipeline import train_run

    proj = open_project(tmp_path / "p.agproj")
    proj.add_items(make_images(tmp_path / "d", n_train=6, n_good=5, n_bad=5))
    run_id = train_run(proj, "c2_meandiff", {}, device="cpu")
    stored = proj.run(run_id).metrics
    ev = run_evaluation(proj, run_id, truth="dataset")
    for key in ("image_auroc", "f1_max", "pixel_auroc", "aupro"):
        assert ev.metrics[key] == pytest.approx(stored[key], abs=1e-12), key
    assert ev.metrics["n_items"] == stored["n_test"]
    proj.close()


def test_frame_csv_leaves_the_ground_truth_of_unlabelled_frames_empty(tmp_path):
    import csv

    from anomaly_gui.core.video_export import FrameVerdicts, export_csv

    v = FrameVerdicts(np.array([0.1, 0.9, 0.2]), 0.5, labels=np.array([False, True, False]),
                      known=np.array([True, True, False]))
    rows = list(csv.DictReader(Path(export_csv(tmp_path / "f.csv", v, fps=10.0, clip="c")).open()))
    assert [r["ground_truth"] for r in rows] == ["normal", "anomalous", ""]


def test_frame_threshold_without_validation_uses_the_training_clips_scored_as_unseen(tmp_path):
    """A video run without validation frames chooses its frame threshold on the training frames; when the engine
    measured them as unseen clips (the appearance memory has the training frames' own patches, so their stored
    scores are lower: `frame_threshold_training`, decision 0036), that threshold is used, and the method says so;
    a run with validation frames keeps the validation rule."""
    from anomaly_gui.core.project import open_project
    from anomaly_gui.core.run_files import write_split
    from anomaly_gui.core.run_metrics import frame_threshold, run_frame_threshold

    proj = open_project(tmp_path / "p.agproj")
    img = tmp_path / "f.png"
    write_image(img, np.zeros((8, 8), np.uint8))
    ids = proj.add_items([DatasetItem(str(img), split="train", is_anomalous=False, group="clip", frame_index=k)
                          for k in range(6)])
    run = proj.create_run("future_frame", "video", {})
    proj.save_scores(run.id, ids, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], [None] * 6, [{}] * 6)
    write_split(proj, run.id, ids, [])
    t, how, source = frame_threshold(proj, run.id)
    assert source == "training" and 0.6 < t < 0.601 and "training" in how
    proj.update_run(run.id, metrics={"frame_threshold_training": 1.7})
    t, how, source = frame_threshold(proj, run.id)
    assert (t, source) == (1.7, "training") and "unseen" in how
    assert run_frame_threshold(proj, proj.run(run.id)) == 1.7  # what the player and the Metrics panel show
    write_split(proj, run.id, ids[:4], ids[4:])  # two validation frames: their rule, not the training figure
    t, how, source = frame_threshold(proj, run.id)
    assert source == "validation" and 0.6 < t < 0.601
    proj.close()
