"""A tiny but real image engine and a synthetic MVTec-like project for the run/review tests (engineer C2).

`MeanDiffEngine` learns the mean normal image (grayscale, resized) over a few "epochs" of running averages
and scores |image - mean| blurred, so defects (bright squares) light up. Registered only inside tests.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from anomaly_gui.core.formats.base import DatasetItem
from anomaly_gui.core.imageio import read_image, to_gray8, write_image
from anomaly_gui.engines import base
from anomaly_gui.engines.base import Engine, RunContext, ScoreResult, Task, param


@dataclass
class MeanDiffParams:
    size: int = param(32, "side the images are resized to", minimum=8, maximum=256, step=8)
    epochs: int = param(2, "passes over the training images", minimum=1, maximum=100)
    blur: int = param(3, "box blur of the difference map", minimum=1, maximum=15, advanced=True)
    mode: str = param("abs", "difference", choices=["abs", "square"])
    delay: float = param(0.0, "seconds to sleep per image (tests of Cancel)", minimum=0.0, maximum=5.0, advanced=True)
    verbose: bool = param(False, "log more")


class MeanDiffEngine(Engine):
    name = "c2_meandiff"
    task = Task.IMAGE
    title = "Mean difference (test engine)"
    needs = frozenset({"normal_images"})
    Params = MeanDiffParams

    def __init__(self, params: Any | None = None, device: str = "auto", **overrides: Any):
        super().__init__(params, device, **overrides)
        self.mean: np.ndarray | None = None

    def _load(self, it: DatasetItem) -> np.ndarray:
        g = to_gray8(read_image(it.path)).astype(np.float32) / 255.0
        return cv2.resize(g, (self.params.size, self.params.size), interpolation=cv2.INTER_AREA)

    def fit(self, items: Sequence[DatasetItem], ctx: RunContext | None = None) -> None:
        ctx = ctx or RunContext()
        if len(items) < 1:
            raise ValueError("need at least one normal image")
        acc = np.zeros((self.params.size, self.params.size), np.float32)
        total = self.params.epochs * len(items)
        for ep in range(self.params.epochs):
            acc[:] = 0
            for k, it in enumerate(items):
                ctx.check()
                if self.params.delay:
                    time.sleep(self.params.delay)
                acc += self._load(it)
                ctx.progress(ep * len(items) + k + 1, total, f"epoch {ep + 1}")
            mean = acc / len(items)
            loss = float(np.mean([np.mean((self._load(it) - mean) ** 2) for it in items[:4]]))
            ctx.log({"epoch": ep + 1, "loss": loss / (ep + 1)})
        self.mean = mean
        self.fitted = True

    def score(self, items: Sequence[DatasetItem], ctx: RunContext | None = None) -> list[ScoreResult]:
        assert self.mean is not None
        out = []
        for it in items:
            d = self._load(it) - self.mean
            d = np.abs(d) if self.params.mode == "abs" else d * d
            k = self.params.blur
            m = cv2.blur(d, (k, k)) if k > 1 else d
            out.append(ScoreResult(score=float(m.max()), map=m.astype(np.float32)))
        return out

    def state_tensors(self) -> dict[str, Any]:
        assert self.mean is not None
        return {"mean": self.mean}

    def load_state_tensors(self, tensors: dict[str, Any]) -> None:
        self.mean = np.asarray(tensors["mean"].numpy(), np.float32)


def register_tiny_engine(monkeypatch: Any) -> type[Engine]:
    base.list_engines()  # discover the real ones first
    monkeypatch.setitem(base._ENGINES, MeanDiffEngine.name, MeanDiffEngine)
    return MeanDiffEngine


def make_images(root: Path, n_train: int = 8, n_good: int = 4, n_bad: int = 4, size: int = 64,
                seed: int = 0) -> list[DatasetItem]:
    """Synthetic MVTec-like items: textured normals; anomalies carry a bright square and its mask."""
    rng = np.random.default_rng(seed)
    items: list[DatasetItem] = []
    yy, xx = np.mgrid[0:size, 0:size]
    base_img = (100 + 40 * np.sin(xx / 5.0) * np.cos(yy / 7.0)).astype(np.float32)

    def normal() -> np.ndarray:
        return np.clip(base_img + rng.normal(0, 4, base_img.shape), 0, 255).astype(np.uint8)

    for k in range(n_train):
        p = root / "train" / "good" / f"{k:03d}.png"
        write_image(p, normal())
        items.append(DatasetItem(path=str(p), split="train", label="good", is_anomalous=False, width=size, height=size))
    for k in range(n_good):
        p = root / "test" / "good" / f"{k:03d}.png"
        write_image(p, normal())
        items.append(DatasetItem(path=str(p), split="test", label="good", is_anomalous=False, width=size, height=size))
    for k in range(n_bad):
        img = normal()
        side = 6 + 4 * k
        x0, y0 = 8 + 3 * k, 10 + 2 * k
        img[y0:y0 + side, x0:x0 + side] = 250
        mask = np.zeros((size, size), np.uint8)
        mask[y0:y0 + side, x0:x0 + side] = 255
        p = root / "test" / "defect" / f"{k:03d}.png"
        mp = root / "ground_truth" / "defect" / f"{k:03d}_mask.png"
        write_image(p, img)
        write_image(mp, mask)
        items.append(DatasetItem(path=str(p), split="test", label="defect", is_anomalous=True, mask_path=str(mp),
                                 width=size, height=size))
    return items


def main_window_on(qtbot: Any, project: Any) -> Any:
    """A shown 1400x900 main window on `project` (the caller closes the project)."""
    from anomaly_gui.gui.main_window import MainWindow
    from anomaly_gui.gui.state import AppState

    win = MainWindow(AppState())
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    win.state.set_project(project)
    return win


def stop_jobs(qtbot: Any, timeout: int = 10000) -> None:
    """Cancel every worker job and let the event loop run until their threads have ended."""
    from anomaly_gui.gui.workers import JOBS

    for job in JOBS.running():
        job.cancel()
    qtbot.waitUntil(lambda: not JOBS.running(), timeout=timeout)
