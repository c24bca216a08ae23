"""Evaluator for video engines: train on a UCSD-layout `Train/`, score `Test/` (or `--test OTHER`), report
frame-level AUC (labels from `Test/frame_gt.json` or the dataset's `.m` file) both per-clip normalised
(`frame_auc`, the papers' convention, labelled as such) and raw (`frame_auc_raw`, deployable), pixel AUROC
and the UCSD pixel criterion where masks exist. Reader warnings, unlabelled and unscored frames are named
in `warnings` and counted."""
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
from anomaly_gui.engines.base import Task, get_engine
from anomaly_gui.evaluation import logging_context, register_evaluator
from anomaly_gui.evaluation.checks import check_overlap

log = logging.getLogger(__name__)


def read_split(root: Path, split: str, problems: list[str] | None = None) -> list[DatasetItem]:
    """Items of one split: a UCSD-layout folder (through the `frames` format reader when installed), a
    folder of video files, or one video file. What the readers warn about (a `.m` file whose entry count
    does not match the clips ...) is appended to `problems`."""
    root = Path(root)
    if root.is_file() and is_video_file(root):
        return [DatasetItem(path=str(root), split=split, kind="video")]
    if not root.exists():
        raise DataError(root, "dataset not found")
    if root.is_dir() and not (root / split.capitalize()).is_dir():
        videos = sorted(p for p in root.iterdir() if is_video_file(p))
        if videos:
            return [DatasetItem(path=str(p), split=split, kind="video") for p in videos]
    items = _read_with_format(root, split, problems)
    return items if items else scan_ucsd(root, split, problems)


def _read_with_format(root: Path, split: str, problems: list[str] | None = None) -> list[DatasetItem]:
    from anomaly_gui.core.formats.base import get_format

    try:
        reader = get_format("frames")
    except KeyError:
        return []
    if not reader.detect(root):
        return []
    res = reader.read(root)
    items = [it for it in res.items if it.kind == "frame" and it.split == split]
    if problems is not None and items:
        problems.extend(str(p) for p in res.problems)
    return items


@register_evaluator(Task.VIDEO)
def evaluate_video(dataset: Path, engine: str, test: Path | None = None, device: str = "auto",
                   params: dict[str, Any] | None = None, save_model: Path | None = None,
                   allow_overlap: bool = False) -> dict[str, Any]:
    """Fit `engine` on the normal training clips and score the test clips."""
    warnings: list[str] = []
    train = read_split(Path(dataset), "train", warnings)
    test_items = read_split(Path(test) if test else Path(dataset), "test", warnings)
    n_overlap = check_overlap(train, test_items, allow_overlap, warnings, test or dataset)
    eng = get_engine(engine)(params=params or {}, device=device)
    t0 = time.perf_counter()
    eng.fit(train, logging_context(log, "fit"))
    fit_seconds = time.perf_counter() - t0
    if save_model:
        eng.save(save_model)
    out = measure(eng, test_items, warnings)
    out.update({"engine": engine, "n_train": len(train), "fit_seconds": round(fit_seconds, 3), "n_overlap": n_overlap})
    return out


FRAME_AUC_NOTE = ("per-clip min-max normalised (Hasan et al. 2016): uses each test clip's own minimum and maximum, "
                  "a statistic of the test clip no deployment has; frame_auc_raw uses none")


def frame_auc_figures(labels: list[np.ndarray], normalised: list[np.ndarray], raw: list[np.ndarray]) -> dict[str, Any]:
    """`frame_auc` (scores normalised per clip, labelled as such) and `frame_auc_raw` (the raw frame errors:
    deployable) side by side, with the EER of each; per clip: labels and both score series."""
    from anomaly_gui.core.metrics.video import equal_error_rate, frame_auc

    return {"frame_auc": frame_auc(labels, normalised), "frame_auc_raw": frame_auc(labels, raw),
            "frame_auc_normalisation": FRAME_AUC_NOTE,
            "frame_eer": equal_error_rate(np.concatenate(labels), np.concatenate(normalised)) if labels else None,
            "frame_eer_raw": equal_error_rate(np.concatenate(labels), np.concatenate(raw)) if labels else None}


