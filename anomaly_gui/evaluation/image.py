"""Evaluator for product-image engines: train on DATASET's normal `train` images (MVTec AD layout through
`core.formats`), score the `test` images of DATASET (or of `--test OTHER`), report image AUROC, F1-max and
its threshold, and pixel AUROC / AUPRO over the images whose masks exist (null when none)."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.formats.base import DatasetItem, import_dataset
from anomaly_gui.core.imageio import read_image
from anomaly_gui.core.metrics import auroc, f1_max
from anomaly_gui.core.metrics.segmentation import align_mask, aupro, pixel_auroc
from anomaly_gui.engines.base import RunContext, Task, get_engine
from anomaly_gui.evaluation import register_evaluator

log = logging.getLogger(__name__)


def read_dataset(root: Path) -> list[DatasetItem]:
    """Items of an image dataset (format detected); DataError when it has none."""
    res = import_dataset(Path(root))
    for problem in res.problems:
        log.warning("%s", problem)
    if not res.items:
        raise DataError(root, "no images")
    return res.items


def _logging_ctx(prefix: str) -> RunContext:
    last = [0.0]

    def progress(done: int, total: int, msg: str) -> None:
        now = time.perf_counter()
        if now - last[0] > 5 or done >= total:
            last[0] = now
            log.info("%s %s", prefix, msg)

    return RunContext(progress=progress, log=lambda e: log.info("%s %s", prefix, e))


def ground_truth(item: DatasetItem, shape: tuple[int, int]) -> np.ndarray | None:
    """The item's mask at map resolution; zeros for a known-normal item; None when unknown (excluded)."""
    if item.mask_path:
        return align_mask(read_image(item.mask_path), shape)
    if item.is_anomalous is False:
        return np.zeros(shape, bool)
    return None


@register_evaluator(Task.IMAGE)
def evaluate_image(dataset: Path, engine: str, test: Path | None = None, device: str = "auto",
                   params: dict[str, Any] | None = None, save_model: Path | None = None) -> dict[str, Any]:
    items = read_dataset(Path(dataset))
    train = [it for it in items if it.split == "train" and it.is_anomalous is not True]
    if not train:
        raise DataError(dataset, "no normal training images (expected train/good)")
    test_items = [it for it in (read_dataset(Path(test)) if test else items) if it.split == "test"]
    if not test_items:
        raise DataError(test or dataset, "no test images (expected test/<class>/)")
    eng = get_engine(engine)(device=device, **(params or {}))
    log.info("%s on %s: %d training, %d test images, device %s", engine, dataset, len(train), len(test_items), eng.device)

    t0 = time.perf_counter()
    eng.fit(train, _logging_ctx("fit"))
    _sync(eng)
    fit_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    results = eng.score(test_items, _logging_ctx("score"))
    _sync(eng)
    score_s = time.perf_counter() - t1

    ok = [(it, r) for it, r in zip(test_items, results) if r.score is not None]
    for it, r in zip(test_items, results):
        if r.score is None:
            log.warning("%s: not scored (%s)", it.path, r.error)
    labels = [int(bool(it.is_anomalous)) for it, _ in ok]
    scores = [float(r.score) for _, r in ok]
    f1, thr = f1_max(labels, scores)
    maps, masks = [], []
    for it, r in ok:
        if r.map is not None:
            maps.append(r.map)
            masks.append(ground_truth(it, r.map.shape))
    has_defect_mask = any(m is not None and m.any() for m in masks)
    out: dict[str, Any] = {
        "image_auroc": auroc(labels, scores),
        "pixel_auroc": pixel_auroc(maps, masks) if has_defect_mask else None,
        "aupro": aupro(maps, masks) if has_defect_mask else None,
        "f1_max": f1,
        "threshold": thr,
        "fit_seconds": round(fit_s, 3),
        "items_per_second": round(len(test_items) / score_s, 3) if score_s > 0 else None,
        "n_train": len(train),
        "n_test": len(test_items),
        "engine": engine,
        "device": str(eng.device),
        "n_pixel_masks": sum(1 for m in masks if m is not None and m.any()),
        "threshold_source": "F1-max on the test image scores",
        "params": eng.describe()["params"],
    }
    if save_model is not None:
        eng.stats.update({"threshold": thr, "min_area": 0.0, "threshold_method": "f1_max_test"})
        out["model_path"] = str(eng.save(save_model))
    return out


def _sync(eng: Any) -> None:
    import torch

    if getattr(eng, "device", None) is not None and eng.device.type == "cuda":
        torch.cuda.synchronize(eng.device)
