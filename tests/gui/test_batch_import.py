"""File ▸ Import batch results…: a `score` output folder becomes a run whose verdicts the sliders drive."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pyarrow")

from anomaly_gui.batch import score_batch  # noqa: E402
from anomaly_gui.batch import shards  # noqa: E402
from anomaly_gui.core import postprocess as pp  # noqa: E402

from c2_engines import MeanDiffEngine, make_images, register_tiny_engine, stop_jobs  # noqa: E402

pytestmark = pytest.mark.gui
MIN_AREA = 40.0  # image pixels (64x64 images, 32x32 maps: 10 map pixels)


@pytest.fixture
def batch_out(tmp_path, monkeypatch):
    """A batch job over 4 normal and 4 defect images, threshold between their critical values."""
    register_tiny_engine(monkeypatch)
    items = make_images(tmp_path / "data", size=64)
    eng = MeanDiffEngine(device="cpu", size=32)
    eng.fit([it for it in items if it.split == "train"])
    model = eng.save(tmp_path / "tiny.agm")
    test = [it for it in items if it.split == "test"]
    crit = sorted(pp.critical_threshold(r.map.astype(np.float16), MIN_AREA, (64, 64)) for r in eng.score(test))
    threshold = float((crit[3] + crit[4]) / 2)
    out = tmp_path / "out"
    summary = score_batch(tmp_path / "data" / "test", model, out, threshold=threshold, min_area=MIN_AREA, device="cpu")
    assert summary["results"] == 8 and 0 < summary["anomalies"] < 8
    return out, threshold


def test_import_batch_results_menu_makes_a_reviewable_run(qtbot, window, batch_out, tmp_path, monkeypatch):
    import anomaly_gui.gui.batch_import as batch_import

    out, threshold = batch_out
    expected = {r["path"]: bool(r["verdict"]) for r in shards.latest_results(out)}
    assert window.open_project(tmp_path / "review.agproj")
    monkeypatch.setattr(batch_import.QFileDialog, "getExistingDirectory", lambda *a, **k: str(out))
    window.actions_by_name["import_batch"].trigger()
    state, rp = window.state, window.panels["review"]
    qtbot.waitUntil(lambda: rp.data is not None and state.current_run is not None
                    and rp.data.run_id == state.current_run, timeout=30000)
    run = state.project.run(state.current_run)
    assert run.engine == "c2_meandiff" and run.name.startswith("batch")
    assert state.threshold == pytest.approx(threshold) and state.min_area == pytest.approx(MIN_AREA)
    paths = {it.id: it.path for it in state.project.items()}
    assert {paths[i]: v for i, v in state.predictions.items()} == expected  # the batch verdicts, as shown
    n_batch = sum(expected.values())
    # the sliders work on the imported run as on one trained in the app
    rp.threshold.slider.setValue(0)
    assert sum(state.predictions.values()) == 8
    rp.threshold.slider.setValue(rp.threshold.slider.maximum())
    assert sum(state.predictions.values()) == 0
    rp.set_threshold(threshold)
    assert sum(state.predictions.values()) == n_batch
    rp.set_min_area(64 * 64)  # no region covers the whole image
    assert sum(state.predictions.values()) == 0
    stop_jobs(qtbot)


def test_import_batch_results_rejects_a_folder_that_is_not_one(qtbot, window, tmp_path, monkeypatch):
    import anomaly_gui.gui.batch_import as batch_import

    assert window.open_project(tmp_path / "p.agproj")
    monkeypatch.setattr(batch_import.QFileDialog, "getExistingDirectory", lambda *a, **k: str(tmp_path))
    runs_before = len(window.state.project.runs())
    window.actions_by_name["import_batch"].trigger()
    box = window.batch_importer.last_message
    assert box is not None and "no job.json" in box.text() and str(tmp_path) in box.text()
    assert len(window.state.project.runs()) == runs_before
