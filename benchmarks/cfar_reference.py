"""A learning-free reference for the HRSID figures: how far does a CFAR-style bright-blob detector get on
the same 20 / 6 split as `detection_shared.py`? (Issue 14: it tells how hard the 6 test chips are.)

    python benchmarks/cfar_reference.py

Pixels more than `k` local standard deviations above the local mean (square window `win`) are closed
(`close` iterations), grouped into 8-connected components of at least `min_area` pixels and boxed; a box's
score is its mean z-value times log(1 + area). The four settings are chosen by grid search on the 20 training
chips only, then the 6 test chips are scored once. mAP is `core.metrics.detection.mean_average_precision`,
the one the evaluator uses.
"""
from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from anomaly_gui.core.metrics.detection import Boxes, mean_average_precision
from detection_shared import TEST_INDICES  # the benchmarks' one 20 / 6 split

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ANOMALY_GUI_DATA", ROOT / ".." / "shared" / "data")) / "hrsid_ships"
GRID = {"win": (75, 101, 151), "k": (2.0, 2.5, 3.0, 3.5), "close": (0, 1, 2, 3), "min_area": (20, 40, 60, 100)}


def ground_truth(image: Path, width: int, height: int) -> Boxes:
    rows = [list(map(float, line.split())) for line in (DATA / "labels" / f"{image.stem}.txt").read_text().splitlines()
            if line.strip()]
    xyxy = np.array([[(x - w / 2) * width, (y - h / 2) * height, (x + w / 2) * width, (y + h / 2) * height]
                     for _, x, y, w, h in rows]).reshape(-1, 4)
    return Boxes(xyxy, ["ship"] * len(xyxy), None, np.zeros(len(xyxy), bool), np.zeros(len(xyxy), bool))


def detect(img: np.ndarray, win: int, k: float, close: int, min_area: int) -> Boxes:
    mean = ndi.uniform_filter(img, win)
    std = np.sqrt(np.maximum(ndi.uniform_filter(img * img, win) - mean * mean, 1.0))
    z = (img - mean) / std
    mask = z > k
    if close:
        mask = ndi.binary_closing(mask, iterations=close)
    labels, _ = ndi.label(mask, structure=np.ones((3, 3)))
    boxes, scores = [], []
    for i, sl in enumerate(ndi.find_objects(labels)):
        if sl is None:
            continue
        comp = labels[sl] == i + 1
        area = int(comp.sum())
        if area < min_area:
            continue
        boxes.append([sl[1].start, sl[0].start, sl[1].stop, sl[0].stop])
        scores.append(float(z[sl][comp].mean()) * np.log1p(area))
    xyxy = np.array(boxes, float).reshape(-1, 4)
    return Boxes(xyxy, ["ship"] * len(xyxy), np.array(scores))


def main() -> None:
    paths = sorted((DATA / "images").glob("*.jpg"))
    images = [np.asarray(Image.open(p).convert("L"), np.float32) for p in paths]
    truth = [ground_truth(p, im.shape[1], im.shape[0]) for p, im in zip(paths, images)]
    train = [k for k in range(len(paths)) if k not in TEST_INDICES]

    def map_on(indices: list[int], setting: tuple) -> tuple[float, float]:
        r = mean_average_precision([truth[k] for k in indices], [detect(images[k], *setting) for k in indices])
        return float(r.map50 or 0.0), float(r.map50_95 or 0.0)

    best = max(itertools.product(*GRID.values()), key=lambda s: map_on(train, s)[0])
    train_map, test_map = map_on(train, best), map_on(list(TEST_INDICES), best)
    print(json.dumps({"chosen_on_train": dict(zip(GRID, best)), "train_map50": round(train_map[0], 3),
                      "test_map50": round(test_map[0], 3), "test_map50_95": round(test_map[1], 3)}))


if __name__ == "__main__":
    main()
