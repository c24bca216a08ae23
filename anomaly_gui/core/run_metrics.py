"""Threshold choice and metrics of a scored run, computed from the run's cache (never re-running a model).

Decision rule (the app's convention, `core.postprocess`): an item is anomalous at (threshold t, min area a)
when a region of its raw map at or above t has at least area a. For each item, `critical_threshold(map, a)`
is the largest t at which it is anomalous, so for a fixed a every verdict is one comparison, and the
threshold choice and the image metrics work on these per-item values. Items without a map (embedding,
detection engines) use their image score.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from anomaly_gui.core.metrics import auroc, confusion, f1_max
from anomaly_gui.core.postprocess import critical_threshold
from anomaly_gui.core.project import Project, Score

PIXEL_MAX_SIDE = 256  # maps and masks are compared at most at this size (pixel AUROC / AUPRO)


def _image_size(score: Score) -> tuple[int, int] | None:
    size = score.extra.get("image_size")
    return (int(size[0]), int(size[1])) if size else None


def critical_values(project: Project, run_id: int, item_ids: Sequence[int], min_area: float,
                    use_maps: bool = True) -> np.ndarray:
    """Per item: the largest threshold at which it is anomalous at `min_area` (NaN when not scored).
    `use_maps=False`: the item's own score (a video frame's score, which the player compares with its threshold)."""
    scores = project.scores(run_id)
    out = np.full(len(item_ids), np.nan)
    for k, item_id in enumerate(item_ids):
        sc = scores.get(int(item_id))
        if sc is None:
            continue
        m = project.score_map(run_id, int(item_id)) if sc.map_path and use_maps else None
        if m is not None:
            out[k] = critical_threshold(m, min_area, _image_size(sc))
        elif sc.score is not None:
            out[k] = float(sc.score)
    return out


def threshold_from_values(values: np.ndarray, labels: np.ndarray) -> tuple[float, str]:
    """The threshold rule of `core.thresholds` on per-item values: best F1 when labelled anomalies exist,
    otherwise just above every normal item's value. `labels`: 1 anomalous, 0 normal, -1 unknown."""
    from anomaly_gui.core.thresholds import pick_threshold_from_scores

    ok = np.isfinite(values)
    if not ok.any():
        raise ValueError("no scored validation items to choose a threshold from")
    lab = [None if v < 0 else int(v) for v in labels[ok]]
    choice = pick_threshold_from_scores(values[ok], lab)
    how = {"f1": "best F1 on validation", "normal_max": "above every normal validation item"}.get(choice.method, choice.method)
    return float(choice.threshold), how


def choose_threshold(project: Project, run_id: int, min_area: float = 0.0) -> tuple[float, str]:
    """The run's threshold for `min_area` from its validation items; never from test items.

    Without validation items (a single training item) the training items themselves are used (the model
    has seen them, so the threshold is low, and the method says so)."""
    t, how, _ = choose_threshold_with_source(project, run_id, min_area)
    return t, how


def choose_threshold_with_source(project: Project, run_id: int, min_area: float = 0.0,
                                 use_maps: bool = True) -> tuple[float, str, str]:
    """(threshold, method, source) where source is "validation" or "training" (see `choose_threshold`).
    `use_maps=False` chooses on the items' scores instead of their maps: `frame_threshold`."""
    from anomaly_gui.core.run_files import run_split

    split = run_split(project, run_id)
    scored = project.scores(run_id)
    ids = [i for i in split["val"] if i in scored]
    source = "validation"
    if not ids:  # a run from before split files: the items of split 'val' it scored
        ids = [i for i in scored if i not in split["train"] and project.item(i).split == "val"]
    if not ids:
        ids = [i for i in split["train"] if i in scored]
        source = "training"
    if not ids:
        raise ValueError(f"run {run_id} has no scored validation or training items to choose a threshold from")
    items = {it.id: it for it in project.items(ids=ids)}
    labels = np.asarray([_label(items[i].is_anomalous) for i in ids])
    t, how = threshold_from_values(critical_values(project, run_id, ids, min_area, use_maps), labels)
    if source == "training":
        how = how.replace("validation", "training") + " (no validation items: scored after fitting on them)"
    return t, how, source


def frame_threshold(project: Project, run_id: int) -> tuple[float, str, str]:
    """The threshold on a video run's frame scores, by the same rule on the same validation (else training) frames.
    The run's own threshold is chosen on its maps' values, another unit (a frame score is in dB by default).
    Without validation items, an engine that measured its training clips as unseen ones (each against a memory
    without it: `frame_threshold_training` in the run's metrics) gives the threshold: the stored training scores
    are lower, the model has their patches."""
    t, how, source = choose_threshold_with_source(project, run_id, 0.0, use_maps=False)
    unseen = project.run(run_id).metrics.get("frame_threshold_training") if source == "training" else None
    if unseen is not None:
        return (float(unseen), "above every normal training frame, each training clip scored as an unseen one "
                               "(no validation items)", source)
    return t, how, source


def run_frame_threshold(project: Project, run: Any) -> float | None:
    """The threshold the video player flags a run's frames with: stored with the run's metrics, else (a video run
    from before it was stored) computed by `frame_threshold`; None for other runs and when no validation or
    training frames were scored."""
    from anomaly_gui.core.protocol import Task

    value = run.metrics.get("frame_threshold")
    if value is not None:
        return float(value)
    if run.task != Task.VIDEO.value:
        return None
    try:
        return frame_threshold(project, run.id)[0]
    except ValueError:
        return None


def _label(flag: bool | None) -> int:
    return -1 if flag is None else int(bool(flag))


