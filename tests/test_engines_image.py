"""Image engines: building blocks against references, training on real MVTec data, persistence, bad input."""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from anomaly_gui.core.errors import DataError, ModelFileError, WeightsUnavailableError
from anomaly_gui.core.formats.base import DatasetItem, import_dataset
from anomaly_gui.core.metrics import auroc
from anomaly_gui.engines import backbones
from anomaly_gui.engines.base import Cancelled, Engine, RunContext, get_engine, list_engines
from anomaly_gui.engines.patchcore.model import greedy_coreset, knn, nearest
from tests.conftest import shared_dataset

torch.set_num_threads(2)


pytestmark = pytest.mark.usefixtures("offline_mobilenet")


# -- building blocks ---------------------------------------------------------------------------------------
def test_greedy_coreset_matches_a_numpy_reference():
    x = torch.randn(300, 8, generator=torch.Generator().manual_seed(0))
    got = greedy_coreset(x, 20, None, seed=0).numpy()
    xs = x.numpy().astype(np.float64)
    start = int(got[0])
    ref = [start]
    mind = ((xs - xs[start]) ** 2).sum(1)
    for _ in range(19):
        nxt = int(np.argmax(mind))
        ref.append(nxt)
        mind = np.minimum(mind, ((xs - xs[nxt]) ** 2).sum(1))
    assert list(got) == ref
    assert len(set(got)) == 20
    assert torch.equal(greedy_coreset(x, 500), torch.arange(300))


def test_nearest_and_knn_match_brute_force_with_small_chunks():
    g = torch.Generator().manual_seed(1)
    q, bank = torch.randn(257, 16, generator=g), torch.randn(1000, 16, generator=g)
    full = torch.cdist(q.double(), bank.double())
    d, i = nearest(q, bank, block_elements=5000)  # forces many query and bank chunks
    assert torch.equal(i, full.argmin(1))
    assert torch.allclose(d.double(), full.min(1).values, atol=1e-4)
    idx = knn(q[:3], bank, 5)
    assert torch.equal(idx, full[:3].topk(5, largest=False).indices)


def test_own_ssim_agrees_with_pytorch_msssim():
    from pytorch_msssim import ssim

    from anomaly_gui.engines.autoencoder.model import reconstruction_loss, residual_map, ssim_map

    g = torch.Generator().manual_seed(2)
    x = torch.rand(2, 3, 48, 48, generator=g)
    y = (x + 0.1 * torch.randn(2, 3, 48, 48, generator=g)).clamp(0, 1)
    ref = float(ssim(x, y, data_range=1.0, size_average=True))
    assert float(ssim_map(x, y, padding="valid").mean()) == pytest.approx(ref, abs=1e-5)
    assert float(ssim_map(x, x, padding="same").min()) == pytest.approx(1.0, abs=1e-5)
    assert residual_map(x, y, "ssim").shape == (2, 48, 48)
    assert float(reconstruction_loss(x, y, "ssim")) == pytest.approx(1 - ref, abs=1e-5)
    big = torch.rand(1, 1, 64, 64, generator=g)
    assert 0 <= float(reconstruction_loss(big, big * 0.9, "ms-ssim")) < 0.2


def test_compact_cae_keeps_the_patch_size():
    from anomaly_gui.engines.autoencoder.model import CompactCAE

    for side in (64, 128):
        assert CompactCAE(1, side, 16, 8)(torch.rand(2, 1, side, side)).shape == (2, 1, side, side)
    with pytest.raises(ValueError, match="multiple of 16"):
        CompactCAE(1, 70)


