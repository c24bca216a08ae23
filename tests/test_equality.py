"""One number per run: a small run of each task trained through the GUI's code path (the Train panel's
worker body) stores metrics that equal the report's and `anomaly-gui evaluate`'s on the same data and
parameters (the dataset ships train / validation / test, so every path fits and tests the same items)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from anomaly_gui.core.formats.base import import_dataset
from anomaly_gui.core.imageio import write_image
from anomaly_gui.core.project import open_project
from anomaly_gui.core.protocol import RunContext

from c2_engines import make_images, register_tiny_engine
from task_engines import make_scenes, make_species, register_task_engines


def _gui_run(project, engine: str, params: dict) -> int:
    """What the Train panel's Start button runs in its worker."""
    from anomaly_gui.gui.train_panel import _train_job

    return _train_job(RunContext(), project, engine, params, "cpu", "")


def _cli_evaluate(capsys, root: Path, engine: str, params: dict, test: Path | None = None) -> dict:
    from anomaly_gui.cli import main

    argv = ["evaluate", str(root), "--engine", engine, "--device", "cpu", "--json"]
    if test is not None:
        argv += ["--test", str(test)]
    for k, v in params.items():
        argv += ["--param", f"{k}={v}"]
    capsys.readouterr()
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def _report_metrics(project, run_id: int) -> dict:
    from anomaly_gui.core.report.data import run_evaluation

    return run_evaluation(project, run_id, truth="dataset").metrics


def _same(keys, *sources: dict, tol: float = 1e-9) -> None:
    for k in keys:
        values = [s.get(k) for s in sources]
        assert values[0] is not None, f"{k}: missing from the run's metrics"
        for v in values[1:]:
            assert v is not None and v == pytest.approx(values[0], abs=tol), f"{k}: {values}"


def _mvtec_with_validation(root: Path) -> Path:
    """The synthetic MVTec-like set of `c2_engines` plus a validation/good part."""
    items = make_images(root, n_train=8, n_good=4, n_bad=4)
    val = root / "validation" / "good"
    val.mkdir(parents=True)
    for it in items[:3]:  # three normal images move from train to validation
        shutil.move(it.path, val / Path(it.path).name)
    return root


def test_image_run_metrics_equal_report_and_evaluate(tmp_path, monkeypatch, capsys):
    register_tiny_engine(monkeypatch)
    root = _mvtec_with_validation(tmp_path / "mvtec")
    params = {"size": 32, "epochs": 1}
    with open_project(tmp_path / "p.agproj") as project:
        project.add_items(import_dataset(root).items)
        run = project.run(_gui_run(project, "c2_meandiff", params))
        stored = run.metrics
        report = _report_metrics(project, run.id)
    cli = _cli_evaluate(capsys, root, "c2_meandiff", params)
    assert stored["n_train"] == cli["n_train"] == 5 and stored["n_val"] == 3
    assert stored["n_test"] == cli["n_test"] == 8
    _same(["image_auroc", "f1_max"], stored, report, cli)
    # the run's pixel metrics read its cached raw maps (float16), `evaluate` the engine's float32 maps
    _same(["pixel_auroc", "aupro"], stored, cli, tol=1e-4)


def _write_yolo(root: Path, items) -> Path:
    """`items` as a YOLO dataset (images/<split>, labels/<split>, data.yaml) that `anomaly-gui evaluate` reads."""
    from anomaly_gui.core.formats.yolo import write_yolo

    write_yolo(items, root, classes=["ship"])
    return root


def test_detection_run_metrics_equal_report_and_evaluate(tmp_path, monkeypatch, capsys):
    register_task_engines(monkeypatch)
    root = _write_yolo(tmp_path / "yolo", make_scenes(tmp_path / "scenes"))
    with open_project(tmp_path / "p.agproj") as project:
        project.add_items(import_dataset(root).items)
        run = project.run(_gui_run(project, "t_brightbox", {}))
        stored = run.metrics
    cli = _cli_evaluate(capsys, root, "t_brightbox", {})
    assert stored["n_test"] == cli["n_test"] == 3
    _same(["map50", "map50_95"], stored, cli)
    assert 0.5 < stored["map50"] <= 1.0


