"""Per-fit choice of crop, colour and scorer by leave-one-species-out validation on the training species
(issue 14, novelty: never worse than the untrained backbone's own configurations; `selection.py`)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from anomaly_gui.core.formats.base import DatasetItem
from anomaly_gui.engines.base import Engine, get_engine
from anomaly_gui.engines.embedding.engine import AUTO_CANDIDATES
from anomaly_gui.engines.embedding.scoring import make_scorer
from anomaly_gui.engines.embedding.selection import Candidate, choose, choose_from_folds
from tests.conftest import shared_dataset

torch.set_num_threads(1)


def test_a_gain_within_the_fold_noise_keeps_the_simpler_candidate():
    simple = [0.70, 0.80, 0.60, 0.90, 0.65, 0.75]
    other = [0.80, 0.70, 0.75, 0.85, 0.80, 0.70]  # mean +0.025, but fold differences spread by 0.09
    pick, rec = choose_from_folds(["whole | knn", "crop | knn"], [simple, other])
    assert pick == 0 and rec["chosen"] == "whole | knn" and "fold noise" in rec["reason"]
    assert rec["candidates"]["crop | knn"]["folds"] == 6 and rec["candidates"]["crop | knn"]["auroc"] == pytest.approx(0.7667, abs=1e-4)


def test_a_steady_gain_beyond_the_noise_picks_the_better_candidate():
    simple = [0.70, 0.80, 0.60, 0.90, 0.65, 0.75]
    better = [v + 0.08 + 0.01 * (k % 2) for k, v in enumerate(simple)]
    assert choose_from_folds(["a", "b"], [simple, better])[0] == 1
    tiny = [v + 0.005 for v in simple]  # steady but below MIN_GAIN: never worth leaving the simpler option
    assert choose_from_folds(["a", "b"], [simple, tiny])[0] == 0
    assert choose_from_folds(["a", "b", "c"], [simple, tiny, better])[0] == 2


def test_no_validation_fold_falls_back_to_the_first_candidate():
    pick, rec = choose_from_folds(["a", "b"], [[], []])
    assert pick == 0 and "no validation fold" in rec["reason"]
    pick, _ = choose_from_folds(["a", "b"], [[np.nan, 0.6], [np.nan, 0.9]])  # NaN folds do not count
    assert pick == 1


def test_choose_on_embeddings_prefers_the_one_that_separates_species():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 16))
    labels = [f"s{s}" for s in range(5) for _ in range(4)]
    good = np.concatenate([centres[s] + 0.05 * rng.normal(size=(4, 16)) for s in range(5)])
    noise = rng.normal(size=good.shape)
    unit = lambda x: (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    cands = [Candidate("noise | knn", unit(noise), lambda: make_scorer("knn")),
             Candidate("species | knn", unit(good), lambda: make_scorer("knn"))]
    pick, rec = choose(cands, labels)
    assert pick == 1 and rec["candidates"]["species | knn"]["auroc"] > 0.95 > rec["candidates"]["noise | knn"]["auroc"]
    assert rec["candidates"]["noise | knn"]["folds"] == rec["candidates"]["species | knn"]["folds"] == 5


SPECIES = ("cheetah", "leopard", "lion-male", "zebra", "wildebeest", "buffalo")


@pytest.fixture(scope="module")
def serengeti_items() -> list[DatasetItem]:
    src = shared_dataset("serengeti_guide")
    return [DatasetItem(str(p), label=s) for s in SPECIES for p in sorted((src / s).glob("*.jpg"))]


def test_engine_defaults_choose_per_fit_record_every_candidate_and_round_trip(serengeti_items, tmp_path, mobilenet_weights):
    eng = get_engine("simclr_ocsvm")(device="cpu", image_size=64)
    assert (eng.params.scorer, eng.params.animal_crop, eng.params.colour) == ("auto", "auto", "auto")
    eng.fit(serengeti_items)
    sel = eng.stats["selection"]
    # the untrained baselines (whole photo, raw features, Euclidean 1-NN / scikit-learn OCSVM) and the
    # engine's own settings, each in RGB and grey
    names = {f"{c} {f} {col} | {sc}" for c, f, sc in AUTO_CANDIDATES for col in ("rgb", "gray")}
    assert len(names) == 12 and "whole raw rgb | knn" in names and "cam_day unit gray | mahalanobis" in names
    assert set(sel["candidates"]) == names
    assert {v["folds"] for v in sel["candidates"].values()} == {len(SPECIES)}  # the same folds for every candidate
    crop, feat, colour_scorer = sel["chosen"].split(" ", 2)
    assert (crop, feat, colour_scorer) == (eng.stats["animal_crop"], eng.stats["features"], f"{eng.stats['colour']} | {eng.stats['scorer']}")
    order = list(sel["candidates"])  # simplest first; the recorded fold figures give the same choice again
    folds = [[np.nan if v is None else v for v in sel["candidates"][n]["fold_aurocs"]] for n in order]
    assert order[:4] == ["cam_day animal rgb | knn", "cam_day animal gray | knn", "cam_day unit rgb | knn", "cam_day unit gray | knn"]
    assert choose_from_folds(order, folds)[1]["chosen"] == sel["chosen"]
    res = eng.score(serengeti_items[:5])
    assert all((r.crop_box is not None) == (crop == "cam_day" and bool(r.extra["crops"][0]["cam_box"])) for r in res)
    back = Engine.load(eng.save(tmp_path / "auto.agm"), device="cpu")
    assert (back.crop_mode, back.feature_mode, back.scorer_name) == (crop, feat, eng.stats["scorer"]) and back.stats["selection"] == sel
    np.testing.assert_allclose([r.score for r in back.score(serengeti_items[:5])], [r.score for r in res], rtol=1e-5, atol=1e-4)


def test_one_species_falls_back_to_the_fixed_defaults(serengeti_items, mobilenet_weights):
    cats = [it for it in serengeti_items if it.label == "leopard"]
    eng = get_engine("simclr_ocsvm")(device="cpu", image_size=64)
    eng.fit(cats)
    sel = eng.stats["selection"]
    assert "one species" in sel["reason"] and sel["chosen"] == "cam_day animal rgb | knn"
    assert (eng.stats["animal_crop"], eng.stats["features"], eng.stats["scorer"], eng.stats["colour"]) == ("cam_day", "animal", "knn", "rgb")


def test_asked_settings_are_not_validated_and_older_model_files_score_as_before(serengeti_items, tmp_path, mobilenet_weights):
    items = [it for it in serengeti_items if it.label in SPECIES[:3]]
    eng = get_engine("simclr_ocsvm")(device="cpu", image_size=64, scorer="knn", animal_crop="cam_day", colour="rgb")
    eng.fit(items)
    assert eng.stats["selection"]["reason"] == "asked" and eng.stats["scorer"] == "knn"
    before = [r.score for r in eng.score(items)]
    # a file written before `scorer` had its stats entry or `auto` existed: the scorer is read off its tensors
    old = get_engine("simclr_ocsvm")(device="cpu", image_size=64, animal_crop="cam_day", colour="rgb")
    old.stats = {k: v for k, v in eng.stats.items() if k not in ("scorer", "selection")}
    old.load_state_tensors(eng.state_tensors())
    assert old.scorer_name == "knn" and old.crop_mode == "cam_day" and old.locator is not None
    np.testing.assert_allclose([r.score for r in old.score(items)], before, rtol=1e-5)


def test_raw_scorers_rank_as_the_untrained_baselines_and_round_trip():
    """`features=raw` candidates are the issue's references: Euclidean 1-NN over all training photos and one
    scikit-learn OneClassSVM (defaults) per species; one shared scale keeps their ranking."""
    from sklearn.svm import OneClassSVM

    from anomaly_gui.engines.embedding.scoring import scorer_from_tensors

    rng = np.random.default_rng(1)
    emb = rng.random((9, 40)) * np.r_[np.ones(20), 3 * np.ones(20)]
    labels = ["a"] * 4 + ["b"] * 4 + ["c"]  # a species with one photo too
    query = rng.random((12, 40)) * 2
    knn = make_scorer("knn", raw=True).fit(emb, labels)
    nn = np.sqrt(((query[:, None] - emb[None]) ** 2).sum(2)).min(1)
    np.testing.assert_array_equal(np.argsort(knn.distances(query).min(1)), np.argsort(nn))
    svm = make_scorer("ocsvm", raw=True).fit(emb, labels)
    ref = np.max([OneClassSVM().fit(emb[[i for i, lab in enumerate(labels) if lab == s]]).decision_function(query)
                  for s in ("a", "b", "c")], 0)
    np.testing.assert_array_equal(np.argsort(svm.distances(query).min(1)), np.argsort(-ref))
    for name, sc in (("knn", knn), ("ocsvm", svm)):
        back = scorer_from_tensors(name, sc.to_tensors(), sc.species)
        np.testing.assert_allclose(back.distances(query), sc.distances(query), rtol=1e-6)
    cos = make_scorer("knn").fit(emb, labels)  # the engine's own k-NN differs: cosine, per-species scales
    assert not np.allclose(cos.distances(query), knn.distances(query))


def test_baseline_ocsvm_engine_threshold_keeps_training_photos_known(serengeti_items, tmp_path, mobilenet_weights):
    """The baseline one-class SVM (nu 0.5) leaves half its training photos outside its boundary: the engine's
    threshold is then their 95th percentile, so known animals are not flagged; the model file round-trips."""
    items = [it for it in serengeti_items if it.label in SPECIES[:4]]
    eng = get_engine("simclr_ocsvm")(device="cpu", image_size=64, features="raw", scorer="ocsvm", animal_crop="whole", colour="rgb")
    eng.fit(items)
    assert eng.stats["selection"]["reason"] == "asked" and (eng.stats["features"], eng.stats["scorer"]) == ("raw", "ocsvm")
    res = eng.score(items)
    flagged = [r.extra["is_anomaly"] for r in res]
    assert sum(flagged) <= 1 and eng.stats["threshold"] > 1.0  # at the SVM's boundary (1.0) many would be
    assert sum(r.score > 1.0 for r in res) >= 3
    back = Engine.load(eng.save(tmp_path / "raw.agm"), device="cpu")
    assert (back.feature_mode, back.scorer_name) == ("raw", "ocsvm")
    np.testing.assert_allclose([r.score for r in back.score(items)], [r.score for r in res], rtol=1e-5, atol=1e-4)