def test_backbone_search_order_and_offline_error(tmp_path, monkeypatch, mobilenet_weights):
    monkeypatch.delenv("ANOMALY_GUI_WEIGHTS")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(backbones, "_dev_shared_weights", lambda: tmp_path / "nothing")
    with pytest.raises(WeightsUnavailableError, match="mobilenet_v2-b0353104.pth"):
        backbones.load_backbone("mobilenet_v2")
    assert backbones.find_weights("mobilenet_v2", mobilenet_weights) == mobilenet_weights
    monkeypatch.setenv("ANOMALY_GUI_WEIGHTS", str(mobilenet_weights.parent))
    assert backbones.find_weights("mobilenet_v2") == mobilenet_weights
    assert backbones.find_weights("resnet18") is None
    # a pickled object is refused (weights_only), with the file named
    bad = tmp_path / "mobilenet_v2-bad.pth"
    bad.write_bytes(pickle.dumps({"x": object()}))
    with pytest.raises(WeightsUnavailableError, match="mobilenet_v2-bad.pth"):
        backbones.load_backbone("mobilenet_v2", weights=bad)


def test_feature_extractor_layers():
    fe = backbones.FeatureExtractor("mobilenet_v2")
    out = fe(torch.rand(1, 1, 64, 64))  # gray input is accepted
    assert {k: tuple(v.shape[1:]) for k, v in out.items()} == {"features.6": (32, 8, 8), "features.13": (96, 4, 4)}
    with pytest.raises(ValueError, match="no layer"):
        backbones.FeatureExtractor("mobilenet_v2", ["features.99"])


def test_engines_are_registered_with_a_form():
    names = {e.name for e in list_engines("image")}
    assert {"patchcore", "selfsimilarity", "autoencoder"} <= names
    for n in ("patchcore", "selfsimilarity", "autoencoder"):
        import dataclasses

        for f in dataclasses.fields(get_engine(n).Params):
            assert f.metadata.get("help"), f"{n}.{f.name} has no help text"


# -- real data ------------------------------------------------------------------------------------------
SMALL_SIDE = 256  # real images are 1024 px; decoding them dominates CPU test time, so tests use copies


def small_mvtec(name: str, out: Path, side: int = SMALL_SIDE, n_train: int | None = None) -> Path:
    """A copy of a shared MVTec-layout dataset with every image and mask resized to `side` (cached in `out`)."""
    from PIL import Image

    src = shared_dataset(name)
    dst = out / f"{name}_{side}"
    if dst.is_dir():
        return dst
    for f in sorted(src.rglob("*.png")):
        rel = f.relative_to(src)
        if n_train is not None and rel.parts[0] == "train" and int(f.stem) >= n_train:
            continue
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(f) as im:
            resample = Image.NEAREST if "ground_truth" in rel.parts else Image.BILINEAR
            im.resize((side, side), resample).save(target)
    return dst


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("small_mvtec")


def _split(name: str, root: Path) -> tuple[list[DatasetItem], list[DatasetItem]]:
    items = import_dataset(small_mvtec(name, root)).items
    return [i for i in items if i.split == "train"], [i for i in items if i.split == "test"]


# settings small enough for CI on 2 CPU cores; floors measured on these data with these settings
CASES = {
    "patchcore": ("mvtec_leather", dict(image_size=128, coreset_ratio=0.1, batch_size=8), 0.85),  # measured 0.91
    "selfsimilarity": ("mvtec_leather", dict(image_size=128, n_words=32), 0.95),
    "autoencoder": ("mvtec_leather", dict(image_size=128, patch_size=64, epochs=4, batch_size=8, width=16), 0.8),
}


@pytest.fixture(scope="module")
def trained(request) -> dict:
    return {}


