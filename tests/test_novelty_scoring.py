"""Novelty scorers (k-NN, Mahalanobis, one-class SVM) against brute-force values, calibrated per-species
scales, pseudo-novelty validation, the fine-tuning gate, and species names that agree across readers."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from anomaly_gui.core.formats.base import DatasetItem, import_dataset
from anomaly_gui.core.formats.camtrap import species_key
from anomaly_gui.engines.base import Engine, get_engine
from anomaly_gui.engines.embedding.scoring import KNNScorer, MahalanobisScorer, make_scorer, scorer_from_tensors
from anomaly_gui.engines.embedding.validation import finetune_split, pseudo_novelty_auroc, split_auroc
from tests.conftest import shared_dataset

torch.set_num_threads(1)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clusters(n_species: int = 4, per: int = 6, dim: int = 16, spread: float = 0.05, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_species, dim))
    emb = np.concatenate([centres[s] + spread * rng.normal(size=(per, dim)) for s in range(n_species)])
    return unit(emb), [f"s{s}" for s in range(n_species) for _ in range(per)]


def test_knn_distance_and_scale_match_brute_force():
    emb, labels = clusters()
    sc = KNNScorer(k=2).fit(emb, labels)
    q = unit(np.random.default_rng(1).normal(size=(5, 16)))
    bank = emb[[i for i, lab in enumerate(labels) if lab == "s1"]]
    d = 1 - q @ bank.T
    want = np.sort(d, 1)[:, 1]  # 2nd nearest
    own = 1 - bank @ bank.T
    np.fill_diagonal(own, np.inf)
    loo = np.sort(own, 1)[:, 1].mean()  # 2nd nearest of the others (leave-one-out)
    med = np.median(np.log(list(_raw_scales(emb, labels, 2).values())))
    scale = np.exp((5 * np.log(loo) + 2 * med) / (5 + 2))  # 6 photos -> 5 leave-one-out values, shrunk (log space, pseudo-count 2)
    assert sc.scales["s1"] == pytest.approx(scale, rel=1e-5)
    np.testing.assert_allclose(sc.distances(q)[:, 1], want / scale, rtol=1e-5)
    back = scorer_from_tensors("knn", {k: torch.from_numpy(np.asarray(v)) for k, v in sc.to_tensors().items()}, sc.species)
    np.testing.assert_allclose(back.distances(q), sc.distances(q), rtol=1e-6)


def _raw_scales(emb, labels, k):
    out = {}
    for s in sorted(set(labels)):
        b = emb[[i for i, lab in enumerate(labels) if lab == s]]
        d = 1 - b @ b.T
        np.fill_diagonal(d, np.inf)
        out[s] = np.sort(d, 1)[:, k - 1].mean()
    return out


def test_calibration_makes_species_of_different_spread_comparable():
    rng = np.random.default_rng(0)
    tight, loose = rng.normal(size=16), rng.normal(size=16)
    emb = unit(np.concatenate([tight + 0.02 * rng.normal(size=(20, 16)), loose + 0.6 * rng.normal(size=(20, 16))]))
    labels = ["tight"] * 20 + ["loose"] * 20
    for name in ("knn", "mahalanobis"):
        sc = make_scorer(name).fit(emb, labels)
        # new photos of each species: typical normalised distance about 1 for both, although raw spreads differ 30x
        new = unit(np.concatenate([tight + 0.02 * rng.normal(size=(30, 16)), loose + 0.6 * rng.normal(size=(30, 16))]))
        d = sc.distances(new)
        own_t, own_l = np.median(d[:30, sc.species.index("tight")]), np.median(d[30:, sc.species.index("loose")])
        raw_ratio = (own_t * sc.scales["tight"]) / (own_l * sc.scales["loose"])
        assert raw_ratio < 0.05  # uncalibrated, the tight species' typical distance is >20x smaller
        assert 0.25 < own_t / own_l < 4, (name, own_t, own_l)


def test_mahalanobis_round_trip_and_ranks_far_points_higher():
    emb, labels = clusters(spread=0.1)
    sc = MahalanobisScorer().fit(emb, labels)
    rng = np.random.default_rng(3)
    near = unit(emb[:6] + 0.01 * rng.normal(size=(6, 16)))
    far = unit(rng.normal(size=(6, 16)))
    assert sc.distances(near).min(1).max() < sc.distances(far).min(1).min()
    back = scorer_from_tensors("mahalanobis", sc.to_tensors(), sc.species)
    np.testing.assert_allclose(back.distances(far), sc.distances(far), rtol=1e-6)


def test_mahalanobis_one_species_counts_what_lies_outside_its_photos():
    """The easy case (cats only, then dogs): with one known species the PCA space is that species' own
    spread; a photo unlike all of them must not be projected onto it (before: birds scored as typical cats,
    novelty AUROC 0.08 on Serengeti cats vs birds, benchmarks/novelty_baselines.py)."""
    rng = np.random.default_rng(0)
    cat = rng.normal(size=64)
    spread = rng.normal(size=(4, 64))  # the cats vary along a few directions only
    cats = unit(cat + 0.3 * rng.normal(size=(14, 4)) @ spread / 8 + 0.01 * rng.normal(size=(14, 64)))
    new_cats = unit(cat + 0.3 * rng.normal(size=(7, 4)) @ spread / 8 + 0.01 * rng.normal(size=(7, 64)))
    birds = unit(rng.normal(size=(18, 64)))
    sc = MahalanobisScorer().fit(cats, ["cat"] * 14)
    assert sc.distances(new_cats).max() < sc.distances(birds).min()
    old = {k: v for k, v in sc.to_tensors().items() if k not in ("maha.basis", "maha.outside_var")}
    old["maha.means"] = (np.stack([sc.means["cat"]]) - sc.center) @ sc.proj  # a model file saved before
    legacy = scorer_from_tensors("mahalanobis", old, ["cat"])
    inside = np.linalg.norm((birds - sc.means["cat"]) @ sc.proj, axis=1) / sc.scales["cat"]
    np.testing.assert_allclose(legacy.distances(birds)[:, 0], inside, rtol=1e-6)


def test_pseudo_novelty_auroc_separates_clusters_and_not_noise():
    emb, labels = clusters(spread=0.05)
    assert pseudo_novelty_auroc(emb, labels, make_scorer) == pytest.approx(1.0)
    noise = unit(np.random.default_rng(0).normal(size=(24, 16)))
    assert pseudo_novelty_auroc(noise, labels, make_scorer) < 0.8
    assert pseudo_novelty_auroc(emb[:6], labels[:6], make_scorer) is None  # one species: nothing to hold out
    tune, normal, novel = finetune_split(labels)
    novel_species = {labels[i] for i in novel}
    assert novel_species and not novel_species & {labels[i] for i in tune + normal}
    assert not set(tune) & set(normal) and split_auroc(emb, labels, tune, normal, novel, make_scorer) == pytest.approx(1.0)


def test_species_key_and_camtrap_reader_casefold(tmp_path):
    from PIL import Image

    assert [species_key(s) for s in ("Cat", " cat ", "Red_Fox", "red  fox")] == ["cat", "cat", "red fox", "red fox"]
    for sp in ("Deer", "FOX"):
        (tmp_path / sp).mkdir()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / sp / "1.png")
    r = import_dataset(tmp_path)
    assert r.format == "camtrap" and sorted(it.label for it in r.items) == ["deer", "fox"]


def _photo_folders(root, layout):
    from PIL import Image

    rng = np.random.default_rng(0)
    for rel, colour, n in layout:
        (root / rel).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            px = np.clip(np.array(colour)[None, None] + rng.normal(0, 12, (40, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(px).save(root / rel / f"img{i}.png")


def test_cat_dog_folders_same_species_whichever_reader(tmp_path, mobilenet_weights):
    """train/Cat/ is read by the folder reader, test/{Cat,Dog}/ by the camera-trap reader: the species
    must still agree (before: 'Cat' vs 'cat', every test photo novel and novelty AUROC null)."""
    from anomaly_gui.core.formats.base import detect_format
    from anomaly_gui.evaluation import get_evaluator
    from anomaly_gui.engines.base import Task

    _photo_folders(tmp_path, [("train/Cat", (200, 120, 40), 6), ("test/Cat", (200, 120, 40), 3), ("test/Dog", (30, 60, 220), 3)])
    assert detect_format(tmp_path / "train").name == "folder" and detect_format(tmp_path / "test").name == "camtrap"
    res = get_evaluator(Task.EMBEDDING)(dataset=tmp_path / "train", engine="simclr_ocsvm", test=tmp_path / "test", device="cpu",
                                        params={"epochs": 0, "image_size": 32})
    assert res["known_species"] == ["cat"] and res["novel_species"] == ["dog"] and res["n_novel"] == 3
    assert res["novelty_auroc"] == pytest.approx(1.0)
    assert res["train_reader"] == "folder" and res["test_reader"] == "folder"  # the training side's reader fits both
    assert res["encoder"] == "pretrained"


SERENGETI_CATS = ("cheetah", "leopard", "lion-female", "serval")
SERENGETI_BIRDS = ("guinea-fowl", "ostrich", "secretary-bird")


def serengeti_cats_birds(root):
    """Real photos laid out as a user would: `train/Cat/`, `test/Cat/`, `test/Bird/` (symlinks); file names
    keep their own words (`leopard_1.jpg`, `guinea-fowl_1.jpg`), as photos sorted into folders do."""
    src = shared_dataset("serengeti_guide")
    for group, names in (("Cat", SERENGETI_CATS), ("Bird", SERENGETI_BIRDS)):
        for name in names:
            for photo in sorted((src / name).glob("*.jpg")):
                side = "train" if group == "Cat" and photo.stem != "3" else "test"
                (root / side / group).mkdir(parents=True, exist_ok=True)
                (root / side / group / f"{name}_{photo.name}").symlink_to(photo)
    return root / "train", root / "test"


def test_species_folders_win_over_file_name_words_in_every_reader(tmp_path):
    """`test/Cat/leopard_3.jpg` is a cat to the folder reader and to the camera-trap reader alike (before:
    the camera-trap reader took 'leopard' from the file name, and 'owl' from 'guinea-fowl')."""
    from anomaly_gui.evaluation.embedding import load_species_dataset

    train, test = serengeti_cats_birds(tmp_path)
    expected = {train: {"cat": 8}, test: {"cat": 4, "bird": 9}}
    for folder, counts in expected.items():
        for reader in ("folder", "camtrap"):
            labels = [species_key(it.label) for it in import_dataset(folder, reader).items]
            assert {s: labels.count(s) for s in set(labels)} == counts, (folder.name, reader)
    items, reader = load_species_dataset(train)
    test_items, test_reader = load_species_dataset(test, fmt=reader)
    assert test_reader == reader and sorted({it.label for it in test_items}) == ["bird", "cat"]
    assert import_dataset(shared_dataset("camera_traps")).items[0].label  # file-name species still read there


@pytest.mark.slow
def test_easy_case_cats_vs_birds_through_evaluate_for_every_crop_and_scorer(tmp_path, mobilenet_weights):
    """The easy case (issue 14's cats vs dogs, here Serengeti cats vs birds laid out as train/Cat, test/Cat,
    test/Bird): the animal crop must not hurt it, and no scorer may fail it (before: Mahalanobis projected the
    birds onto the cats' own PCA space and ranked them as typical cats)."""
    from anomaly_gui.evaluation import get_evaluator
    from anomaly_gui.engines.base import Task

    train, test = serengeti_cats_birds(tmp_path)
    run = get_evaluator(Task.EMBEDDING)
    got = {}
    for params in ({}, {"animal_crop": "whole"}, {"scorer": "mahalanobis"}, {"scorer": "ocsvm"}):
        res = run(dataset=train, engine="simclr_ocsvm", test=test, device="cpu", params={"image_size": 160, **params})
        assert (res["n_novel"], res["n_test"], res["known_species"]) == (9, 13, ["cat"])
        got[str(params)] = res["novelty_auroc"]
    assert min(got.values()) >= 0.95, got
    assert got["{}"] >= got[str({"animal_crop": "whole"})], got  # the default crop never below whole photos here


@pytest.fixture(scope="module")
def camtrap_items() -> list[DatasetItem]:
    return [it for it in import_dataset(shared_dataset("camera_traps")).items if it.label in ("jaguar", "cougar", "deer", "wolf")]


def test_auto_encoder_keeps_finetuning_only_when_validation_improves(camtrap_items):
    params = dict(device="cpu", image_size=64, epochs=2, batch_size=8, lr=1e-3, flip_average=False)
    auto = get_engine("simclr_ocsvm")(encoder="auto", **params)
    auto.fit(camtrap_items)
    check = auto.stats["finetune_check"]
    assert set(check) == {"pretrained", "finetuned", "pseudo_novel_species"} and check["pseudo_novel_species"]
    improved = check["finetuned"] > check["pretrained"] + 0.01
    kept = auto.stats["encoder"] == "finetuned"
    assert kept <= improved  # kept only when the held-out-species check improved
    if improved and not kept:  # the second guard: leave-one-species-out fell after tuning on all species
        assert auto.stats["finetuned_pseudo_novelty_auroc"] < auto.stats["pseudo_novelty_auroc"]
    plain = get_engine("simclr_ocsvm")(encoder="pretrained", **params)
    plain.fit(camtrap_items)
    assert plain.stats["encoder"] == "pretrained" and "finetune_check" not in plain.stats
    a, b = auto.score(camtrap_items[:4]), plain.score(camtrap_items[:4])
    same = np.allclose([r.embedding for r in a], [r.embedding for r in b], atol=1e-5)
    assert same == (not kept)  # a rejected fine-tuning leaves the pretrained encoder untouched


def test_knn_engine_flags_unknown_and_round_trips(camtrap_items, tmp_path):
    eng = get_engine("simclr_ocsvm")(device="cpu", image_size=64, epochs=0, scorer="knn")
    eng.fit(camtrap_items)
    assert eng.stats["scorer"] == "knn" and eng.stats["threshold"] > 0
    res = eng.score(camtrap_items)
    own = [r.score for r in res]
    assert np.median(own) < eng.stats["threshold"]  # training photos lie inside their species
    odd = [DatasetItem(camtrap_items[0].path, label="okapi")]
    r = eng.score(odd)[0]
    assert r.extra["unknown_species"] and r.extra["is_anomaly"]
    back = Engine.load(eng.save(tmp_path / "knn.agm"), device="cpu")
    # a training photo's distance to itself is ~0: float noise of the batch size, hence the absolute tolerance
    np.testing.assert_allclose([x.score for x in back.score(camtrap_items[:3])], own[:3], rtol=1e-5, atol=1e-4)


def test_species_validation_keeps_burst_sequences_whole():
    """Issue 12 (5): a burst of one camera-trap sequence never sits on both sides of the novelty checks."""
    from anomaly_gui.engines.embedding.validation import finetune_split, pseudo_novelty_auroc

    labels = ["deer"] * 6 + ["fox"] * 6 + ["wolf"] * 6
    groups = [f"seq:{lab}{i // 3}" for i, lab in enumerate(labels)]  # two sequences of three shots per species
    for seed in range(4):
        tune, normal, novel = finetune_split(labels, seed=seed, groups=groups)
        assert normal, "each known species keeps one whole sequence out"
        assert not {groups[i] for i in tune} & {groups[i] for i in normal}
        assert sorted(tune + normal + novel) == list(range(len(labels)))

    seen: list[tuple[set[str], set[str]]] = []

    class Recorder:
        def fit(self, emb, labs):
            self.fit_groups = {groups[int(r)] for r in emb[:, 0]}
            return self

        def distances(self, emb):
            seen.append((self.fit_groups, {groups[int(r)] for r in emb[:, 0]}))
            return np.zeros((len(emb), 1))

    emb = np.arange(len(labels), dtype=float)[:, None]
    pseudo_novelty_auroc(emb, labels, Recorder, groups=groups)
    assert seen and all(not fit & test for fit, test in seen)
