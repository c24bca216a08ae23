"""Test-time views for detectors: detect on the image and on its flipped / 90-degree-rotated copies (the D4
symmetries: SAR scenes have no preferred orientation, so each is label-preserving), map the boxes back to the
image, and fuse them.

A view is (transpose, flip left-right, flip up-down), applied in that order. `VIEW_SETS` names the subsets the
engines offer (`tta`). Fusion (`fuse_variants`): boxes of one object from the variants are clustered (a box joins
the cluster whose box overlaps it most, at IoU >= `iou`, same label); `wbf` averages the cluster's boxes weighted
by score (weighted box fusion), `nms` keeps its strongest box; the score is `mean` (the sum of each variant's
best score over the number of variants: an object seen in one variant of four keeps a quarter) or `max`.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from anomaly_gui.core.metrics.detection import box_iou

#: the eight symmetries of the square: name -> (transpose, flip left-right, flip up-down), applied in that order
VIEWS: dict[str, tuple[bool, bool, bool]] = {
    "identity": (False, False, False), "flip_lr": (False, True, False), "flip_ud": (False, False, True),
    "rot180": (False, True, True), "transpose": (True, False, False), "rot90": (True, True, False),
    "rot270": (True, False, True), "antitranspose": (True, True, True),
}
#: the view subsets an engine's `tta` offers; the first view of each is the image itself
VIEW_SETS: dict[str, tuple[str, ...]] = {
    "none": ("identity",),
    "flip_lr": ("identity", "flip_lr"),
    "flips": ("identity", "flip_lr", "flip_ud", "rot180"),
    "rotations": ("identity", "rot90", "rot180", "rot270"),
    "d4": tuple(VIEWS),
}
TTA_CHOICES = list(VIEW_SETS)
#: how the views' boxes of one object are fused: box (wbf: score-weighted mean, nms: the strongest) / score
TTA_MERGES = ["wbf_mean", "wbf_max", "nms_max"]
TTA_HELP = ("test-time views: also detect on flipped / 90-degree-rotated copies of the image and fuse the boxes "
            "(flip_lr 2x, flips and rotations 4x, d4 all 8: 8x slower detection); none: the image alone")
TTA_MERGE_HELP = ("test-time views: wbf averages the boxes of one object weighted by score, nms keeps the strongest; "
                  "the score is the mean over the views (a view that missed the object counts 0) or the max")
#: (flip left-right, flip up-down) for each variant of the earlier flips-only option (RetinaNet `tta=true`)
FLIPS = ((False, False), (True, False), (False, True), (True, True))


def view_set(value: object) -> tuple[str, ...]:
    """The views of a `tta` parameter value; model files of RetinaNet before the views stored a bool
    (true: the four flips)."""
    if isinstance(value, bool) or value is None:
        return VIEW_SETS["flips"] if value else VIEW_SETS["none"]
    if str(value) not in VIEW_SETS:
        raise ValueError(f"tta {value!r}: one of {', '.join(VIEW_SETS)}")
    return VIEW_SETS[str(value)]


def view_image(image: np.ndarray, view: str) -> np.ndarray:
    """The image (H x W [x C]) seen in `view` (a contiguous copy)."""
    transpose, flip_x, flip_y = VIEWS[view]
    out = np.swapaxes(image, 0, 1) if transpose else image
    if flip_x:
        out = out[:, ::-1]
    if flip_y:
        out = out[::-1]
    return np.ascontiguousarray(out)


def unflip_boxes(boxes: np.ndarray, width: int, height: int, flip_x: bool, flip_y: bool) -> np.ndarray:
    """xyxy boxes found on a flipped `width` x `height` image, in the unflipped image's pixels."""
    b = np.array(boxes, np.float64, copy=True).reshape(-1, 4)
    if flip_x:
        b[:, [0, 2]] = width - b[:, [2, 0]]
    if flip_y:
        b[:, [1, 3]] = height - b[:, [3, 1]]
    return b


