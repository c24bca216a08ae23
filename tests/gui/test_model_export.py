"""Runs ▸ Export model…: finished PatchCore and autoencoder runs exported from the Runs panel score like the
run's model; runs that cannot be exported keep the button disabled; a failed export names the file."""
from __future__ import annotations

import pytest
import torch

from anomaly_gui.core.project import open_project
from anomaly_gui.pipeline import train_run

from c2_engines import MeanDiffEngine, make_images, register_tiny_engine, stop_jobs  # noqa: F401

pytestmark = pytest.mark.gui
pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.fixture
def project_with_runs(tmp_path, monkeypatch, mobilenet_weights):
    torch.set_num_threads(1)
    monkeypatch.setenv("ANOMALY_GUI_WEIGHTS", str(mobilenet_weights.parent))
    register_tiny_engine(monkeypatch)
    path = tmp_path / "proj" / "p.agproj"
    with open_project(path) as proj:
        proj.add_items(make_images(tmp_path / "data", n_train=6, n_good=2, n_bad=2, size=64))
        pc = train_run(proj, "patchcore", {"image_size": 64}, device="cpu")
        tiny = train_run(proj, "c2_meandiff", {"size": 64, "blur": 3}, device="cpu")
        ae = train_run(proj, "autoencoder", {"image_size": 64, "patch_size": 32, "epochs": 2}, device="cpu")
    return path, pc, tiny, ae


def test_export_patchcore_run_from_the_runs_panel(qtbot, project_with_runs, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog, QMessageBox

    from anomaly_gui.engines.deploy import ExportedScorer
    from anomaly_gui.gui.main_window import MainWindow
    from anomaly_gui.gui.state import AppState
    from anomaly_gui.pipeline import load_run_engine

    path, pc, tiny, ae = project_with_runs
    win = MainWindow(AppState())
    qtbot.addWidget(win)
    assert win.open_project(path)
    panel = win.panels["runs"]

    win.state.set_current_run(tiny)
    assert not panel.export_button.isEnabled()  # the tiny test engine has no export
    messages: list[str] = []
    monkeypatch.setattr(QMessageBox, "information", lambda parent, title, text, *a: messages.append(text))
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text, *a: messages.append("WARN " + text))
    from anomaly_gui.engines.image_data import load_all

    for run_id in (pc, ae):
        win.state.set_current_run(run_id)
        assert panel.export_button.isEnabled()
        out = tmp_path / "out" / f"model{run_id}.onnx"
        monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, _o=out, **k: (str(_o), "ONNX (*.onnx)"))
        messages.clear()
        job = panel.export_selected()
        assert job is not None
        qtbot.waitUntil(lambda: bool(messages), timeout=120000)
        assert messages[0].startswith(f"Run #{run_id} exported as onnx") and str(out) in messages[0]

        # the exported file scores like the run's own model
        engine = load_run_engine(win.state.project, run_id, device="cpu")
        tests = [it for it in win.state.project.items() if it.split == "test"]
        size = engine.input_size()
        x = load_all(tests, size, engine.channels()).float() / 255.0
        s_ref, m_ref = engine.score_tensor(x)
        s_exp, m_exp = ExportedScorer(out).score_tensor(x)
        assert torch.allclose(s_exp, s_ref, rtol=1e-4, atol=1e-4 * float(s_ref.abs().max()))
        assert (m_exp - m_ref).abs().max() < 1e-3 * float(m_ref.abs().max())
        assert s_ref.std() > 1e-3 * float(s_ref.abs().max())  # scores differ: the comparison means something

    # a folder that cannot be written: the message names the path
    messages.clear()
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(blocker / "m.onnx"), "ONNX (*.onnx)"))
    panel.export_selected()
    qtbot.waitUntil(lambda: bool(messages), timeout=60000)
    assert messages[0].startswith("WARN") and str(blocker / "m.onnx") in messages[0]
    stop_jobs(qtbot)
