"""`anomaly-gui import PATH --project FILE` in a subprocess, without a display."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from anomaly_gui.core.imageio import write_image
from anomaly_gui.core.project import open_project
from anomaly_gui.sample_data import ensure_sample_data


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    env.pop("DISPLAY", None)
    return subprocess.run([sys.executable, "-m", "anomaly_gui", *args], capture_output=True, text=True, env=env, timeout=120)


def test_import_sample_data_into_a_project(tmp_path):
    root = ensure_sample_data()
    proj_path = tmp_path / "demo.agproj"
    p = run_cli("import", str(root / "product"), "--project", str(proj_path), "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["format"] == "mvtec" and out["n_items"] == 34 and out["problems"] == []
    p = run_cli("import", str(root / "sar"), "--project", str(proj_path))
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("yolo: 24 items")
    with open_project(proj_path) as proj:
        assert proj.count_items() == 58
        assert proj.count_items(split="train", label="good") == 20
        assert "ship" in proj.label_classes()
        boxes = sum(len(a) for a in proj.annotations_by_item().values())
        assert boxes > 10
        assert [i["format"] for i in proj.imports()] == ["mvtec", "yolo"]


def test_import_reports_bad_files_and_goes_on(tmp_path):
    data = tmp_path / "shots"
    write_image(data / "ok" / "a.png", np.zeros((8, 8), np.uint8))
    write_image(data / "scratch" / "b.png", np.ones((8, 8), np.uint8))
    (data / "scratch" / "broken.png").write_bytes(b"")
    p = run_cli("import", str(data), "--project", str(tmp_path / "p.agproj"))
    assert p.returncode == 0, p.stderr
    assert "broken.png: empty file" in p.stderr
    assert "2 items" in p.stdout and "1 problem" in p.stdout


def test_bad_path_exits_2_with_one_line(tmp_path):
    p = run_cli("import", str(tmp_path / "no_such_folder"), "--project", str(tmp_path / "p.agproj"))
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "no_such_folder" in lines[0] and "not found" in lines[0]
    assert p.stdout == ""


def test_unknown_layout_and_unknown_format_exit_2(tmp_path):
    (tmp_path / "empty").mkdir()
    p = run_cli("import", str(tmp_path / "empty"), "--project", str(tmp_path / "p.agproj"))
    assert p.returncode == 2 and "no known dataset layout" in p.stderr
    p = run_cli("import", str(tmp_path / "empty"), "--project", str(tmp_path / "p.agproj"), "--format", "nope")
    assert p.returncode == 2 and "unknown format" in p.stderr


def test_non_project_file_exits_2(tmp_path):
    bad = tmp_path / "bad.agproj"
    bad.write_text("not sqlite " * 100)
    p = run_cli("import", str(ensure_sample_data() / "product"), "--project", str(bad))
    assert p.returncode == 2 and "bad.agproj" in p.stderr
    assert bad.read_text().startswith("not sqlite")


def test_help_lists_import():
    p = run_cli("--help")
    assert p.returncode == 0 and "import" in p.stdout
    assert Path(ensure_sample_data()).is_dir()