def unview_boxes(boxes: np.ndarray, width: int, height: int, view: str) -> np.ndarray:
    """xyxy boxes found on the `view` of a `width` x `height` image, in that image's pixels."""
    transpose, flip_x, flip_y = VIEWS[view]
    w, h = (height, width) if transpose else (width, height)  # the size of the view
    b = unflip_boxes(boxes, w, h, flip_x, flip_y)
    return b[:, [1, 0, 3, 2]] if transpose else b


def detect_views(detect: Callable[[list[np.ndarray]], list[dict[str, np.ndarray]]], images: Sequence[np.ndarray],
                 views: Sequence[str]) -> list[list[dict[str, np.ndarray]]]:
    """Per image, the detections (dicts of boxes, scores, labels) of `detect` on each view, in the image's pixels."""
    out: list[list[dict[str, np.ndarray]]] = [[] for _ in images]
    for view in views:
        found = detect([view_image(im, view) if view != "identity" else im for im in images])
        for k, (f, im) in enumerate(zip(found, images)):
            out[k].append({**f, "boxes": unview_boxes(f["boxes"], im.shape[1], im.shape[0], view)})
    return out


def fuse_variants(variants: Sequence[dict[str, np.ndarray]], iou: float = 0.55, box: str = "wbf",
                  score: str = "mean") -> dict[str, np.ndarray]:
    """Fusion of one image's detections found on `len(variants)` variants (views or networks; each a dict of
    boxes (n, 4) in the image's pixels, scores (n,), labels (n,)). Returns the same dict, highest score first.
    box: wbf (score-weighted mean of the cluster) or nms (its strongest box); score: mean (sum over the
    variants of each one's best score in the cluster, over the number of variants) or max."""
    if box not in ("wbf", "nms") or score not in ("mean", "max"):
        raise ValueError(f"fusion {box}/{score}: box wbf or nms, score mean or max")
    n_var = max(1, len(variants))
    boxes = np.concatenate([np.asarray(v["boxes"], np.float64).reshape(-1, 4) for v in variants])
    scores = np.concatenate([np.asarray(v["scores"], np.float64).reshape(-1) for v in variants])
    labels = np.concatenate([np.asarray(v["labels"]).reshape(-1) for v in variants])
    source = np.concatenate([np.full(len(np.asarray(v["scores"]).reshape(-1)), k) for k, v in enumerate(variants)])
    order = np.argsort(-scores, kind="mergesort")
    fused_boxes: list[np.ndarray] = []
    members: list[list[int]] = []
    fused_labels: list[object] = []
    for i in order:
        same = [c for c, lab in enumerate(fused_labels) if lab == labels[i]]
        if same:
            ious = box_iou(boxes[i], np.array([fused_boxes[c] for c in same]))[0]
            j = int(np.argmax(ious))
            if ious[j] >= iou:
                c = same[j]
                members[c].append(i)
                if box == "wbf":
                    w = scores[members[c]]
                    fused_boxes[c] = (boxes[members[c]] * w[:, None]).sum(0) / max(w.sum(), 1e-12)
                continue
        fused_boxes.append(boxes[i].copy())
        members.append([i])
        fused_labels.append(labels[i])
    if score == "mean":
        out_scores = np.array([sum(scores[[m for m in mem if source[m] == k]].max(initial=0.0) for k in range(n_var)) / n_var
                               for mem in members], np.float64)
    else:
        out_scores = np.array([scores[mem].max() for mem in members], np.float64)
    keep = np.argsort(-out_scores, kind="mergesort")
    return {"boxes": np.array(fused_boxes, np.float64).reshape(-1, 4)[keep], "scores": out_scores[keep],
            "labels": np.array(fused_labels, dtype=labels.dtype)[keep] if len(fused_labels) else labels[:0]}


def fuse_views(variants: Sequence[dict[str, np.ndarray]], iou: float, merge: str = "wbf_mean") -> dict[str, np.ndarray]:
    """The views of one image fused by a `TTA_MERGES` rule (one view: returned as found)."""
    if len(variants) == 1:
        return variants[0]
    box, _, score = merge.partition("_")
    return fuse_variants(variants, iou=iou, box=box, score=score)
