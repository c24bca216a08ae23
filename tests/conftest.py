"""Shared fixtures: headless Qt, isolated settings, the real-data folder (skips cleanly without it)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("ANOMALY_GUI_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path:
    env = os.environ.get("ANOMALY_GUI_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def shared_weights_root() -> Path:
    return shared_data_root().parent / "weights"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = shared_data_root()
    if not root.is_dir():
        pytest.skip(f"real data not found at {root} (set ANOMALY_GUI_DATA)")
    return root


def shared_dataset(name: str) -> Path:
    """Path of one real dataset, or skip the test with the reason."""
    path = shared_data_root() / name
    if not path.exists():
        pytest.skip(f"real dataset {name} not found at {path}")
    return path


@pytest.fixture(scope="session")
def mobilenet_weights() -> Path:
    path = shared_weights_root() / "mobilenet_v2-b0353104.pth"
    if not path.is_file():
        pytest.skip(f"MobileNetV2 weights not found at {path}")
    return path


@pytest.fixture
def tmp_project(tmp_path):
    from anomaly_gui.core.project import open_project

    proj = open_project(tmp_path / "test.agproj")
    yield proj
    proj.close()


@pytest.fixture(autouse=True)
def _isolated_qsettings(tmp_path, monkeypatch):
    """QSettings go to a temporary folder so tests never see the user's layout or recent files."""
    monkeypatch.setenv("ANOMALY_GUI_SETTINGS_DIR", str(tmp_path / "settings"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
