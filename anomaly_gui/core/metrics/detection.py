"""Detection metrics: COCO-style mean average precision (101-point interpolation).

Follows pycocotools' COCOeval for bounding boxes (area range "all", up to `max_dets` detections per
image): detections are matched greedily by descending confidence to the unmatched ground-truth box of
the same class with the highest IoU at or above the threshold; precision is made monotone and sampled
at 101 recall points; classes without ground truth are left out of the mean. Checked against
pycocotools in `tests/test_detection_metrics.py` and `tests/test_evaluation_trust.py`.

Ground truth (`ground_truth_boxes`): boxes, polygons and masks all count, as their bounding box (a box
detector is judged against the object's extent, as COCO's own `bbox` of a polygon is). Ignored objects,
COCO `iscrowd` and Pascal VOC `difficult` (flags in the annotation geometry), are neither true nor false
positives: they are not counted in recall, and a detection that matches one only (IoU, or for a crowd
region the fraction of the detection inside it, as pycocotools) is left out.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


#: annotation kinds that are objects for a box detector (each counts as its bounding box)
OBJECT_KINDS = ("box", "polygon", "mask")


def object_box(ann: Any) -> tuple[float, float, float, float] | None:
    """xyxy bounding box of a box, polygon or mask annotation; None for other kinds or an empty mask."""
    if ann.kind in ("box", "polygon"):
        return ann.box()
    if ann.kind == "mask":
        bbox = ann.geometry.get("bbox")
        if bbox and bbox[2] > bbox[0] and bbox[3] > bbox[1]:
            return tuple(float(v) for v in bbox)  # type: ignore[return-value]
    return None


def is_ignored(ann: Any) -> bool:
    """COCO `iscrowd` and VOC `difficult` objects: neither true nor false positives."""
    g = ann.geometry or {}
    return bool(g.get("iscrowd") or g.get("difficult"))


def is_crowd(ann: Any) -> bool:
    return bool((ann.geometry or {}).get("iscrowd"))


@dataclass
class Boxes:
    """Boxes of one image: xyxy (n, 4) pixel coordinates, class labels, (for detections) scores and (for
    ground truth) which ones are ignored, and which of those are crowd regions."""

    xyxy: np.ndarray
    labels: list[str]
    scores: np.ndarray | None = None
    ignore: np.ndarray | None = None
    crowd: np.ndarray | None = None

    @classmethod
    def from_annotations(cls, anns: Sequence[Any], with_scores: bool = False) -> "Boxes":
        objs = [(a, b) for a in anns if (b := object_box(a)) is not None]
        xyxy = np.array([b for _, b in objs], dtype=np.float64).reshape(-1, 4)
        scores = np.array([1.0 if a.score is None else a.score for a, _ in objs], dtype=np.float64) if with_scores else None
        return cls(xyxy, [a.label for a, _ in objs], scores,
                   np.array([is_ignored(a) for a, _ in objs], bool), np.array([is_crowd(a) for a, _ in objs], bool))


def ground_truth_boxes(anns: Sequence[Any]) -> Boxes:
    """The objects of an item's imported / user annotations (model boxes and rejected ones excluded)."""
    return Boxes.from_annotations([a for a in anns if a.source != "model" and getattr(a, "status", "") != "rejected"])


@dataclass
class MapResult:
    map50: float | None
    map50_95: float | None
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)  # {label: {ap50, ap50_95, n_gt}}

    def as_dict(self) -> dict[str, Any]:
        return {"map50": self.map50, "map50_95": self.map50_95, "per_class": self.per_class}


