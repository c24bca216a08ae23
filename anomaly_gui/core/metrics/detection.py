"""Detection metrics: COCO-style mean average precision (101-point interpolation).

Follows pycocotools' COCOeval for bounding boxes (area range "all", up to `max_dets` detections per
image): detections are matched greedily by descending confidence to the unmatched ground-truth box of
the same class with the highest IoU at or above the threshold; precision is made monotone and sampled
at 101 recall points; classes without ground truth are left out of the mean. Checked against
pycocotools in `tests/test_detection_metrics.py`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


@dataclass
class Boxes:
    """Boxes of one image: xyxy (n, 4) pixel coordinates, class labels and (for detections) scores."""

    xyxy: np.ndarray
    labels: list[str]
    scores: np.ndarray | None = None

    @classmethod
    def from_annotations(cls, anns: Sequence[Any], with_scores: bool = False) -> "Boxes":
        boxes = [a for a in anns if a.kind == "box"]
        xyxy = np.array([a.box() for a in boxes], dtype=np.float64).reshape(-1, 4)
        scores = np.array([1.0 if a.score is None else a.score for a in boxes], dtype=np.float64) if with_scores else None
        return cls(xyxy, [a.label for a in boxes], scores)


@dataclass
class MapResult:
    map50: float | None
    map50_95: float | None
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)  # {label: {ap50, ap50_95, n_gt}}

    def as_dict(self) -> dict[str, Any]:
        return {"map50": self.map50, "map50_95": self.map50_95, "per_class": self.per_class}


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of xyxy boxes (COCO convention: width = x2 - x1, no +1)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _match(ious: np.ndarray, thr: float) -> np.ndarray:
    """For detections (rows, sorted by score) flag those matched to a ground-truth box at `thr`."""
    n_det, n_gt = ious.shape
    tp = np.zeros(n_det, dtype=bool)
    taken = np.zeros(n_gt, dtype=bool)
    limit = min(thr, 1 - 1e-10)
    for d in range(n_det):
        best, m = limit, -1
        for g in range(n_gt):
            if taken[g] or ious[d, g] < best:
                continue
            best, m = ious[d, g], g
        if m >= 0:
            taken[m] = True
            tp[d] = True
    return tp


def _ap(tp: np.ndarray, scores: np.ndarray, n_gt: int) -> float:
    order = np.argsort(-scores, kind="mergesort")
    tp = tp[order]
    tps = np.cumsum(tp, dtype=np.float64)
    fps = np.cumsum(~tp, dtype=np.float64)
    recall = tps / n_gt
    precision = tps / np.maximum(tps + fps, np.spacing(1))
    precision = np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision
    idx = np.searchsorted(recall, RECALL_POINTS, side="left")
    q = np.zeros(len(RECALL_POINTS))
    ok = idx < len(precision)
    q[ok] = precision[idx[ok]]
    return float(q.mean())


def mean_average_precision(
    ground_truth: Sequence[Boxes], detections: Sequence[Boxes], max_dets: int = 100
) -> MapResult:
    """mAP@0.5 and mAP@0.5:0.95 over images (lists in the same order) and classes."""
    if len(ground_truth) != len(detections):
        raise ValueError(f"{len(ground_truth)} ground-truth images but {len(detections)} detection images")
    classes = sorted({c for g in ground_truth for c in g.labels})
    # per class, per threshold: concatenated tp flags and scores over images
    per_class: dict[str, dict[str, float]] = {}
    ap_table = []
    for cls in classes:
        scores_all: list[np.ndarray] = []
        tp_all: list[list[np.ndarray]] = [[] for _ in IOU_THRESHOLDS]
        n_gt = 0
        for gt, det in zip(ground_truth, detections):
            g = gt.xyxy[np.array([lab == cls for lab in gt.labels], dtype=bool)] if gt.labels else np.zeros((0, 4))
            dmask = np.array([lab == cls for lab in det.labels], dtype=bool) if det.labels else np.zeros(0, bool)
            d = det.xyxy[dmask] if len(dmask) else np.zeros((0, 4))
            s = (det.scores[dmask] if det.scores is not None else np.ones(len(d))) if len(dmask) else np.zeros(0)
            n_gt += len(g)
            order = np.argsort(-s, kind="mergesort")[:max_dets]
            d, s = d[order], s[order]
            scores_all.append(s)
            ious = box_iou(d, g)
            for k, thr in enumerate(IOU_THRESHOLDS):
                tp_all[k].append(_match(ious, float(thr)) if len(g) else np.zeros(len(d), dtype=bool))
        scores = np.concatenate(scores_all) if scores_all else np.zeros(0)
        aps = np.array([_ap(np.concatenate(tp_all[k]), scores, n_gt) for k in range(len(IOU_THRESHOLDS))])
        ap_table.append(aps)
        per_class[cls] = {"ap50": float(aps[0]), "ap50_95": float(aps.mean()), "n_gt": int(n_gt)}
    if not ap_table:
        return MapResult(None, None, {})
    table = np.stack(ap_table)
    return MapResult(float(table[:, 0].mean()), float(table.mean()), per_class)


def map_from_items(gt_items: Sequence[Any], pred_boxes: Sequence[Sequence[Any]]) -> MapResult:
    """mAP of `pred_boxes` (Annotation lists, one per item) against the items' imported/user boxes."""
    gts = [Boxes.from_annotations([a for a in it.annotations if a.source != "model"]) for it in gt_items]
    dets = [Boxes.from_annotations(list(p), with_scores=True) for p in pred_boxes]
    return mean_average_precision(gts, dets)