def test_item_ids(project: Project, run_id: int) -> list[int]:
    """The run's test items: those it scored but was neither fitted nor validated on. A run without a split
    record (older projects) measures its items of split `test`, or all it scored when there are none."""
    from anomaly_gui.core.run_files import run_split

    split = run_split(project, run_id)
    scored = project.scores(run_id)
    fitted = set(split["train"]) | set(split["val"])
    if fitted:
        return [i for i in scored if i not in fitted]
    tests = [int(it.id) for it in project.items(ids=list(scored)) if it.split == "test"]
    return tests or list(scored)


def image_metrics(labels: Sequence[int] | np.ndarray, scores: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """image_auroc, f1_max (with its threshold: an oracle figure, never used to decide) and average
    precision of image scores; empty without both classes."""
    from sklearn.metrics import average_precision_score

    y = np.asarray(labels, np.int64)
    s = np.asarray(scores, np.float64)
    if not len(y) or not 0 < y.sum() < len(y):
        return {}
    f1, f1_thr = f1_max(y, s)
    return {"image_auroc": auroc(y, s), "f1_max": f1, "f1_max_threshold": f1_thr,
            "average_precision": float(average_precision_score(y, s))}


def evaluate_run(project: Project, run_id: int, threshold: float | None, min_area: float = 0.0,
                 truth: dict[int, bool | None] | None = None) -> dict[str, Any]:
    """The metrics of a run, on its test items (`test_item_ids`); the GUI, the report and the CLI's
    equality test read these. One implementation: everything that prints a run's figure calls it.

    Ground truth is the dataset's labels, or `truth` ({item id: anomalous?}, e.g. the analyst's labels).
    Items without a label, or with a non-finite score, are left out and counted (`n_unlabelled`,
    `n_not_scored`). image_auroc / f1_max / average_precision from the image scores; pixel_auroc and
    aupro where masks exist (a normal item counts as an empty mask; an anomalous item without a mask is
    left out); confusion counts at (threshold, min_area); the same against the analyst's verdicts.
    """
    scored = project.scores(run_id)
    ids = test_item_ids(project, run_id)
    items = project.items(ids=ids)
    label = (lambda it: truth.get(int(it.id))) if truth is not None else (lambda it: it.is_anomalous)  # noqa: E731
    finite = [it for it in items if scored[int(it.id)].score is not None and np.isfinite(scored[int(it.id)].score)]
    known = [it for it in finite if label(it) is not None]
    out: dict[str, Any] = {"n_test": len(items), "n_measured": len(known), "n_unlabelled": len(finite) - len(known),
                           "n_not_scored": len(items) - len(finite)}
    if known:
        y = np.asarray([int(bool(label(it))) for it in known])
        s = np.asarray([float(scored[int(it.id)].score) for it in known])
        out.update(image_metrics(y, s))
        if threshold is not None:
            crit = critical_values(project, run_id, [int(it.id) for it in known], min_area)
            out["confusion"] = confusion(y, np.nan_to_num(crit, nan=-np.inf) >= threshold)
    verdicts = project.verdicts()
    judged = [it for it in items if verdicts.get(int(it.id)) and verdicts[int(it.id)].verdict in ("normal", "anomalous")]
    if judged and threshold is not None:
        y = np.asarray([verdicts[int(it.id)].verdict == "anomalous" for it in judged])
        crit = critical_values(project, run_id, [int(it.id) for it in judged], min_area)
        out["confusion_vs_analyst"] = confusion(y, np.nan_to_num(crit, nan=-np.inf) >= threshold)
    if truth is None:
        out.update(pixel_metrics(project, run_id, [it for it in known if scored[int(it.id)].map_path]))
    return out


def metric_warnings(metrics: dict[str, Any], threshold_source: str) -> list[str]:
    """The named warnings of a run's figures (for its log): what was left out, and a threshold that could
    not come from validation items."""
    out = []
    if metrics.get("n_unlabelled"):
        out.append(f"{metrics['n_unlabelled']} unlabelled test item(s) scored but left out of every metric")
    if metrics.get("n_not_scored"):
        out.append(f"{metrics['n_not_scored']} test item(s) without a finite score left out of every metric")
    if threshold_source == "training":
        out.append("no validation items: the threshold was chosen on the training items (seen in fitting, so low)")
    return out


def pixel_metrics(project: Project, run_id: int, items: Sequence[Any]) -> dict[str, Any]:
    """pixel_auroc and aupro over items with a usable mask (normal items: an empty mask), maps at most
    `PIXEL_MAX_SIDE` on a side; masks shrunk keeping every defect pixel (`PIXEL_GT_RULE`)."""
    from anomaly_gui.core.imageio import read_image
    from anomaly_gui.core.metrics.segmentation import PIXEL_GT_RULE, align_mask, aupro, pixel_auroc
    from anomaly_gui.core.postprocess import resize_map

    maps, masks = [], []
    for it in items:
        if it.is_anomalous and not it.mask_path:
            continue
        m = project.score_map(run_id, int(it.id))
        if m is None:
            continue
        h, w = m.shape
        f = min(1.0, PIXEL_MAX_SIDE / max(h, w))
        size = (max(1, round(w * f)), max(1, round(h * f)))
        gt_small = align_mask(read_image(it.mask_path), (size[1], size[0])) if it.mask_path else np.zeros((size[1], size[0]), bool)
        maps.append(resize_map(m, size))
        masks.append(gt_small)
    if not masks or not any(mk.any() for mk in masks):
        return {}
    return {"pixel_auroc": pixel_auroc(maps, masks, max_pixels=4_000_000), "aupro": aupro(maps, masks),
            "pixel_gt": PIXEL_GT_RULE}