def box_iou(a: np.ndarray, b: np.ndarray, crowd: np.ndarray | None = None) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of xyxy boxes (COCO convention: width = x2 - x1, no +1); for a crowd
    box in `b` the intersection over the area of the `a` box instead (pycocotools)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    union = area_a[:, None] + area_b[None, :] - inter
    if crowd is not None and np.any(crowd):
        union = np.where(np.asarray(crowd, bool)[None, :], area_a[:, None], union)
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _match(ious: np.ndarray, thr: float, ignore: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For detections (rows, sorted by score): (matched to a counted ground-truth box at `thr`, matched only
    to an ignored one). Ignored boxes come last and may take any number of detections (pycocotools)."""
    n_det, n_gt = ious.shape
    ign = np.zeros(n_gt, bool) if ignore is None else np.asarray(ignore, bool)
    tp = np.zeros(n_det, dtype=bool)
    skip = np.zeros(n_det, dtype=bool)
    taken = np.zeros(n_gt, dtype=bool)
    limit = min(thr, 1 - 1e-10)
    order = np.argsort(ign, kind="stable")  # counted boxes first
    for d in range(n_det):
        best, m = limit, -1
        for g in order:
            if taken[g] and not ign[g]:
                continue
            if m >= 0 and not ign[m] and ign[g]:
                break
            if ious[d, g] < best:
                continue
            best, m = ious[d, g], g
        if m >= 0:
            taken[m] = True
            if ign[m]:
                skip[d] = True
            else:
                tp[d] = True
    return tp, skip


def _ap(tp: np.ndarray, scores: np.ndarray, n_gt: int, skip: np.ndarray | None = None) -> float:
    order = np.argsort(-scores, kind="mergesort")
    if skip is not None:
        order = order[~skip[order]]
    if n_gt == 0:
        return 0.0
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
        skip_all: list[list[np.ndarray]] = [[] for _ in IOU_THRESHOLDS]
        n_gt = 0
        for gt, det in zip(ground_truth, detections):
            gsel = np.array([lab == cls for lab in gt.labels], dtype=bool) if gt.labels else np.zeros(0, bool)
            g = gt.xyxy[gsel] if len(gsel) else np.zeros((0, 4))
            g_ign = gt.ignore[gsel] if gt.ignore is not None and len(gsel) else np.zeros(len(g), bool)
            g_crowd = gt.crowd[gsel] if gt.crowd is not None and len(gsel) else np.zeros(len(g), bool)
            dmask = np.array([lab == cls for lab in det.labels], dtype=bool) if det.labels else np.zeros(0, bool)
            d = det.xyxy[dmask] if len(dmask) else np.zeros((0, 4))
            s = (det.scores[dmask] if det.scores is not None else np.ones(len(d))) if len(dmask) else np.zeros(0)
            n_gt += int((~g_ign).sum())
            order = np.argsort(-s, kind="mergesort")[:max_dets]
            d, s = d[order], s[order]
            scores_all.append(s)
            ious = box_iou(d, g, g_crowd)
            for k, thr in enumerate(IOU_THRESHOLDS):
                tp, skip = _match(ious, float(thr), g_ign) if len(g) else (np.zeros(len(d), bool), np.zeros(len(d), bool))
                tp_all[k].append(tp)
                skip_all[k].append(skip)
        if n_gt == 0:
            continue  # only ignored objects of this class: no AP (as pycocotools: -1, left out)
        scores = np.concatenate(scores_all) if scores_all else np.zeros(0)
        aps = np.array([_ap(np.concatenate(tp_all[k]), scores, n_gt, np.concatenate(skip_all[k]))
                        for k in range(len(IOU_THRESHOLDS))])
        ap_table.append(aps)
        per_class[cls] = {"ap50": float(aps[0]), "ap50_95": float(aps.mean()), "n_gt": int(n_gt)}
    if not ap_table:
        return MapResult(None, None, {})
    table = np.stack(ap_table)
    return MapResult(float(table[:, 0].mean()), float(table.mean()), per_class)


def map_from_items(gt_items: Sequence[Any], pred_boxes: Sequence[Sequence[Any]]) -> MapResult:
    """mAP of `pred_boxes` (Annotation lists, one per item) against the items' imported/user objects
    (`ground_truth_boxes`: boxes, polygons and masks as boxes; crowd / difficult ones ignored)."""
    gts = [ground_truth_boxes(it.annotations) for it in gt_items]
    dets = [Boxes.from_annotations(list(p), with_scores=True) for p in pred_boxes]
    return mean_average_precision(gts, dets)
