"""Fixtures for the main window / viewer / browser tests (pytest-qt, offscreen, isolated settings)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest


def write_png(path: Path, arr: np.ndarray) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """A plain image folder: good/ and scratch/ textures (64x48), plus one garbage and one truncated PNG."""
    rng = np.random.default_rng(0)
    root = tmp_path / "folder"
    for label, n in (("good", 6), ("scratch", 3)):
        for i in range(n):
            img = (rng.random((48, 64, 3)) * 80 + 60).astype(np.uint8)
            if label == "scratch":
                img[20:24, 10:50] = 250
            write_png(root / label / f"{label}_{i:02d}.png", img)
    (root / "good" / "garbage.png").write_bytes(b"this is not a png at all" * 10)
    full = (root / "good" / "good_00.png").read_bytes()
    (root / "scratch" / "truncated.png").write_bytes(full[: len(full) // 3])
    return root


@pytest.fixture
def window(qtbot):
    """A shown main window with the app's style; closed (layout saved, jobs stopped) afterwards."""
    from anomaly_gui.gui.app import make_application
    from anomaly_gui.gui.main_window import MainWindow
    from anomaly_gui.gui.state import AppState

    make_application()
    win = MainWindow(AppState())
    qtbot.addWidget(win)
    win.show()
    win.activateWindow()
    qtbot.waitActive(win)  # window shortcuts (A / D / T) need the active window
    yield win
    win.close()
    if win.state.project is not None:
        win.state.project.close()


@pytest.fixture
def wait_import(qtbot) -> Callable[..., object]:
    """Wait until the window's import finished; returns the ImportResult (None when it failed)."""

    def wait(win, timeout: int = 60000) -> object:
        qtbot.waitUntil(lambda: not win.importer.busy() and (win.importer.last_result is not None
                                                               or bool(win.importer.last_error)), timeout=timeout)
        qtbot.wait(50)  # queued item signals reach the browser
        # offscreen has no window manager to give activation back after the progress dialog closed
        win.activateWindow()
        qtbot.waitUntil(win.isActiveWindow, timeout=2000)
        return win.importer.last_result

    return wait


def pixel_std(img) -> float:
    """Standard deviation of a QImage's pixels (0 for a blank grab)."""
    from PySide6.QtGui import QImage

    img = img.convertToFormat(QImage.Format.Format_RGB888)
    w, h = img.width(), img.height()
    arr = np.frombuffer(img.constBits(), np.uint8, count=img.bytesPerLine() * h).reshape(h, img.bytesPerLine())
    return float(arr[:, : w * 3].std())
