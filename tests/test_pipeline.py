"""pipeline (the run lifecycle): train, score, threshold, metrics, reopen — Qt-free, on a tiny real engine and on mvtec_screw."""
from __future__ import annotations

import numpy as np
import pytest

from anomaly_gui.core.project import open_project
from anomaly_gui.core.metrics.segmentation import aupro, pixel_auroc
from anomaly_gui.core.run_metrics import critical_values, threshold_from_values
from anomaly_gui.pipeline import (RunError, finalize_run, load_run_engine, model_path, rename_run, run_split,
                                   run_summary, score_run, split_train_val, train_run)
from anomaly_gui.engines.base import Cancelled, RunContext

from c2_engines import MeanDiffEngine, make_images, register_tiny_engine


@pytest.fixture
def tiny(monkeypatch):
    return register_tiny_engine(monkeypatch)


@pytest.fixture
def synth_project(tmp_path, tiny):
    proj = open_project(tmp_path / "p.agproj")
    proj.add_items(make_images(tmp_path / "data"))
    yield proj
    proj.close()


def test_train_run_scores_thresholds_and_measures(synth_project):
    logged = []
    run_id = train_run(synth_project, "c2_meandiff", {"epochs": 3}, device="cpu", ctx=RunContext(log=logged.append))
    run = synth_project.run(run_id)
    assert run.status == "done" and run.finished is not None
    assert run.params["epochs"] == 3 and run.engine == "c2_meandiff" and run.task == "image"
    assert [e["epoch"] for e in run.log] == [1, 2, 3] and [e["epoch"] for e in logged] == [1, 2, 3]
    assert model_path(synth_project, run_id).is_file()
    split = run_split(synth_project, run_id)
    assert len(split["train"]) == 6 and len(split["val"]) == 2  # 20 % of 8 normals held out
    scores = synth_project.scores(run_id)
    assert set(split["val"]) <= set(scores) and not set(split["train"]) & set(scores)
    assert len(scores) == 2 + 8
    assert all(s.map_path and s.extra["image_size"] == [64, 64] for s in scores.values())
    m = run.metrics
    assert m["image_auroc"] == pytest.approx(1.0)
    assert m["pixel_auroc"] > 0.9 and 0.5 < m["aupro"] <= 1.0
    assert m["confusion"]["tp"] + m["confusion"]["fn"] == 4 and m["confusion"]["fp"] + m["confusion"]["tn"] == 4
    assert m["n_train"] == 6 and m["fit_seconds"] >= 0 and m["items_per_second"] > 0
    # no anomalies in validation: the threshold sits just above every normal validation item
    crit = critical_values(synth_project, run_id, split["val"], 0.0)
    assert run.threshold > crit.max() and run.threshold == pytest.approx(crit.max())
    assert "threshold" in run_summary(run)


def test_reopen_reads_results_without_recomputing(tmp_path, tiny, monkeypatch):
    path = tmp_path / "p.agproj"
    with open_project(path) as proj:
        proj.add_items(make_images(tmp_path / "data"))
        run_id = train_run(proj, "c2_meandiff", {}, device="cpu")
        before = proj.scores(run_id)
        maps_before = {i: proj.score_map(run_id, i) for i in before}
        metrics = proj.run(run_id).metrics
    monkeypatch.setattr(MeanDiffEngine, "score", lambda *a, **k: pytest.fail("re-scored on reopen"))
    monkeypatch.setattr(MeanDiffEngine, "fit", lambda *a, **k: pytest.fail("re-fitted on reopen"))
    with open_project(path) as proj:
        run = proj.run(run_id)
        assert run.status == "done" and run.metrics == metrics
        after = proj.scores(run_id)
        assert {i: s.score for i, s in after.items()} == {i: s.score for i, s in before.items()}
        for i, m in maps_before.items():
            np.testing.assert_array_equal(proj.score_map(run_id, i), m)


def test_saved_model_rescoring_is_exact(synth_project):
    run_id = train_run(synth_project, "c2_meandiff", {}, device="cpu")
    stored = synth_project.scores(run_id)
    engine = load_run_engine(synth_project, run_id, device="cpu")
    items = synth_project.items(ids=list(stored))
    fresh = engine.score(items)
    assert [r.score for r in fresh] == [stored[it.id].score for it in items]


def test_cancel_marks_run_cancelled(synth_project):
    calls = {"n": 0}

    def cancelled() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    with pytest.raises(Cancelled):
        train_run(synth_project, "c2_meandiff", {"epochs": 5}, device="cpu", ctx=RunContext(is_cancelled=cancelled))
    (run,) = synth_project.runs()
    assert run.status == "cancelled" and not model_path(synth_project, run.id).exists()
    with pytest.raises(RunError, match="no model file"):
        load_run_engine(synth_project, run.id)


def test_failure_is_recorded_with_reason(synth_project, monkeypatch):
    monkeypatch.setattr(MeanDiffEngine, "fit", lambda self, items, ctx=None: (_ for _ in ()).throw(ValueError("too few images")))
    with pytest.raises(ValueError):
        train_run(synth_project, "c2_meandiff", {}, device="cpu")
    (run,) = synth_project.runs()
    assert run.status == "failed" and "too few images" in run.metrics["error"]


def test_no_training_items_is_a_clear_error(tmp_project, tiny, tmp_path):
    items = [it for it in make_images(tmp_path / "d") if it.split == "test"]
    tmp_project.add_items(items)
    with pytest.raises(RunError, match="no normal training items"):
        train_run(tmp_project, "c2_meandiff", {}, device="cpu")
    assert tmp_project.runs() == []


