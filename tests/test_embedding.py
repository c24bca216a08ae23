"""Embedding engines: losses against hand-computed values, one-class SVMs rebuilt from tensors exactly as
scikit-learn computes them, unknown species flagged, small CPU training on real camera-trap photos."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from anomaly_gui.core.formats.base import DatasetItem, import_dataset
from anomaly_gui.engines.base import Engine, Task, get_engine, list_engines
from anomaly_gui.engines.embedding.network import augment, nt_xent_loss, other_index, triplet_loss
from anomaly_gui.engines.embedding.oneclass import fit_oneclass, models_from_tensors, models_to_tensors
from tests.conftest import shared_dataset

torch.set_num_threads(2)


def test_nt_xent_matches_hand_computation():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # each anchor: positive similarity 1, two negatives with similarity 0 (temperature 1)
    want = math.log(1 + 2 / math.e)
    assert nt_xent_loss(z, z.clone(), temperature=1.0).item() == pytest.approx(want, rel=1e-6)
    # temperature 0.5 doubles the logits
    assert nt_xent_loss(z, z.clone(), temperature=0.5).item() == pytest.approx(math.log(1 + 2 / math.e ** 2), rel=1e-6)
    # scale invariance (cosine similarity) and a generic case against an explicit loop
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    assert nt_xent_loss(3 * z1, z2, 0.3).item() == pytest.approx(nt_xent_loss(z1, z2, 0.3).item(), rel=1e-5)
    zz = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1).numpy().astype(np.float64)
    total = 0.0
    for i in range(8):
        pos = (i + 4) % 8
        logits = np.array([zz[i] @ zz[j] / 0.3 for j in range(8) if j != i])
        total += -(zz[i] @ zz[pos] / 0.3) + np.log(np.exp(logits).sum())
    assert nt_xent_loss(z1, z2, 0.3).item() == pytest.approx(total / 8, rel=1e-5)


def test_triplet_matches_hand_computation():
    a = torch.tensor([[1.0, 0.0], [2.0, 0.0]])
    p = torch.tensor([[0.6, 0.8], [1.0, 0.0]])
    n = torch.tensor([[0.0, 1.0], [0.0, 5.0]])
    # row 1: |a-p| = sqrt(0.8), |a-n| = sqrt(2) -> sqrt(0.8) - sqrt(2) + 1; row 2: 0 - sqrt(2) + 1 < 0 -> 0
    want = (math.sqrt(0.8) - math.sqrt(2) + 1.0) / 2
    assert triplet_loss(a, p, n, margin=1.0).item() == pytest.approx(want, rel=1e-6)
    assert triplet_loss(a, p, n, margin=0.2).item() == 0.0


def test_negatives_are_other_images_of_other_species():
    labels = torch.tensor([0, 0, 1, 1, 2])
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        neg = other_index(labels, 5, g)
        assert all(labels[neg[i]] != labels[i] for i in range(5))
        plain = other_index(None, 5, g)
        assert all(int(plain[i]) != i for i in range(5))


def test_augment_keeps_range_and_changes_views():
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    v1, v2 = augment(x, g), augment(x, g)
    assert v1.shape == x.shape and float(v1.min()) >= 0 and float(v1.max()) <= 1
    assert float((v1 - v2).abs().mean()) > 0.01


def test_oneclass_svm_from_tensors_equals_sklearn():
    from sklearn.svm import OneClassSVM

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6))
    q = rng.normal(size=(25, 6)) * 1.5
    ref = OneClassSVM(kernel="rbf", nu=0.2, gamma=0.15).fit(x)
    m = fit_oneclass(x, nu=0.2, gamma=0.15)
    np.testing.assert_allclose(m.decision(q), ref.decision_function(q), rtol=1e-7, atol=1e-9)
    tensors, names = models_to_tensors({"fox": m, "deer": fit_oneclass(x + 3, nu=0.2, gamma=0.15)})
    back = models_from_tensors({k: torch.from_numpy(v) for k, v in tensors.items()}, names)
    np.testing.assert_allclose(back["fox"].decision(q), ref.decision_function(q), rtol=1e-7, atol=1e-9)
    single = fit_oneclass(x[:1], gamma=0.15)
    assert single.decision(x[:1])[0] == pytest.approx(0.5) and single.decision(x[:1] + 10)[0] < 0


def test_engines_registered_for_embedding_task():
    names = {e.name for e in list_engines(Task.EMBEDDING)}
    assert {"simclr_ocsvm", "triplet_ocsvm"} <= names
    assert get_engine("triplet_ocsvm")().params.loss == "triplet"
    with pytest.raises(ValueError, match="unknown loss"):
        get_engine("simclr_ocsvm")(loss="hinge", device="cpu")
    with pytest.raises(ValueError, match="unknown scorer"):
        get_engine("simclr_ocsvm")(scorer="lof", device="cpu")
    defaults = get_engine("simclr_ocsvm")(device="cpu").params
    assert (defaults.scorer, defaults.encoder, defaults.pretrained, defaults.animal_crop) == ("auto", "auto", True, "auto")
    from anomaly_gui.core.errors import WeightsUnavailableError

    eng = get_engine("simclr_ocsvm")(device="cpu", weights_path="/nowhere/mobilenet_v2.pth", epochs=0)
    with pytest.raises(WeightsUnavailableError, match="/nowhere/mobilenet_v2.pth"):
        eng.fit([DatasetItem("/nowhere/a.png", label="fox")])


@pytest.fixture(scope="module")
def camtrap_items() -> list[DatasetItem]:
    return import_dataset(shared_dataset("camera_traps")).items


KNOWN = ("jaguar", "cougar", "deer", "wolf")


@pytest.fixture(scope="module")
def fitted(camtrap_items, tmp_path_factory):
    train = [it for it in camtrap_items if it.label in KNOWN]
    eng = get_engine("triplet_ocsvm")(device="cpu", image_size=64, epochs=3, batch_size=8, trainable_blocks=2, lr=1e-3,
                                      encoder="finetuned", scorer="ocsvm", flip_average=False)
    eng.fit(train)
    return eng, train


def test_training_on_real_photos_losses_finite_and_decreasing(fitted):
    eng, train = fitted
    losses = eng.stats["losses"]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]
    assert eng.stats["species"] == sorted(KNOWN)
    assert eng.stats["n_crops"] == len(train)
    assert eng.stats["encoder"] == "finetuned" and eng.stats["scorer"] == "ocsvm"


def test_unknown_species_flagged_and_model_round_trip(fitted, camtrap_items, tmp_path):
    eng, train = fitted
    others = [it for it in camtrap_items if it.label not in KNOWN]
    res = eng.score(train[:3] + others[:3])
    for r in res[:3]:
        assert r.score is not None and not r.extra["unknown_species"] and r.embedding is not None
    for r, it in zip(res[3:], others[:3]):
        assert r.extra["unknown_species"] and r.extra["is_anomaly"], it.label
        assert r.extra["nearest_species"] in KNOWN
    # labelled jaguars were cropped from their MegaDetector boxes
    jag = next(r for r, it in zip(res, train[:3] + others[:3]) if it.label == "jaguar")
    assert jag.crop_box is not None
    path = eng.save(tmp_path / "wild.agm")
    back = Engine.load(path, device="cpu")
    res2 = back.score(train[:3] + others[:3])
    np.testing.assert_allclose([r.score for r in res2], [r.score for r in res], rtol=1e-5, atol=1e-6)
    # the rebuilt one-class models give sklearn's decision values on the training embeddings
    from sklearn.svm import OneClassSVM

    rows = [i for i, it in enumerate(train) if it.label == "jaguar"]
    emb = np.stack([r.embedding for r in back.score([train[i] for i in rows])])
    # the scorer chosen for these features fixes nu (raw features: the untrained baseline's 0.5) and each model its gamma
    ref = OneClassSVM(kernel="rbf", nu=eng.scorer.nu, gamma=back.models["jaguar"].gamma).fit(emb)
    np.testing.assert_allclose(back.models["jaguar"].decision(emb), ref.decision_function(emb), rtol=1e-4, atol=1e-5)


def test_evaluate_novelty_auroc_on_real_photos(tmp_path):
    from anomaly_gui.evaluation import get_evaluator

    root = shared_dataset("camera_traps")
    res = get_evaluator(Task.EMBEDDING)(dataset=root, engine="simclr_ocsvm", test=None, device="cpu",
                                        params={"epochs": 0, "image_size": 64}, save_model=tmp_path / "m.agm")
    json.dumps(res)  # the CLI prints it as one JSON object
    assert 0.0 <= res["novelty_auroc"] <= 1.0
    assert res["n_train"] + res["n_test"] == 21 and res["n_novel"] >= 5
    assert set(res["known_species"]) == set(KNOWN) and "owl" in res["novel_species"]
    for key in ("fit_seconds", "items_per_second", "engine", "device"):
        assert key in res
    # the setting chosen per fit, and every candidate's validation figure, are in the CLI's JSON
    assert res["selection"]["chosen"] == f"{res['animal_crop']} {res['features']} {res['colour']} | {res['scorer']}"
    assert len(res["selection"]["candidates"]) == 12  # 6 (crop, features, scorer) candidates x RGB / grey
    assert Engine.load(tmp_path / "m.agm", device="cpu").params.use_labels


def test_evaluate_cli_bad_dataset_exits_2(tmp_path):
    bad = subprocess.run([sys.executable, "-m", "anomaly_gui", "evaluate", str(tmp_path / "nope"), "--engine", "simclr_ocsvm",
                          "--json"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "nope" in bad.stderr and bad.stdout.strip() == ""


def test_labels_csv_and_species_folders(tmp_path):
    from PIL import Image

    from anomaly_gui.core.errors import DataError
    from anomaly_gui.evaluation.embedding import load_species_items, split_known_novel

    for sp, n in (("fox", 3), ("deer", 2), ("owl", 1)):
        (tmp_path / "set" / sp).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((8, 8, 3), i * 40, np.uint8)).save(tmp_path / "set" / sp / f"{i}.png")
    items = load_species_items(tmp_path / "set")
    assert sorted(it.label for it in items) == ["deer", "deer", "fox", "fox", "fox", "owl"]
    train, test, novel = split_known_novel(items)
    assert {it.label for it in train} == {"fox", "deer"} and sum(novel) == 1
    no_rare = [it for it in items if it.label != "owl"]  # every species has 2+ images: the rarest is novel
    train, test, novel = split_known_novel(no_rare)
    assert {it.label for it in train} == {"fox"} and [it.label for it, f in zip(test, novel) if f] == ["deer", "deer"]
    csv = tmp_path / "labels.csv"
    csv.write_text("file,species\nset/fox/0.png,Fox\nset/owl/0.png,owl\n")
    assert [it.label for it in load_species_items(csv)] == ["fox", "owl"]
    (tmp_path / "bad.csv").write_text("file,species\nset/fox/missing.png,fox\n")
    with pytest.raises(DataError, match="bad.csv"):
        load_species_items(tmp_path / "bad.csv")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="bad.json"):
        load_species_items(tmp_path / "bad.json")
