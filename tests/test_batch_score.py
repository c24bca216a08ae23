"""Batch scoring (`anomaly_gui.batch`, `anomaly-gui score`): the same verdicts as the app's own run, in
process and on a local Ray; resumable; unreadable files in the errors shard; a killed Ray worker loses nothing.

The app's run is a PatchCore run trained in a project on real MVTec screw images; the batch jobs score a
folder of the same test images with that run's model file, threshold and minimum area.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import shared_dataset

pytest.importorskip("pyarrow")

from anomaly_gui.batch import BatchError, score_batch  # noqa: E402
from anomaly_gui.batch import shards  # noqa: E402

MIN_AREA = 3000.0  # image pixels (1024x1024 images, a 64x64 map: ~12 map pixels)


@pytest.fixture(scope="module")
def app_run(tmp_path_factory, mobilenet_weights):
    """A project with a trained PatchCore run over a folder of 8 screw test images (+ one corrupt file).

    The threshold is set where the analyst would put the slider: between the items' critical values, so the
    verdicts are mixed at the chosen minimum area."""
    from anomaly_gui.core.formats.base import DatasetItem
    from anomaly_gui.core.project import open_project
    from anomaly_gui.pipeline import model_path, score_run, train_run
    from anomaly_gui.gui.review_model import ReviewData

    screw = shared_dataset("mvtec_screw")
    root = tmp_path_factory.mktemp("batch")
    folder = root / "incoming"
    folder.mkdir()
    tests = sorted((screw / "test" / "good").glob("*.png"))[:4] + sorted((screw / "test" / "defect").glob("*.png"))[:4]
    for p in tests:
        shutil.copy(p, folder / f"{p.parent.name}_{p.name}")
    items = [DatasetItem(path=str(p), split="train", label="good", is_anomalous=False)
             for p in sorted((screw / "train" / "good").glob("*.png"))[:8]]
    items += [DatasetItem(path=str(p), split="test", label=p.name.split("_")[0], is_anomalous="defect" in p.name)
              for p in sorted(folder.glob("*.png"))]
    (folder / "zz_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is no image")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ANOMALY_GUI_WEIGHTS", str(mobilenet_weights.parent))
        with open_project(root / "p.agproj") as proj:
            proj.add_items(items)
            run_id = train_run(proj, "patchcore", {"image_size": 64, "coreset_ratio": 0.1, "batch_size": 8},
                               device="cpu", score=False)
            test_items = proj.items(split="test")
            score_run(proj, run_id, test_items, device="cpu")
            data = ReviewData(proj, run_id)
            crit = np.sort(data.critical(MIN_AREA))
            threshold = float((crit[3] + crit[4]) / 2)
            proj.update_run(run_id, threshold=threshold, min_area=MIN_AREA)
            data = ReviewData(proj, run_id)
            flags = data.verdicts(threshold, MIN_AREA)
            by_id = {it.id: it.path for it in test_items}
            expected = {by_id[int(i)]: (float(data.scores[k]), bool(flags[k])) for k, i in enumerate(data.item_ids)}
            model = model_path(proj, run_id)
    assert 0 < sum(v for _, v in expected.values()) < len(expected)  # mixed verdicts
    return {"folder": folder, "model": model, "threshold": threshold, "project": root / "p.agproj",
            "run_id": run_id, "expected": expected, "weights": mobilenet_weights.parent}


def _check_same_as_app(out: Path, expected: dict[str, tuple[float, bool]]) -> list[dict]:
    rows = shards.latest_results(out)
    got = {r["path"]: r for r in rows}
    assert set(got) == set(expected)
    for path, (score, verdict) in expected.items():
        assert got[path]["score"] == pytest.approx(score, rel=1e-4, abs=1e-5), path
        assert got[path]["verdict"] is verdict, path
    errors = shards.read_rows(out, shards.ERRORS)
    assert [Path(e["path"]).name for e in errors] == ["zz_corrupt.png"]
    assert "zz_corrupt.png" in errors[0]["error"] and "decode" in errors[0]["error"]
    return rows


def _raw_unit_counts(out: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for kind in (shards.RESULTS, shards.ERRORS):
        for r in shards.read_rows(out, kind, ["unit"]):
            counts[r["unit"]] = counts.get(r["unit"], 0) + 1
    return counts


def test_in_process_equals_the_app_run_resumes_and_lists_errors(app_run, tmp_path, monkeypatch):
    monkeypatch.setenv("ANOMALY_GUI_WEIGHTS", str(app_run["weights"]))
    out = tmp_path / "out"
    lines = []
    summary = score_batch(app_run["folder"], app_run["model"], out, threshold=app_run["threshold"],
                          min_area=MIN_AREA, batch_size=3, device="cpu", report=lambda p: lines.append(p.line()))
    rows = _check_same_as_app(out, app_run["expected"])
    assert summary["results"] == 8 and summary["errors"] == 1 and summary["scored_now"] == 9
    assert summary["anomalies"] == sum(v for _, v in app_run["expected"].values())
    assert lines and lines[-1].startswith("scored 9/9 (100%)") and "items/s" in lines[-1] and "left" in lines[-1]
    assert len(shards.shard_files(out, shards.RESULTS)) == 3  # one shard per batch
    # maps are saved (small job) as float16 and give the row's verdict again
    from anomaly_gui.core import postprocess as pp

    r = next(r for r in rows if r["verdict"])
    m = np.load(out / r["map_path"])
    assert m.dtype == np.float16
    assert pp.postprocess(m, app_run["threshold"], MIN_AREA, (r["image_width"], r["image_height"])).anomalous
    # a rerun skips everything written; a changed file is scored again
    again = score_batch(app_run["folder"], app_run["model"], out, threshold=app_run["threshold"], min_area=MIN_AREA,
                        device="cpu")
    assert again["scored_now"] == 0 and again["skipped"] == 9 and again["results"] == 8
    touched = sorted(app_run["folder"].glob("good_*.png"))[0]
    os.utime(touched, ns=(time.time_ns(), time.time_ns()))
    third = score_batch(app_run["folder"], app_run["model"], out, threshold=app_run["threshold"], min_area=MIN_AREA,
                        device="cpu")
    assert third["scored_now"] == 1 and third["results"] == 8
    # another threshold into the same folder would mix verdicts: refused, naming what differs
    with pytest.raises(BatchError, match="threshold"):
        score_batch(app_run["folder"], app_run["model"], out, threshold=app_run["threshold"] + 1, device="cpu")


def test_a_retried_batch_reuses_what_its_first_attempt_wrote(app_run, tmp_path, monkeypatch):
    """A Ray task retried after its worker died finds the batches it had finished: not scored twice."""
    from anomaly_gui.batch.scoring import JobConfig, UnitScorer
    from anomaly_gui.batch.units import image_unit
    from anomaly_gui.engines.base import Engine

    monkeypatch.setenv("ANOMALY_GUI_WEIGHTS", str(app_run["weights"]))
    eng = Engine.load(app_run["model"], device="cpu")
    cfg = JobConfig(model_path=str(app_run["model"]), out_dir=str(tmp_path), threshold=app_run["threshold"],
                    min_area=MIN_AREA).to_dict()
    units = [image_unit(p) for p in sorted(app_run["expected"])[:2]]
    first = UnitScorer.with_engine(cfg, eng)(units)
    monkeypatch.setattr(eng, "score", lambda *a, **k: pytest.fail("a finished batch was scored again"))
    again = UnitScorer.with_engine(cfg, eng)(units)
    for col in ("unit", "rows", "anomalous", "errors"):
        assert list(again[col]) == list(first[col])
    assert list(first["rows"]) == [1, 1] and len(shards.shard_files(tmp_path, shards.RESULTS)) == 1
    assert sum(first["anomalous"]) == sum(app_run["expected"][u["path"]][1] for u in units)


def test_cli_score_with_a_project_run_and_bad_input(app_run, tmp_path, monkeypatch, capsys):
    from anomaly_gui.cli import main

    monkeypatch.setenv("ANOMALY_GUI_WEIGHTS", str(app_run["weights"]))
    manifest = tmp_path / "list.csv"
    paths = sorted(app_run["expected"])
    manifest.write_text("path,note\n" + "".join(f"{p},x\n" for p in paths[:3]))
    rc = main(["score", str(manifest), "--model", str(app_run["project"]), "--run", str(app_run["run_id"]),
               "--out", str(tmp_path / "o"), "--device", "cpu", "--maps", "off", "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    summary = json.loads(out.out)
    assert summary["results"] == 3 and summary["threshold"] == pytest.approx(app_run["threshold"])
    assert summary["min_area"] == MIN_AREA
    assert "scored 3/3" in out.err
    rows = shards.latest_results(tmp_path / "o")
    assert all(r["map_path"] is None for r in rows)
    assert {r["path"]: r["verdict"] for r in rows} == {p: app_run["expected"][p][1] for p in paths[:3]}
    rc = main(["score", str(tmp_path / "nope"), "--model", str(app_run["model"]), "--out", str(tmp_path / "o2")])
    assert rc == 2 and "nope: input not found" in capsys.readouterr().err
    rc = main(["score", str(manifest), "--model", str(app_run["model"]), "--out", str(tmp_path / "o3")])
    assert rc == 2 and "--threshold" in capsys.readouterr().err  # the bare model file carries no threshold


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_cli_score_with_an_exported_model_decides_as_the_app_run(app_run, tmp_path, monkeypatch, capsys, fmt):
    """The run exported as ONNX / OpenVINO IR carries its threshold and minimum area; `score` with that
    file gives the app's scores (1e-4) and verdicts, and lists the corrupt file as an error."""
    pytest.importorskip("onnxruntime")
    if fmt == "openvino":
        pytest.importorskip("openvino")
    from anomaly_gui.cli import main

    monkeypatch.setenv("ANOMALY_GUI_WEIGHTS", str(app_run["weights"]))
    exported = tmp_path / ("run.onnx" if fmt == "onnx" else "run.xml")
    assert main(["export-model", str(app_run["project"]), "--run", str(app_run["run_id"]), "--format", fmt,
                 "--out", str(exported)]) == 0
    capsys.readouterr()
    rc = main(["score", str(app_run["folder"]), "--model", str(exported), "--out", str(tmp_path / "o"), "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    summary = json.loads(out.out)
    assert summary["threshold"] == pytest.approx(app_run["threshold"]) and summary["min_area"] == MIN_AREA
    assert summary["engine"] == "patchcore" and summary["results"] == 8
    _check_same_as_app(tmp_path / "o", app_run["expected"])
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    assert main(["score", str(app_run["folder"]), "--model", str(bad), "--out", str(tmp_path / "o2")]) == 2
    assert "bad.onnx" in capsys.readouterr().err


def test_import_batch_results_as_a_run(app_run, tmp_path, monkeypatch):
    from anomaly_gui.batch.importer import import_results
    from anomaly_gui.core.project import open_project
    from anomaly_gui.gui.review_model import ReviewData

    monkeypatch.setenv("ANOMALY_GUI_WEIGHTS", str(app_run["weights"]))
    out = tmp_path / "out"
    score_batch(app_run["folder"], app_run["model"], out, threshold=app_run["threshold"], min_area=MIN_AREA,
                device="cpu")
    with open_project(tmp_path / "fresh.agproj") as proj:
        imported = import_results(proj, out)
        assert imported.n_items == 8 and imported.n_new_items == 8 and imported.n_errors == 1 and imported.with_maps
        assert any("zz_corrupt.png" in p for p in imported.problems)
        run = proj.run(imported.run_id)
        assert run.status == "done" and run.engine == "patchcore" and run.min_area == MIN_AREA
        assert run.threshold == pytest.approx(app_run["threshold"])
        data = ReviewData(proj, imported.run_id)
        paths = {it.id: it.path for it in proj.items()}
        flags = data.verdicts(run.threshold, run.min_area)
        got = {paths[int(i)]: (float(data.scores[k]), bool(flags[k])) for k, i in enumerate(data.item_ids)}
        assert {p: v for p, (_, v) in got.items()} == {p: v for p, (_, v) in app_run["expected"].items()}
        for p, (s, _) in app_run["expected"].items():
            assert got[p][0] == pytest.approx(s, rel=1e-4)
        # the model file came along: the run can score more items in the app
        from anomaly_gui.core.runs import load_run_engine

        assert load_run_engine(proj, imported.run_id, device="cpu").name == "patchcore"
    with open_project(tmp_path / "other.agproj") as proj, pytest.raises(Exception, match="job.json"):
        import_results(proj, tmp_path)


def _gone(pid: int, wait: float = 10.0) -> bool:
    """True once `pid` no longer runs (absent, or a zombie its parent has not reaped yet)."""
    end = time.time() + wait
    while time.time() < end:
        try:
            os.kill(pid, 0)
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (ProcessLookupError, FileNotFoundError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.1)
    return False


# -- Ray -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ray_session(mobilenet_weights):
    """One local Ray (2 CPUs) for the module's Ray tests; stopped at the end."""
    ray = pytest.importorskip("ray")
    from anomaly_gui.batch.on_ray import connect

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ANOMALY_GUI_WEIGHTS", str(mobilenet_weights.parent))
        mp.setenv("ANOMALY_GUI_OFFLINE", "1")
        started = connect("local", num_cpus=2)
    yield ray
    if started:
        ray.shutdown()


@pytest.mark.slow
def test_local_ray_with_two_workers_equals_in_process_and_app(ray_session, app_run, tmp_path):
    out = tmp_path / "ray"
    summary = score_batch(app_run["folder"], app_run["model"], out, threshold=app_run["threshold"],
                          min_area=MIN_AREA, ray="local", workers=2, batch_size=2)
    rows = _check_same_as_app(out, app_run["expected"])
    assert summary["workers"] == 2 and summary["results"] == 8 and summary["errors"] == 1
    assert all(r["worker_pid"] != os.getpid() for r in rows)  # scored by Ray actors, not this process
    assert all(n == 1 for n in _raw_unit_counts(out).values())


@pytest.mark.slow
def test_local_ray_scores_with_an_exported_onnx_model(ray_session, app_run, tmp_path):
    pytest.importorskip("onnxruntime")
    from anomaly_gui.cli.export_model import load_engine
    from anomaly_gui.engines.deploy import export_model

    exported = export_model(load_engine(app_run["project"], app_run["run_id"]), tmp_path / "run.onnx")
    out = tmp_path / "ray"
    summary = score_batch(app_run["folder"], exported, out, ray="local", workers=1, batch_size=4)
    rows = _check_same_as_app(out, app_run["expected"])
    assert summary["threshold"] == pytest.approx(app_run["threshold"]) and summary["results"] == 8
    assert all(r["worker_pid"] != os.getpid() for r in rows)  # scored by a Ray actor holding the ONNX file


@pytest.mark.slow
def test_killed_ray_worker_then_rerun_scores_every_item_exactly_once(ray_session, app_run, tmp_path):
    out = tmp_path / "killed"
    killed: list[int] = []

    def kill_first_worker(summary: dict) -> None:
        if not killed:
            pid = int(summary["worker_pid"][0])
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    kwargs = dict(threshold=app_run["threshold"], min_area=MIN_AREA, ray="local", workers=2, batch_size=1)
    try:
        first = score_batch(app_run["folder"], app_run["model"], out, on_summary=kill_first_worker, **kwargs)
    except BatchError:
        first = None  # Ray gave up on the job: the rerun finishes it
    assert killed and killed[0] != os.getpid()
    assert _gone(killed[0])  # that worker is really dead
    second = score_batch(app_run["folder"], app_run["model"], out, **kwargs)
    assert second["results"] == 8 and second["errors"] == 1
    if first is not None:  # Ray restarted the actor and retried its batch within the first run
        assert second["scored_now"] == 0
    counts = _raw_unit_counts(out)
    assert len(counts) == 9 and set(counts.values()) == {1}, counts  # every item exactly once
    _check_same_as_app(out, app_run["expected"])
