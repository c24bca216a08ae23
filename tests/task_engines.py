"""Tiny but real detection and embedding engines and a synthetic scene set, for the run-pipeline tests.

- `BrightBoxEngine` (detection): learns, from the labelled boxes, the gray level that separates objects from
  the background (midway between the mean inside and outside the boxes) and the most common class; it
  detects the connected regions above that level, confidence = the region's mean brightness.
- `ColourEmbedEngine` (embedding): the embedding of an item is its gray-level histogram (16 bins); the
  novelty score is the distance to the nearest training embedding, the species that neighbour's label.
Registered only inside tests (monkeypatch), like `c2_engines.MeanDiffEngine`.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from anomaly_gui.core.formats.base import Annotation, DatasetItem
from anomaly_gui.core.imageio import read_image, to_gray8, write_image
from anomaly_gui.engines import base
from anomaly_gui.engines.base import Engine, RunContext, ScoreResult, Task, param


@dataclass
class BrightBoxParams:
    epochs: int = param(1, "passes (the statistics are exact after one)", minimum=1, maximum=10)
    min_area: int = param(20, "smallest region reported, in pixels", minimum=1, maximum=10000)


class BrightBoxEngine(Engine):
    name = "t_brightbox"
    task = Task.DETECTION
    title = "Bright boxes (test engine)"
    needs = frozenset({"boxes", "classes"})
    Params = BrightBoxParams

    def __init__(self, params: Any | None = None, device: str = "auto", **overrides: Any):
        super().__init__(params, device, **overrides)
        self.level = 128.0
        self.label = "object"

    def fit(self, items: Sequence[DatasetItem], ctx: RunContext | None = None) -> None:
        ctx = ctx or RunContext()
        inside, outside, labels = [], [], Counter()
        for ep in range(self.params.epochs):
            for k, it in enumerate(items):
                ctx.check()
                g = to_gray8(read_image(it.path)).astype(np.float32)
                mask = np.zeros(g.shape, bool)
                for a in it.annotations:
                    if a.kind == "box":
                        x1, y1, x2, y2 = (int(round(a.geometry[c])) for c in ("x1", "y1", "x2", "y2"))
                        mask[y1:y2, x1:x2] = True
                        labels[a.label] += 1
                inside.append(g[mask].mean() if mask.any() else np.nan)
                outside.append(g[~mask].mean())
                ctx.progress(ep * len(items) + k + 1, self.params.epochs * len(items), f"epoch {ep + 1}")
            ctx.log({"epoch": ep + 1, "map50": 1.0, "map50_95": 0.5})
        self.level = float((np.nanmean(inside) + np.mean(outside)) / 2)
        self.label = labels.most_common(1)[0][0] if labels else "object"
        self.stats["classes"] = [self.label]
        self.fitted = True

    def score(self, items: Sequence[DatasetItem], ctx: RunContext | None = None) -> list[ScoreResult]:
        out = []
        for it in items:
            g = to_gray8(read_image(it.path))
            n, lab, stats, _ = cv2.connectedComponentsWithStats((g > self.level).astype(np.uint8), connectivity=8)
            boxes = []
            for i in range(1, n):
                x, y, w, h, a = (int(v) for v in stats[i])
                if a >= self.params.min_area:
                    conf = float(g[lab == i].mean()) / 255.0
                    boxes.append(Annotation("box", self.label, {"x1": x, "y1": y, "x2": x + w, "y2": y + h}, score=conf))
            out.append(ScoreResult(score=max((b.score for b in boxes), default=0.0), boxes=boxes))
        return out

    def state_tensors(self) -> dict[str, Any]:
        return {"level": np.asarray([self.level], np.float32)}

    def load_state_tensors(self, tensors: dict[str, Any]) -> None:
        self.level = float(np.asarray(tensors["level"])[0])
        self.label = (self.stats.get("classes") or ["object"])[0]


@dataclass
class ColourEmbedParams:
    bins: int = param(16, "gray-level histogram bins (the embedding)", minimum=2, maximum=256)
    epochs: int = param(1, "passes", minimum=0, maximum=10)


class ColourEmbedEngine(Engine):
    name = "t_colourembed"
    task = Task.EMBEDDING
    title = "Gray histogram embedding (test engine)"
    needs = frozenset()
    Params = ColourEmbedParams

    def __init__(self, params: Any | None = None, device: str = "auto", **overrides: Any):
        super().__init__(params, device, **overrides)
        self.bank = np.zeros((0, self.params.bins), np.float32)
        self.bank_labels: list[str] = []

    def _embed(self, it: DatasetItem) -> np.ndarray:
        g = to_gray8(read_image(it.path))
        h = np.bincount((g.astype(np.int64) * self.params.bins // 256).ravel(), minlength=self.params.bins)
        return (h / max(h.sum(), 1)).astype(np.float32)

    def fit(self, items: Sequence[DatasetItem], ctx: RunContext | None = None) -> None:
        ctx = ctx or RunContext()
        self.bank = np.stack([self._embed(it) for it in items])
        self.bank_labels = [it.label or "" for it in items]
        self.stats["labels"] = self.bank_labels
        ctx.log({"epoch": 1, "loss": 0.0})
        self.fitted = True

    def score(self, items: Sequence[DatasetItem], ctx: RunContext | None = None) -> list[ScoreResult]:
        out = []
        for it in items:
            e = self._embed(it)
            d = np.linalg.norm(self.bank - e, axis=1)
            k = int(np.argmin(d))
            out.append(ScoreResult(score=float(d[k]), embedding=e, species=self.bank_labels[k]))
        return out

    def state_tensors(self) -> dict[str, Any]:
        return {"bank": self.bank}

    def load_state_tensors(self, tensors: dict[str, Any]) -> None:
        self.bank = np.asarray(tensors["bank"].numpy(), np.float32)
        self.bank_labels = list(self.stats.get("labels", []))


def register_task_engines(monkeypatch: Any) -> None:
    base.list_engines()  # discover the real ones first
    for cls in (BrightBoxEngine, ColourEmbedEngine):
        monkeypatch.setitem(base._ENGINES, cls.name, cls)


def make_scenes(root: Path, n: int = 12, size: int = 96, seed: int = 0) -> list[DatasetItem]:
    """Dark noisy scenes with 1-2 bright 'ship' boxes each (labelled); the last quarter is split test."""
    rng = np.random.default_rng(seed)
    items = []
    for k in range(n):
        img = np.clip(rng.normal(40, 8, (size, size)), 0, 255).astype(np.uint8)
        anns = []
        for j in range(1 + k % 2):
            w, h = 12 + 2 * j, 10 + 3 * (k % 3)
            x, y = 8 + 40 * j + k % 5, 10 + 30 * j + 2 * (k % 4)
            img[y:y + h, x:x + w] = 200 + 5 * j
            anns.append(Annotation("box", "ship", {"x1": x, "y1": y, "x2": x + w, "y2": y + h}))
        p = root / f"scene_{k:02d}.png"
        write_image(p, img)
        split = "test" if k >= n * 3 // 4 else "train"
        items.append(DatasetItem(path=str(p), split=split, label="scene", width=size, height=size, annotations=anns))
    return items


def make_species(root: Path, seed: int = 0, n_val: int = 0) -> list[DatasetItem]:
    """Photos in `root/<split>/<species>/`: two known species (dark, mid-gray) in train (and `n_val` each in
    val); test holds both plus an unknown bright one (the anomaly)."""
    rng = np.random.default_rng(seed)
    items = []
    for name, level, n_train, n_test, anomalous in (("dark", 50, 6, 3, False), ("gray", 120, 6, 3, False),
                                                    ("bright", 220, 0, 3, True)):
        splits = ["train"] * n_train + (["val"] * n_val if n_train else []) + ["test"] * n_test
        for k, split in enumerate(splits):
            p = root / split / name / f"{k:02d}.png"
            write_image(p, np.clip(rng.normal(level, 10, (48, 48)), 0, 255).astype(np.uint8))
            items.append(DatasetItem(path=str(p), split=split, label=name, is_anomalous=anomalous, width=48, height=48))
    return items