def test_val_split_filter_and_relabelled_threshold(synth_project):
    ids = [it.id for it in synth_project.items(split="train")]
    train, val = split_train_val(synth_project, MeanDiffEngine, train_filter=ids[:3])
    assert len(train) == 2 and len(val) == 1  # even 3 items spare one for the threshold (issue 12)
    train, val = split_train_val(synth_project, MeanDiffEngine, train_filter=ids[:1])
    assert len(train) == 1 and val == []  # a single item: nothing to hold out
    # a project split 'val' with an anomaly: best-F1 threshold, min area respected
    bad = [it.id for it in synth_project.items(split="test") if it.is_anomalous]
    good = [it.id for it in synth_project.items(split="test") if not it.is_anomalous]
    synth_project.set_split(bad[:2] + good[:2], "val")
    run_id = train_run(synth_project, "c2_meandiff", {}, device="cpu")
    run = synth_project.run(run_id)
    assert run_split(synth_project, run_id)["val"] == sorted(bad[:2] + good[:2])
    assert "F1" in run.metrics["threshold_method"]
    assert run.metrics["n_test"] == 4
    run2 = finalize_run(synth_project, run_id, min_area=500.0)
    assert run2.min_area == 500.0 and run2.threshold <= run.threshold
    rename_run(synth_project, run_id, "  best  ")
    assert synth_project.run(run_id).title == "best"


def test_analyst_verdicts_give_their_own_confusion(synth_project):
    test_items = synth_project.items(split="test")
    for it in test_items:
        synth_project.set_verdict(it.id, "anomalous")
    run_id = train_run(synth_project, "c2_meandiff", {}, device="cpu")
    conf = synth_project.run(run_id).metrics["confusion_vs_analyst"]
    assert conf["fp"] == 0 and conf["tn"] == 0 and conf["tp"] + conf["fn"] == len(test_items)


def test_threshold_from_values_rules():
    t, how = threshold_from_values(np.array([0.1, 0.2, 0.9, 0.8]), np.array([0, 0, 1, 1]))
    assert 0.2 < t <= 0.8 and "F1" in how
    t, how = threshold_from_values(np.array([0.1, 0.3, np.nan]), np.array([0, 0, 0]))
    assert t > 0.3 and t == pytest.approx(0.3)


def test_pixel_metrics_against_sklearn_and_perfect_maps():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    masks = [np.zeros((16, 16), bool) for _ in range(3)]
    masks[1][4:8, 4:8] = True
    masks[2][10:14, 2:5] = True
    maps = [rng.random((16, 16)).astype(np.float32) + 0.5 * mk for mk in masks]
    ref = roc_auc_score(np.concatenate([m.ravel() for m in masks]), np.concatenate([m.ravel() for m in maps]))
    assert pixel_auroc(maps, masks) == pytest.approx(ref)
    perfect = [mk.astype(np.float32) for mk in masks]
    assert aupro(perfect, masks) == pytest.approx(1.0)
    assert 0.0 < aupro(maps, masks) < 1.0
    assert aupro([np.zeros((4, 4))], [np.zeros((4, 4), bool)]) is None


def test_score_run_stores_boxes_and_embeddings(synth_project, monkeypatch):
    from anomaly_gui.core.formats.base import Annotation
    from anomaly_gui.pipeline import load_embeddings
    from anomaly_gui.engines.base import ScoreResult

    run_id = train_run(synth_project, "c2_meandiff", {}, device="cpu", score=False)
    assert synth_project.run(run_id).status == "done"

    def score(self, items, ctx=None):
        return [ScoreResult(score=float(k), boxes=[Annotation("box", "defect", {"x1": 1, "y1": 2, "x2": 5, "y2": 6}, 0.9)],
                            embedding=np.full(4, k, np.float32)) for k, _ in enumerate(items)]

    monkeypatch.setattr(MeanDiffEngine, "score", score)
    items = synth_project.items(split="test")
    for _ in range(2):  # re-scoring replaces the model's boxes
        assert score_run(synth_project, run_id, items, batch_size=3) == len(items)
    anns = synth_project.annotations(items[0].id, source="model", run_id=run_id)
    assert len(anns) == 1 and anns[0].label == "defect"
    ids, emb = load_embeddings(synth_project, run_id)
    assert list(ids) == sorted(it.id for it in items) and emb.shape == (len(items), 4)


@pytest.mark.slow
def test_mvtec_screw_subset(tmp_path, tiny, shared_data):
    from anomaly_gui.core.importer import import_into_project

    root = shared_data / "mvtec_screw"
    if not root.is_dir():
        pytest.skip(f"real dataset mvtec_screw not found at {root}")
    with open_project(tmp_path / "screw.agproj") as proj:
        import_into_project(proj, root)
        train = proj.items(split="train")
        keep = {it.id for it in train[:10]}
        proj.remove_items([it.id for it in train if it.id not in keep])
        run_id = train_run(proj, "c2_meandiff", {"size": 64, "epochs": 1}, device="cpu")
        run = proj.run(run_id)
        assert run.status == "done" and run.metrics["n_test"] == 20
        assert run.metrics["image_auroc"] is not None and run.threshold is not None


def test_items_not_learnt_from_are_scored_and_measured(synth_project):
    """An anomaly in the train split is never trained on, but it is scored and counted as a test item."""
    bad = next(it for it in synth_project.items(split="test") if it.is_anomalous)
    synth_project.set_split([bad.id], "train")
    run_id = train_run(synth_project, "c2_meandiff", {}, device="cpu")
    split = run_split(synth_project, run_id)
    assert bad.id not in split["train"] and bad.id not in split["val"]
    assert bad.id in synth_project.scores(run_id)
    assert synth_project.run(run_id).metrics["n_test"] == 8
