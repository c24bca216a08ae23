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
def offline_mobilenet(monkeypatch, mobilenet_weights):
    """The app finds the shared MobileNetV2 weights and never tries a download (skips without the weights);
    a module uses it for every test with `pytestmark = pytest.mark.usefixtures("offline_mobilenet")`."""
    monkeypatch.setenv("ANOMALY_GUI_WEIGHTS", str(mobilenet_weights.parent))
    monkeypatch.setenv("ANOMALY_GUI_OFFLINE", "1")
    return mobilenet_weights


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


@pytest.fixture
def scored_project(tmp_path):
    """A project of 12 small images (6 normal, 6 anomalous with a bright blob) and one run whose raw maps
    are the images' own brightness: a real, known answer for reports, exports and feedback tests."""
    import numpy as np
    from PIL import Image

    from anomaly_gui.core.formats.base import DatasetItem
    from anomaly_gui.core.project import open_project

    rng = np.random.default_rng(3)
    items, maps = [], []
    for k in range(12):
        bad = k % 2 == 1
        img = (rng.random((48, 64)) * 60 + 40).astype(np.uint8)
        if bad:
            img[10:22, 20:36] = 230
        p = tmp_path / "data" / ("bad" if bad else "good") / f"{k:03d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(p)
        items.append(DatasetItem(path=str(p), split="test", label="bad" if bad else "good", is_anomalous=bad,
                                 width=64, height=48))
        maps.append(img[::2, ::2].astype(np.float32) / 255.0)  # model resolution: half the image
    proj = open_project(tmp_path / "scored.agproj")
    ids = proj.add_items(items)
    run = proj.create_run("brightness", "image", {"stride": 2})
    proj.save_scores(run.id, ids, [float(m.max()) for m in maps], maps)
    proj.update_run(run.id, status="done", threshold=0.6, min_area=40.0)
    yield proj
    proj.close()
