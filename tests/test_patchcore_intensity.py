"""PatchCore's `intensity` option (decision 0035): each image's grey levels stretched before the features, so a
dimmer or brighter exposure of the same thing scores like it; kept by model files, in the exported model, and
absent from files fitted before it."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from anomaly_gui.engines.patchcore import PatchCoreEngine
from anomaly_gui.engines.patchcore.model import stretch_intensity
from tests.conftest import shared_dataset

torch.set_num_threads(1)


pytestmark = pytest.mark.usefixtures("offline_mobilenet")


def test_stretch_maps_the_grey_quantiles_to_black_and_white_whatever_the_exposure():
    g = torch.Generator().manual_seed(0)
    x = 0.2 + 0.5 * torch.rand(2, 3, 40, 30, generator=g)
    y = stretch_intensity(x)
    for i in range(2):
        q = torch.quantile(x[i].mean(0).flatten(), torch.tensor([0.01, 0.99]))
        ref = ((x[i] - q[0]) / (q[1] - q[0])).clamp(0, 1)
        assert torch.allclose(y[i], ref, atol=1e-6)
    assert float(y.mean(1).flatten(1).quantile(0.5, dim=1).min()) > 0.3  # not crushed
    dim = stretch_intensity(0.6 * x + 0.05)  # another exposure of the same images
    assert torch.allclose(dim, y, atol=1e-5)


def _images(tmp_path):
    files = sorted((shared_dataset("mvtec_leather") / "train" / "good").iterdir())
    img = cv2.resize(cv2.imread(str(files[3])), (96, 96), interpolation=cv2.INTER_AREA)
    same, dim = tmp_path / "same.png", tmp_path / "dim.png"
    cv2.imwrite(str(same), img)
    cv2.imwrite(str(dim), np.round(img.astype(np.float32) * 0.4).astype(np.uint8))  # a dimmer exposure
    return files[:3], str(same), str(dim)


def test_a_dimmer_exposure_scores_like_the_image_with_stretch_and_not_without(tmp_path):
    train, same, dim = _images(tmp_path)
    scores = {}
    for intensity in ("none", "stretch"):
        eng = PatchCoreEngine(device="cpu", image_size=96, intensity=intensity, runtime="torch")
        eng.fit(train)
        assert eng.stats["intensity"] == intensity and eng.model.embedder.intensity == intensity
        scores[intensity] = [r.score for r in eng.score([same, dim])]
    s_same, s_dim = scores["stretch"]
    assert s_dim == pytest.approx(s_same, rel=0.05), scores
    s_same, s_dim = scores["none"]
    assert s_dim > 1.2 * s_same, scores  # as recorded, the dimmer copy looks anomalous


def test_model_files_keep_their_intensity_and_older_files_score_as_recorded(tmp_path):
    from anomaly_gui.engines.base import Engine

    train, same, dim = _images(tmp_path)
    eng = PatchCoreEngine(device="cpu", image_size=64, intensity="stretch", runtime="torch")
    eng.fit(train)
    eng.save(tmp_path / "stretch.agmodel")
    again = Engine.load(tmp_path / "stretch.agmodel", device="cpu")
    assert again.params.intensity == "stretch" and again.model.embedder.intensity == "stretch"
    assert np.allclose(again.score([dim])[0].map, eng.score([dim])[0].map, atol=1e-5)

    plain = PatchCoreEngine(device="cpu", image_size=64, intensity="none", runtime="torch")
    plain.fit(train)
    expected = plain.score([same, dim])
    plain.stats.pop("intensity")  # what a file fitted before the option lacks
    plain.params.intensity = "stretch"  # whatever today's default is, the file's images were not stretched
    plain.save(tmp_path / "old.agmodel")
    old = Engine.load(tmp_path / "old.agmodel", device="cpu")
    assert old.params.intensity == "none" and old.model.embedder.intensity == "none"
    got = old.score([same, dim])
    assert [r.score for r in got] == pytest.approx([r.score for r in expected], rel=1e-5)


def test_exported_model_and_onnx_runtime_stretch_like_torch(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from anomaly_gui.engines.deploy import ExportedScorer, export_model
    from anomaly_gui.engines.image_data import load_all

    train, same, dim = _images(tmp_path)
    eng = PatchCoreEngine(device="cpu", image_size=64, intensity="stretch", runtime="torch")
    eng.fit(train)
    x = load_all([same, dim, str(train[0])], 64, 3).float() / 255.0
    s_ref, m_ref = eng.score_tensor(x)
    eng.model.runtime = "onnxruntime"  # the embedding (stretch included) in ONNX Runtime, as on a CPU by default
    s_ort, _ = eng.score_tensor(x)
    assert torch.allclose(s_ort, s_ref, rtol=1e-4, atol=1e-4)
    written = export_model(eng, tmp_path / "deploy" / "pc", "onnx")
    s_exp, m_exp = ExportedScorer(str(written)).score_tensor(x)
    assert torch.allclose(s_exp, s_ref, rtol=1e-4, atol=1e-4) and (m_exp - m_ref).abs().max() < 1e-3
    assert s_ref.std() > 0.01  # the comparison means something: the training image scores lower
