"""Evaluator for video engines: train on a UCSD-layout `Train/`, score `Test/` (or `--test OTHER`), report
frame-level AUC (from `Test/frame_gt.json`), pixel AUROC and the UCSD pixel criterion where masks exist."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.formats.base import DatasetItem
from anomaly_gui.core.video_io import (
    clips_from_items,
    is_video_file,
    read_mask,
    scan_ucsd,
)
from anomaly_gui.engines.base import RunContext, Task, get_engine
from anomaly_gui.evaluation import register_evaluator

log = logging.getLogger(__name__)


def read_split(root: Path, split: str) -> list[DatasetItem]:
    """Items of one split: a UCSD-layout folder (through the `frames` format reader when installed), a
    folder of video files, or one video file."""
    root = Path(root)
    if root.is_file() and is_video_file(root):
        return [DatasetItem(path=str(root), split=split, kind="video")]
    if not root.exists():
        raise DataError(root, "dataset not found")
    if root.is_dir() and not (root / split.capitalize()).is_dir():
        videos = sorted(p for p in root.iterdir() if is_video_file(p))
        if videos:
            return [DatasetItem(path=str(p), split=split, kind="video") for p in videos]
    items = _read_with_format(root, split)
    return items if items else scan_ucsd(root, split)


def _read_with_format(root: Path, split: str) -> list[DatasetItem]:
    from anomaly_gui.core.formats.base import get_format

    try:
        reader = get_format("frames")
    except KeyError:
        return []
    if not reader.detect(root):
        return []
    res = reader.read(root)
    return [it for it in res.items if it.kind == "frame" and it.split == split]


def _progress_to_log(prefix: str) -> RunContext:
    last = [0.0]

    def progress(done: int, total: int, msg: str) -> None:
        now = time.perf_counter()
        if now - last[0] > 5 or done >= total:
            last[0] = now
            log.info("%s %d/%d %s", prefix, done, total, msg)

    return RunContext(progress=progress, log=lambda e: log.info("%s %s", prefix, e))


@register_evaluator(Task.VIDEO)
def evaluate_video(dataset: Path, engine: str, test: Path | None = None, device: str = "auto",
                   params: dict[str, Any] | None = None, save_model: Path | None = None) -> dict[str, Any]:
    """Fit `engine` on the normal training clips and score the test clips."""
    train = read_split(Path(dataset), "train")
    test_items = read_split(Path(test) if test else Path(dataset), "test")
    eng = get_engine(engine)(params=params or {}, device=device)
    t0 = time.perf_counter()
    eng.fit(train, _progress_to_log("fit"))
    fit_seconds = time.perf_counter() - t0
    if save_model:
        eng.save(save_model)
    out = measure(eng, test_items)
    out.update({"engine": engine, "n_train": len(train), "fit_seconds": round(fit_seconds, 3)})
    return out


def measure(eng: Any, test_items: list[DatasetItem]) -> dict[str, Any]:
    """Score `test_items` with a fitted video engine and compute every figure the labels and masks allow."""
    from anomaly_gui.core.metrics.video import equal_error_rate, frame_auc, pixel_auroc, ucsd_pixel_auc
    from anomaly_gui.core.postprocess import resize_map

    clips = clips_from_items(test_items)
    t1 = time.perf_counter()
    results = [eng.score_clip(c, _progress_to_log("score")) for c in clips]
    score_seconds = time.perf_counter() - t1
    n_test = int(sum(len(r.scores) for r in results))
    out: dict[str, Any] = {
        "engine": eng.name, "device": str(eng.device), "n_train": eng.stats.get("n_train_frames"), "n_test": n_test,
        "fit_seconds": eng.stats.get("fit_seconds"), "items_per_second": round(n_test / max(score_seconds, 1e-9), 2),
        "frame_auc": None, "frame_auc_raw": None, "frame_eer": None, "pixel_auroc": None,
        "pixel_auc_ucsd": None, "pixel_eer_ucsd": None,
    }
    labelled = [(c, r) for c, r in zip(clips, results) if c.labels is not None]
    if labelled:
        ys = [c.labels[: len(r.scores)] for c, r in labelled]
        out["frame_auc"] = frame_auc(ys, [r.scores for _, r in labelled])
        out["frame_auc_raw"] = frame_auc(ys, [r.errors for _, r in labelled])  # without per-clip normalisation
        out["frame_eer"] = equal_error_rate(np.concatenate(ys), np.concatenate([r.scores for _, r in labelled]))
        masks, flat_y = [], []
        for c, r in labelled:
            if not any(c.mask_paths):
                continue
            for i, mp in enumerate(c.mask_paths[: len(r.scores)]):
                full = None
                if mp:
                    full = read_mask(mp)
                    full_size = (full.shape[1], full.shape[0])
                    masks.append((full, resize_map(r.maps[i], full_size)))
                flat_y.append((bool(c.labels[i]), full, r.maps[i]))
        if masks:
            small = [(m[::2, ::2], a[::2, ::2]) for m, a in masks]  # every 2nd pixel: same curve, 4x less memory
            out["pixel_auroc"] = pixel_auroc([m for m, _ in small], [a for _, a in small])
            lab = np.array([y for y, _, _ in flat_y])
            mk = [m for _, m, _ in flat_y]
            mp = [resize_map(a, (m.shape[1], m.shape[0])) if m is not None else a for _, m, a in flat_y]
            out["pixel_auc_ucsd"], out["pixel_eer_ucsd"] = ucsd_pixel_auc(lab, mk, mp)
    out["params"] = eng.describe()["params"]
    out["final_loss"] = eng.stats.get("loss_history", [None])[-1]
    return out
