"""`anomaly-gui evaluate DATASET --engine NAME --json` for image engines: one JSON object, the contract keys."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_engines_image import small_mvtec

CONTRACT = {"image_auroc", "pixel_auroc", "aupro", "f1_max", "threshold", "fit_seconds", "items_per_second",
            "n_train", "n_test", "engine", "device"}


def _cli(args: list[str], weights: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "ANOMALY_GUI_OFFLINE": "1", "ANOMALY_GUI_WEIGHTS": str(weights.parent),
           "OMP_NUM_THREADS": "2"}
    return subprocess.run([sys.executable, "-m", "anomaly_gui", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


@pytest.mark.slow
def test_evaluate_prints_one_json_object_with_pixel_metrics(tmp_path, mobilenet_weights):
    data = small_mvtec("mvtec_leather", tmp_path)
    model = tmp_path / "model.agm"
    proc = _cli(["evaluate", str(data), "--engine", "patchcore", "--device", "cpu", "--param", "image_size=96",
                 "--param", "coreset_ratio=0.25", "--save-model", str(model), "--json"], mobilenet_weights)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stdout
    out = json.loads(lines[0])
    assert CONTRACT <= set(out)
    assert out["engine"] == "patchcore" and out["device"] == "cpu"
    assert out["n_train"] + out["n_val"] == 4 and out["n_val"] >= 1 and out["n_test"] == 24  # threshold on validation
    assert "validation" in out["threshold_source"] and out["n_unlabelled"] == 0
    assert out["image_auroc"] >= 0.8
    assert 0.8 <= out["pixel_auroc"] <= 1.0 and 0.5 <= out["aupro"] <= 1.0  # leather has masks
    assert out["fit_seconds"] > 0 and out["items_per_second"] > 0
    assert model.is_file()


@pytest.mark.slow
def test_evaluate_with_other_test_set_and_no_masks(tmp_path, mobilenet_weights):
    """Train on screw (a few images), test on screw: image level only, pixel metrics null."""
    data = small_mvtec("mvtec_screw", tmp_path, side=128, n_train=8)
    proc = _cli(["evaluate", str(data), "--test", str(data), "--engine", "selfsimilarity", "--param", "image_size=96",
                 "--json"], mobilenet_weights)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["pixel_auroc"] is None and out["aupro"] is None
    assert out["n_train"] + out["n_val"] == 8 and out["n_test"] == 20 and out["image_auroc"] is not None


def test_evaluate_bad_dataset_exits_2_with_one_line(tmp_path, mobilenet_weights):
    proc = _cli(["evaluate", str(tmp_path / "nope"), "--engine", "patchcore", "--json"], mobilenet_weights)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "nope" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = _cli(["evaluate", str(tmp_path), "--engine", "patchcore", "--param", "bogus=1", "--json"], mobilenet_weights)
    assert proc.returncode == 2 and "bogus" in proc.stderr


def test_json_stdout_keeps_only_the_json_whatever_a_library_prints(tmp_path):
    """ultralytics prints progress bars on stdout during a fit (a logging handler bound to the stream when it was
    imported, and native writes): with `--json` they go to stderr, and stdout holds the one JSON object."""
    import subprocess
    import sys

    code = (
        "import json, logging, os, sys\n"
        "from anomaly_gui.cli.evaluate import stdout_to_stderr\n"
        "log = logging.getLogger('lib'); log.addHandler(logging.StreamHandler(sys.stdout)); log.setLevel('INFO')\n"
        "with stdout_to_stderr():\n"
        "    print('progress 1'); sys.stdout.write('progress 2\\n'); log.info('progress 3')\n"
        "    os.write(1, b'progress 4\\n')\n"
        "print(json.dumps({'map50': 0.5}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"map50": 0.5}
    assert all(f"progress {k}" in proc.stderr for k in (1, 2, 3, 4))
