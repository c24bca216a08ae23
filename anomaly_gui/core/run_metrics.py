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


def critical_values(project: Project, run_id: int, item_ids: Sequence[int], min_area: float) -> np.ndarray:
    """Per item: the largest threshold at which it is anomalous at `min_area` (NaN when not scored)."""
    scores = project.scores(run_id)
    out = np.full(len(item_ids), np.nan)
    for k, item_id in enumerate(item_ids):
        sc = scores.get(int(item_id))
        if sc is None:
            continue
        m = project.score_map(run_id, int(item_id)) if sc.map_path else None
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
    """The run's threshold for `min_area` from its validation items (its training items when it has none)."""
    from anomaly_gui.core.run_files import run_split

    split = run_split(project, run_id)
    scored = project.scores(run_id)
    ids = [i for i in split["val"] if i in scored]
    source = "validation"
    if not ids:
        ids = [i for i in scored if project.item(i).split == "val"]
    if not ids:
        ids = list(scored)
        source = "all scored items"
    if not ids:
        raise ValueError(f"run {run_id} has no scores to choose a threshold from")
    items = {it.id: it for it in project.items(ids=ids)}
    labels = np.asarray([_label(items[i].is_anomalous) for i in ids])
    if source != "validation":
        labels = np.where(labels == 1, 1, 0)
    t, how = threshold_from_values(critical_values(project, run_id, ids, min_area), labels)
    return t, how if source == "validation" else f"{how} ({source})"


def _label(flag: bool | None) -> int:
    return -1 if flag is None else int(bool(flag))


def evaluate_run(project: Project, run_id: int, threshold: float, min_area: float = 0.0) -> dict[str, Any]:
    """Metrics on the run's test items (scored items it was neither fitted nor validated on).

    image_auroc and f1_max from the image scores; pixel_auroc and aupro where masks exist (a normal item
    counts as an empty mask; an anomalous item without a mask is left out); confusion counts at
    (threshold, min_area); the same counts against the analyst's verdicts when there are any.
    """
    from anomaly_gui.core.run_files import run_split

    split = run_split(project, run_id)
    scored = project.scores(run_id)
    fitted = set(split["train"]) | set(split["val"])
    items = [it for it in project.items(ids=list(scored)) if it.id not in fitted]
    out: dict[str, Any] = {"n_test": len(items)}
    known = [it for it in items if it.is_anomalous is not None and scored[int(it.id)].score is not None]
    if known:
        y = np.asarray([int(bool(it.is_anomalous)) for it in known])
        s = np.asarray([float(scored[int(it.id)].score) for it in known])
        out["image_auroc"] = auroc(y, s)
        out["f1_max"] = f1_max(y, s)[0]
        crit = critical_values(project, run_id, [int(it.id) for it in known], min_area)
        out["confusion"] = confusion(y, np.nan_to_num(crit, nan=-np.inf) >= threshold)
    verdicts = project.verdicts()
    judged = [it for it in items if verdicts.get(int(it.id)) and verdicts[int(it.id)].verdict in ("normal", "anomalous")]
    if judged:
        y = np.asarray([verdicts[int(it.id)].verdict == "anomalous" for it in judged])
        crit = critical_values(project, run_id, [int(it.id) for it in judged], min_area)
        out["confusion_vs_analyst"] = confusion(y, np.nan_to_num(crit, nan=-np.inf) >= threshold)
    pix = pixel_metrics(project, run_id, [it for it in known if scored[int(it.id)].map_path])
    out.update(pix)
    return out


def pixel_metrics(project: Project, run_id: int, items: Sequence[Any]) -> dict[str, Any]:
    """pixel_auroc and aupro over items with a usable mask (normal items: an empty mask)."""
    from anomaly_gui.core.imageio import read_image
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
        if it.mask_path:
            gt = read_image(it.mask_path)
            gt = gt[..., 0] if gt.ndim == 3 else gt
            gt_small = resize_map((gt > 0).astype(np.float32), size) >= 0.5
        else:
            gt_small = np.zeros((size[1], size[0]), bool)
        maps.append(resize_map(m, size))
        masks.append(gt_small)
    if not masks or not any(mk.any() for mk in masks):
        return {}
    return {"pixel_auroc": pixel_auroc(masks, maps), "aupro": aupro(masks, maps)}


def pixel_auroc(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray], max_pixels: int = 4_000_000) -> float | None:
    """ROC AUC over all pixels pooled (sub-sampled evenly above `max_pixels`)."""
    y = np.concatenate([np.asarray(m, bool).ravel() for m in masks])
    s = np.concatenate([np.asarray(m, np.float32).ravel() for m in maps])
    step = max(1, y.size // max_pixels)
    return auroc(y[::step], s[::step])


def aupro(masks: Sequence[np.ndarray], maps: Sequence[np.ndarray], fpr_limit: float = 0.3) -> float | None:
    """Area under the per-region-overlap curve up to `fpr_limit` false-positive rate, normalised to [0, 1].

    PRO at a threshold is the mean over ground-truth regions (8-connected components) of the fraction of
    the region above the threshold; FPR counts normal pixels above it (MVTec AD's AUPRO).
    """
    import cv2

    weights, normal, scores = [], [], []
    n_regions = 0
    labelled = []
    for mk, mp in zip(masks, maps):
        n, lab = cv2.connectedComponents(np.asarray(mk, np.uint8), connectivity=8)
        labelled.append((n, lab, np.asarray(mp, np.float32)))
        n_regions += n - 1
    if n_regions == 0:
        return None
    for n, lab, mp in labelled:
        lab = lab.ravel()
        sizes = np.bincount(lab, minlength=n).astype(np.float64)
        w = np.where(lab > 0, 1.0 / (sizes[lab] * n_regions), 0.0)
        weights.append(w)
        normal.append(lab == 0)
        scores.append(mp.ravel())
    s = np.concatenate(scores)
    order = np.argsort(-s, kind="stable")
    s = s[order]
    w = np.concatenate(weights)[order]
    nrm = np.concatenate(normal)[order]
    n_normal = max(int(nrm.sum()), 1)
    pro = np.cumsum(w)
    fpr = np.cumsum(nrm) / n_normal
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]  # one point per distinct threshold
    fpr, pro = np.r_[0.0, fpr[last]], np.r_[0.0, pro[last]]
    keep = fpr <= fpr_limit
    x, y = fpr[keep], pro[keep]
    k = int(keep.sum())
    if k < len(fpr):  # close the curve exactly at the limit
        x0, x1, y0, y1 = fpr[k - 1], fpr[k], pro[k - 1], pro[k]
        y_lim = y0 + (y1 - y0) * (fpr_limit - x0) / max(x1 - x0, 1e-12)
        x, y = np.r_[x, fpr_limit], np.r_[y, y_lim]
    return float(np.trapezoid(y, x) / fpr_limit)
