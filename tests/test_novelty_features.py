"""The novelty engine's feature kinds (`engines/embedding/features.py`, decision 0028): the `animal` features are
the ImageNet head's animal-class scores of the same weights file, and a model fitted on them saves, loads and
scores the same."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from anomaly_gui.core.crops import CropSpec, load_crop
from anomaly_gui.core.formats.base import DatasetItem
from anomaly_gui.engines.base import Engine, get_engine
from anomaly_gui.engines.embedding.features import embed_kinds
from anomaly_gui.engines.embedding.network import EmbeddingNet
from tests.conftest import shared_dataset

torch.set_num_threads(1)
SPECIES = ("cheetah", "zebra", "guinea-fowl")


@pytest.fixture(scope="module")
def photos() -> list[DatasetItem]:
    src = shared_dataset("serengeti_guide")
    return [DatasetItem(str(p), label=s) for s in SPECIES for p in sorted((src / s).glob("*.jpg"))]


def test_animal_features_are_the_imagenet_heads_animal_class_scores(photos, mobilenet_weights):
    from torchvision.models import mobilenet_v2

    net = EmbeddingNet()
    net.load_imagenet(mobilenet_weights)
    ref = mobilenet_v2(weights=None)
    ref.load_state_dict(torch.load(mobilenet_weights, weights_only=True))
    ref.eval()
    crops = np.stack([load_crop(CropSpec(it.path, None, it.label, i), size=96) for i, it in enumerate(photos[::3])])
    got = embed_kinds(net, crops, {"animal", "raw", "unit"}, "cpu", flip=False)
    x = (torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255.0 - net.mean) / net.std
    with torch.no_grad():
        logits = ref(x)[:, :398].double().numpy()  # torchvision's own classifier output, animal classes only
    want = logits - logits.mean(1, keepdims=True)
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    assert got["animal"].shape == (3, 398) and got["raw"].shape == (3, 1280)
    np.testing.assert_allclose(got["animal"], want, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(got["unit"], axis=1), 1.0, atol=1e-5)
    # the cheetah photo's strongest animal class is a big cat (ImageNet 286-293: cougar ... cheetah)
    assert 286 <= int(np.argmax(got["animal"][0])) <= 293
    flipped = embed_kinds(net, crops, {"animal"}, "cpu", flip=True)["animal"]
    assert not np.allclose(flipped, got["animal"]) and np.allclose(np.linalg.norm(flipped, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="unknown feature kind"):
        embed_kinds(net, crops, {"logits"}, "cpu")


def test_engine_on_animal_features_round_trips_and_older_files_keep_unit_features(photos, tmp_path, mobilenet_weights):
    eng = get_engine("simclr_ocsvm")(device="cpu", image_size=64, features="animal", scorer="knn", animal_crop="whole", colour="rgb")
    eng.fit(photos)
    assert eng.stats["selection"]["chosen"] == "whole animal rgb | knn" and eng.stats["features"] == "animal"
    res = eng.score(photos)
    assert len(res[0].embedding) == 398
    back = Engine.load(eng.save(tmp_path / "animal.agm"), device="cpu")
    assert back.feature_mode == "animal"
    np.testing.assert_allclose([r.score for r in back.score(photos)], [r.score for r in res], rtol=1e-5, atol=1e-5)
    # a file written before `features` was recorded: unit-length pooled features, as it was fitted
    unit = get_engine("simclr_ocsvm")(device="cpu", image_size=64, features="unit", scorer="knn", animal_crop="whole", colour="rgb")
    unit.fit(photos)
    old = get_engine("simclr_ocsvm")(device="cpu", image_size=64, animal_crop="whole", colour="rgb")
    old.stats = {k: v for k, v in unit.stats.items() if k not in ("features", "selection")}
    old.load_state_tensors(unit.state_tensors())
    assert old.feature_mode == "unit"
    np.testing.assert_allclose([r.score for r in old.score(photos)], [r.score for r in unit.score(photos)], rtol=1e-5)


def test_without_the_imagenet_head_the_animal_candidates_fall_back_to_pooled_features(photos):
    eng = get_engine("simclr_ocsvm")(device="cpu", image_size=64, pretrained=False, colour="rgb")
    eng.fit(photos)
    sel = eng.stats["selection"]
    assert eng.stats["features"] in ("unit", "raw") and not any(" animal " in n for n in sel["candidates"])
    assert "whole unit rgb | knn" in sel["candidates"] and eng.stats["animal_crop"] == "whole"