def measure(eng: Any, test_items: list[DatasetItem], warnings: list[str] | None = None) -> dict[str, Any]:
    """Score `test_items` with a fitted video engine and compute every figure the labels and masks allow.

    Frames without a label (a partly labelled clip) are scored but left out of every metric and counted;
    frames whose error is not finite likewise (`warnings` names them)."""
    from anomaly_gui.core.metrics.segmentation import pixel_auroc
    from anomaly_gui.core.metrics.video import per_clip_minmax, ucsd_pixel_auc
    from anomaly_gui.core.postprocess import resize_map

    warnings = [] if warnings is None else warnings
    clips = clips_from_items(test_items)
    t1 = time.perf_counter()
    results = [eng.score_clip(c, logging_context(log, "score")) for c in clips]
    score_seconds = time.perf_counter() - t1
    n_test = int(sum(len(r.scores) for r in results))
    raw_thr = eng.stats.get("raw_threshold")
    out: dict[str, Any] = {
        "engine": eng.name, "device": str(eng.device), "n_train": eng.stats.get("n_train_frames"), "n_test": n_test,
        "fit_seconds": eng.stats.get("fit_seconds"), "items_per_second": round(n_test / max(score_seconds, 1e-9), 2),
        "frame_auc": None, "frame_auc_raw": None, "frame_auc_normalisation": FRAME_AUC_NOTE, "frame_eer": None,
        "pixel_auroc": None, "pixel_auc_ucsd": None, "pixel_eer_ucsd": None,
        "threshold": raw_thr,
        "threshold_source": "99th percentile of the frame errors of the normal training clips (stats.raw_threshold); "
                            "no test clip used",
    }
    ys, norm, raw, n_unlabelled, n_bad = [], [], [], 0, 0
    masks, flat_y = [], []
    for c, r in zip(clips, results):
        n = len(r.scores)
        if c.labels is None:
            n_unlabelled += n
            continue
        use = c.known[:n] & np.isfinite(r.errors[:n]) & np.isfinite(r.scores[:n])
        n_unlabelled += int((~c.known[:n]).sum())
        bad = int((c.known[:n] & ~use).sum())
        if bad:
            n_bad += bad
            warnings.append(f"{c.name}: {bad} frame(s) with a non-finite score left out of every metric")
        if not use.any():
            continue
        ys.append(c.labels[:n][use])
        norm.append(per_clip_minmax(r.errors[:n])[use])  # per clip, whatever `normalise` says
        raw.append(r.errors[:n][use])
        for i in np.flatnonzero(use):
            mp = c.mask_paths[i] if i < len(c.mask_paths) else None
            full = read_mask(mp) if mp else None
            if full is not None:
                masks.append((full, resize_map(r.maps[i], (full.shape[1], full.shape[0]))))
            if any(c.mask_paths):
                flat_y.append((bool(c.labels[i]), full, r.maps[i]))
    if n_unlabelled:
        warnings.append(f"{n_unlabelled} test frame(s) without a label scored but left out of every metric")
    if ys:
        out.update(frame_auc_figures(ys, norm, raw))
    if masks:
        small = [(m[::2, ::2], a[::2, ::2]) for m, a in masks]  # every 2nd pixel: same curve, 4x less memory
        out["pixel_auroc"] = pixel_auroc([a for _, a in small], [m for m, _ in small], max_pixels=4_000_000)
        lab = np.array([y for y, _, _ in flat_y])
        mk = [m for _, m, _ in flat_y]
        mp = [resize_map(a, (m.shape[1], m.shape[0])) if m is not None else a for _, m, a in flat_y]
        out["pixel_auc_ucsd"], out["pixel_eer_ucsd"] = ucsd_pixel_auc(lab, mk, mp)
    out.update({"n_measured": int(sum(len(y) for y in ys)), "n_unlabelled": n_unlabelled, "n_not_scored": n_bad,
                "warnings": warnings})
    out["params"] = eng.describe()["params"]
    out["final_loss"] = eng.stats.get("loss_history", [None])[-1]
    return out