def _fit(name: str, cache: dict, root: Path):
    if name not in cache:
        ds, params, floor = CASES[name]
        train, test = _split(ds, root)
        eng = get_engine(name)(device="cpu", **params)
        logs, progress = [], []
        eng.fit(train, RunContext(progress=lambda d, t, m: progress.append((d, t)), log=logs.append))
        results = eng.score(test)
        cache[name] = (eng, test, results, logs, progress, floor)
    return cache[name]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_engine_beats_chance_and_round_trips_exactly(name, trained, small_data, tmp_path):
    eng, test, results, logs, progress, floor = _fit(name, trained, small_data)
    labels = [int(i.is_anomalous) for i in test]
    value = auroc(labels, [r.score for r in results])
    assert value is not None and value >= floor, f"{name}: AUROC {value} below {floor}"
    assert logs and "epoch" in logs[-1] and progress
    r0 = results[0]
    assert r0.map.dtype == np.float32 and r0.map.shape == (128, 128)
    assert r0.image_size == (SMALL_SIDE, SMALL_SIDE)
    # save / load: the same scores and maps, bit for bit
    path = eng.save(tmp_path / f"{name}.agm")
    loaded = Engine.load(path, device="cpu")
    assert type(loaded) is type(eng) and loaded.params == eng.params and loaded.stats == json.loads(json.dumps(eng.stats))
    again = eng.score(test[:4])
    back = loaded.score(test[:4])
    for a, b in zip(again, back):
        assert a.score == b.score
        np.testing.assert_array_equal(a.map, b.map)


@pytest.mark.slow
def test_other_sizes_corrupt_images_and_cancel(trained, small_data, tmp_path):
    from PIL import Image

    eng, test, *_ = _fit("selfsimilarity", trained, small_data)
    small = tmp_path / "small.png"
    Image.open(test[0].path).convert("L").resize((300, 200)).save(small)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    res = eng.score([str(small), str(broken), test[1].path])
    assert res[0].map.shape == (128, 128) and res[0].image_size == (300, 200)
    assert res[1].score is None and "broken.png" in res[1].error
    assert res[2].score is not None
    fresh = get_engine("selfsimilarity")(device="cpu", image_size=64)
    with pytest.raises(DataError, match="broken.png"):
        fresh.fit([str(broken)])
    with pytest.raises(ValueError, match="at least 1"):
        fresh.fit([])
    with pytest.raises(Cancelled):
        fresh.fit([test[0].path], RunContext(is_cancelled=lambda: True))
    with pytest.raises(RuntimeError, match="train"):
        fresh.score([test[0].path])


def test_corrupt_or_foreign_model_files_are_refused(tmp_path):
    from safetensors.torch import save_file

    garbage = tmp_path / "garbage.agm"
    garbage.write_bytes(b"\x00" * 100)
    pickled = tmp_path / "pickled.agm"
    torch.save({"memory_bank": torch.zeros(2, 2)}, pickled)
    foreign = tmp_path / "foreign.agm"
    save_file({"w": torch.zeros(1)}, str(foreign))
    for p in (garbage, pickled, foreign, tmp_path / "missing.agm"):
        with pytest.raises(ModelFileError, match=p.name):
            Engine.load(p)
    # ours, but the tensors do not fit the engine
    from anomaly_gui.engines.modelfile import write_model_file

    wrong = write_model_file(tmp_path / "wrong.agm", {"x": torch.zeros(1)}, {"engine": "patchcore", "task": "image",
                                                                            "params": {}, "stats": {}})
    with pytest.raises(ModelFileError):
        Engine.load(wrong, device="cpu")


def test_cuda_out_of_memory_halves_the_batch_and_goes_on():
    eng = get_engine("patchcore")(device="cpu")
    eng.device = torch.device("cuda")  # only the back-off logic is exercised; nothing runs on a GPU

    def fn(x):
        if len(x) > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return x.sum()

    logs = []
    parts = eng.with_backoff(fn, torch.arange(8.0), RunContext(log=logs.append))
    assert [float(p) for p in parts] == [1.0, 5.0, 9.0, 13.0]
    assert eng.batch_size() == 2 and "out of memory" in logs[0]["message"]
    eng.device = torch.device("cpu")
    with pytest.raises(torch.cuda.OutOfMemoryError):  # on the CPU it is not swallowed
        eng.with_backoff(fn, torch.arange(8.0), RunContext())
