"""`anomaly-gui export-model`: ONNX / OpenVINO files that score like the torch model; clear errors."""
from __future__ import annotations

import json

import pytest
import torch

from anomaly_gui.cli import main as cli_main
from anomaly_gui.core.formats.base import import_dataset
from anomaly_gui.engines.base import get_engine
from anomaly_gui.engines.image_data import load_all
from tests.conftest import shared_dataset

torch.set_num_threads(1)
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


pytestmark = pytest.mark.usefixtures("offline_mobilenet")


@pytest.fixture(scope="module")
def screw():
    items = import_dataset(shared_dataset("mvtec_screw")).items
    return [it for it in items if it.split == "train"][:3], [it for it in items if it.split == "test"]


@pytest.fixture
def model_file(tmp_path, screw, monkeypatch, mobilenet_weights):
    monkeypatch.setenv("ANOMALY_GUI_WEIGHTS", str(mobilenet_weights.parent))
    eng = get_engine("patchcore")(device="cpu", image_size=96, runtime="torch")
    eng.fit(screw[0])
    return eng, eng.save(tmp_path / "pc.agm")


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_exported_model_scores_like_torch(tmp_path, screw, model_file, fmt, capsys):
    if fmt == "openvino":
        pytest.importorskip("openvino")
    from anomaly_gui.engines.deploy import ExportedScorer

    eng, path = model_file
    out = tmp_path / "deploy" / "pc"
    assert cli_main(["export-model", str(path), "--format", fmt, "--out", str(out), "--json"]) == 0
    written = json.loads(capsys.readouterr().out)["path"]
    assert written.endswith(".onnx" if fmt == "onnx" else ".xml")
    scorer = ExportedScorer(written)
    assert scorer.image_size == 96 and scorer.channels == 3
    x = load_all(screw[1][:6], 96, 3).float() / 255.0
    s_ref, m_ref = eng.score_tensor(x)
    s_exp, m_exp = scorer.score_tensor(x)
    assert m_exp.shape == m_ref.shape == (6, 96, 96)
    assert torch.allclose(s_exp, s_ref, rtol=1e-4, atol=1e-4)
    assert (m_exp - m_ref).abs().max() < 1e-3
    assert s_ref.std() > 0.01  # the comparison means something: scores differ between images


def test_export_check_reports_differences_and_bad_input_names_the_file(tmp_path, model_file, capsys):
    _, path = model_file
    folder = shared_dataset("mvtec_screw") / "test" / "defect"
    assert cli_main(["export-model", str(path), "--check", str(folder), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["check"]["images"] > 0 and res["check"]["max_score_difference"] < 1e-3
    assert (tmp_path / "pc.onnx").is_file()
    assert cli_main(["export-model", str(tmp_path / "missing.agm")]) == 2
    assert "missing.agm" in capsys.readouterr().err
    bad = tmp_path / "bad.agm"
    bad.write_bytes(b"garbage")
    assert cli_main(["export-model", str(bad)]) == 2
    assert "bad.agm" in capsys.readouterr().err


#: small real fits of the other image engines (and PatchCore's centre-crop option); the autoencoder tiles 96 px images with 32 px patches
#: (stride 16: 25 tiles), gray and RGB, and its pretrained-encoder variant
OTHER_ENGINES = {
    "patchcore-crop": {"image_size": 96, "center_crop": 0.75, "runtime": "torch"},  # maps pasted back in place
    "selfsimilarity": {"image_size": 96, "n_words": 16},
    "autoencoder": {"image_size": 96, "patch_size": 32, "epochs": 2, "color": "gray"},
    "autoencoder-rgb-l2-whole": {"image_size": 64, "patch_size": 64, "epochs": 2, "color": "rgb", "residual": "l2"},
    "autoencoder-pretrained": {"image_size": 64, "patch_size": 64, "epochs": 1, "architecture": "pretrained",
                               "color": "rgb"},
}


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
@pytest.mark.parametrize("case", list(OTHER_ENGINES))
def test_other_image_engines_export_with_the_same_scores(tmp_path, screw, case, fmt):
    if fmt == "openvino":
        pytest.importorskip("openvino")
    from anomaly_gui.engines.deploy import ExportedScorer, export_model

    eng = get_engine(case.split("-")[0])(device="cpu", **OTHER_ENGINES[case])
    eng.fit(screw[0])
    path = export_model(eng, tmp_path / "m", fmt)
    scorer = ExportedScorer(path)
    size = OTHER_ENGINES[case]["image_size"]
    assert scorer.image_size == size and scorer.channels == eng.channels()
    x = load_all(screw[1][:5], size, eng.channels()).float() / 255.0
    s_ref, m_ref = eng.score_tensor(x)
    s_exp, m_exp = scorer.score_tensor(x)
    assert m_exp.shape == m_ref.shape == (5, size, size)
    assert torch.allclose(s_exp, s_ref, rtol=1e-4, atol=1e-5 * float(s_ref.abs().max()))
    assert (m_exp - m_ref).abs().max() < 1e-3 * float(m_ref.abs().max())  # SSIM divides: float rounding grows
    assert s_ref.std() > 1e-3 * float(s_ref.abs().max())  # scores differ between images: the test can fail


def test_engines_without_an_export_module_are_refused(tmp_path):
    from anomaly_gui.engines.deploy import export_model, exportable_engines

    assert exportable_engines() == ["patchcore", "selfsimilarity", "autoencoder"]
    eng = get_engine("stacked_ae")(device="cpu")
    eng.fitted = True
    with pytest.raises(ValueError, match="cannot be exported.*patchcore, selfsimilarity, autoencoder"):
        export_model(eng, tmp_path / "ae.onnx")
