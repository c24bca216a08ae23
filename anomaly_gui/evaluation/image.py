"""Evaluator for product-image engines: train on DATASET's normal `train` images (MVTec AD layout through
`core.formats`) less a held-out validation part, choose the threshold on validation (`threshold_source`
says how), score the `test` images of DATASET (or of `--test OTHER`, refused when a test file is
byte-identical to a training file), report image AUROC, F1-max (an oracle figure: its threshold,
`f1_max_threshold`, is chosen on the test labels and never stored), pixel AUROC / AUPRO over the images
whose masks exist (null when none). Unlabelled test images (MVTec AD 2 `test_private`) are scored but left
out of every metric and counted (`n_unlabelled`); unscored ones are named in `warnings`."""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.formats.base import DatasetItem, import_dataset
from anomaly_gui.core.imageio import read_image
from anomaly_gui.core.metrics import auroc, confusion, f1_max
from anomaly_gui.core.metrics.segmentation import PIXEL_GT_RULE, align_mask, aupro, pixel_auroc
from anomaly_gui.core.splits import train_val_split
from anomaly_gui.engines.base import Task, get_engine
from anomaly_gui.evaluation import logging_context, register_evaluator
from anomaly_gui.evaluation.checks import check_overlap

log = logging.getLogger(__name__)


def read_dataset(root: Path) -> list[DatasetItem]:
    """Items of an image dataset (format detected); DataError when it has none."""
    res = import_dataset(Path(root))
    for problem in res.problems:
        log.warning("%s", problem)
    if not res.items:
        raise DataError(root, "no images")
    return res.items


def ground_truth(item: DatasetItem, shape: tuple[int, int]) -> np.ndarray | None:
    """The item's mask at map resolution; zeros for a known-normal item; None when unknown (excluded)."""
    if item.mask_path:
        return align_mask(read_image(item.mask_path), shape)
    if item.is_anomalous is False:
        return np.zeros(shape, bool)
    return None


@register_evaluator(Task.IMAGE)
def evaluate_image(dataset: Path, engine: str, test: Path | None = None, device: str = "auto",
                   params: dict[str, Any] | None = None, save_model: Path | None = None,
                   allow_overlap: bool = False, val_fraction: float = 0.2) -> dict[str, Any]:
    """Fit on the normal training images less a held-out validation part (the dataset's own `validation/`
    when it has one), choose the threshold on validation, measure on the labelled test images."""
    warnings: list[str] = []
    items = read_dataset(Path(dataset))
    normal = [it for it in items if it.split == "train" and it.is_anomalous is not True]
    if not normal:
        raise DataError(dataset, "no normal training images (expected train/good)")
    train, val = train_val_split(normal + [it for it in items if it.split == "val"], val_fraction, seed=0)
    test_items = [it for it in (read_dataset(Path(test)) if test else items) if it.split == "test"]
    if not test_items:
        raise DataError(test or dataset, "no test images (expected test/<class>/)")
    n_overlap = check_overlap(train + val, test_items, allow_overlap, warnings, test or dataset)
    eng = get_engine(engine)(device=device, **(params or {}))
    log.info("%s on %s: %d training, %d validation, %d test images, device %s", engine, dataset, len(train), len(val),
             len(test_items), eng.device)

    t0 = time.perf_counter()
    eng.fit(train, logging_context(log, "fit"))
    _sync(eng)
    fit_s = time.perf_counter() - t0
    thr, source = _validation_threshold(eng, val, train)
    t1 = time.perf_counter()
    results = eng.score(test_items, logging_context(log, "score"))
    _sync(eng)
    score_s = time.perf_counter() - t1

    ok, n_unlabelled = [], 0
    for it, r in zip(test_items, results):
        if r.score is None or not math.isfinite(float(r.score)):
            why = r.error or f"non-finite score {r.score}"
            warnings.append(f"{it.path}: not scored ({why}); left out of every metric")
        elif it.is_anomalous is None:
            n_unlabelled += 1
        else:
            ok.append((it, r))
    if n_unlabelled:
        warnings.append(f"{n_unlabelled} unlabelled test image(s) scored but left out of every metric")
    labels = [int(bool(it.is_anomalous)) for it, _ in ok]
    scores = [float(r.score) for _, r in ok]
    f1, f1_thr = f1_max(labels, scores)
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
        "f1_max_threshold": f1_thr,
        "threshold": thr,
        "threshold_source": source,
        "confusion": confusion(labels, [v >= thr for v in scores]) if ok else None,
        "fit_seconds": round(fit_s, 3),
        "items_per_second": round(len(test_items) / score_s, 3) if score_s > 0 else None,
        "n_train": len(train),
        "n_val": len(val),
        "n_test": len(test_items),
        "n_measured": len(ok),
        "n_unlabelled": n_unlabelled,
        "n_not_scored": len(test_items) - len(ok) - n_unlabelled,
        "n_overlap": n_overlap,
        "engine": engine,
        "device": str(eng.device),
        "n_pixel_masks": sum(1 for m in masks if m is not None and m.any()),
        "pixel_gt": PIXEL_GT_RULE if has_defect_mask else None,
        "warnings": warnings,
        "params": eng.describe()["params"],
    }
    if save_model is not None:
        eng.stats.update({"threshold": thr, "min_area": 0.0, "threshold_method": source})
        out["model_path"] = str(eng.save(save_model))
    return out


def _validation_threshold(eng: Any, val: list[DatasetItem], train: list[DatasetItem]) -> tuple[float, str]:
    """The threshold from the validation images (the run pipeline's rule, `core.run_metrics`); with none,
    from the training images themselves (seen in fitting: a low threshold, and said so)."""
    from anomaly_gui.core.run_metrics import threshold_from_values

    calib, where = (val, "validation") if val else (train, "training images (no validation image to hold out)")
    res = eng.score(calib, logging_context(log, "validation"))
    values = np.array([np.nan if r.score is None else float(r.score) for r in res])
    labels = np.array([-1 if it.is_anomalous is None else int(bool(it.is_anomalous)) for it in calib])
    t, how = threshold_from_values(values, labels)
    return t, f"{how} ({where})" if val else f"{how.replace('validation', 'training')} ({where})"


def _sync(eng: Any) -> None:
    import torch

    if getattr(eng, "device", None) is not None and eng.device.type == "cuda":
        torch.cuda.synchronize(eng.device)