def test_embedding_run_metrics_equal_report_and_evaluate(tmp_path, monkeypatch, capsys):
    """`evaluate DATASET --test OTHER` fits on DATASET's species and tests OTHER (unknown species = novel);
    the project holds the same train and test photos, plus validation photos for its threshold."""
    register_task_engines(monkeypatch)
    root = tmp_path / "species"
    items = make_species(root, n_val=2)
    with open_project(tmp_path / "p.agproj") as project:
        project.add_items(items)
        run = project.run(_gui_run(project, "t_colourembed", {}))
        stored = run.metrics
        report = _report_metrics(project, run.id)
    cli = _cli_evaluate(capsys, root / "train", "t_colourembed", {"epochs": 1}, test=root / "test")
    assert stored["n_train"] == cli["n_train"] == 12 and stored["n_test"] == cli["n_test"] == 9
    _same(["image_auroc", "f1_max"], stored, report)
    _same(["novelty_auroc", "f1_max"], stored, cli)


def _ucsd_subset(root: Path, src: Path) -> Path:
    """A UCSD-layout set from real Ped2 training frames: Train001/Train002 (24 frames each) to fit on; test
    clips Test001 (a bright square crosses frames 16-30, the anomaly) and Test002 (normal), both from
    Train003; frame labels in Test/frame_gt.json."""
    from anomaly_gui.core.imageio import read_image

    for clip in ("Train001", "Train002"):
        frames = sorted((src / "Train" / clip).iterdir())[:24]
        for f in frames:
            dst = root / "Train" / clip / f.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dst)
    frames = sorted((src / "Train" / "Train003").iterdir())
    for clip, part, square in (("Test001", frames[:30], True), ("Test002", frames[40:70], False)):
        for k, f in enumerate(part):
            img = read_image(f)[:, :, 0].copy() if read_image(f).ndim == 3 else read_image(f).copy()
            if square and k >= 15:
                x = 20 + 6 * (k - 15)
                img[60:90, x:x + 30] = 255
            write_image(root / "Test" / clip / f"{k + 1:03d}.png", img)
    (root / "Test" / "frame_gt.json").write_text(json.dumps({"anomalous_frames": {"Test001": [[16, 30]], "Test002": []}}))
    return root


def test_video_run_metrics_equal_report_and_evaluate(tmp_path, capsys):
    """`evaluate` fits on the Train clips and tests the Test clips; the project holds the same clips plus a
    validation clip (its split 'val') for its threshold."""
    import torch

    from tests.conftest import shared_dataset

    torch.set_num_threads(1)
    ped2 = shared_dataset("ucsd_ped2")
    root = _ucsd_subset(tmp_path / "ucsd", ped2)
    val_root = tmp_path / "val"
    for f in sorted((ped2 / "Train" / "Train003").iterdir())[80:104]:
        dst = val_root / "Train" / "Val001" / f.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dst)
    params = {"width": 48, "height": 32, "batch_size": 8, "epochs": 2, "lr": 0.003}
    with open_project(tmp_path / "p.agproj") as project:
        project.add_items(import_dataset(root).items)
        project.set_split(project.add_items(import_dataset(val_root).items), "val")
        run = project.run(_gui_run(project, "frame_ae", params))
        stored = run.metrics
        report = _report_metrics(project, run.id)
    cli = _cli_evaluate(capsys, root, "frame_ae", params)
    assert stored["n_train"] == 48 and stored["n_val"] == 24 and stored["n_test"] == cli["n_test"] == 60
    assert stored["frame_auc"] > 0.8 and stored["frame_auc_raw"] > 0.8
    _same(["frame_auc", "frame_auc_raw"], stored, cli)
    _same(["image_auroc"], stored, report)
