"""Test-time flips for detectors: detect on the image and its flipped copies, map the boxes back, and fuse
them (weighted box fusion: boxes of one object from the variants are averaged, weighted by score; the fused
score is the sum of each variant's best score divided by the number of variants, so an object seen in
one variant only is down-weighted)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from anomaly_gui.core.metrics.detection import box_iou

#: (flip left-right, flip up-down) for each variant; the first is the image itself
FLIPS = ((False, False), (True, False), (False, True), (True, True))


def unflip_boxes(boxes: np.ndarray, width: int, height: int, flip_x: bool, flip_y: bool) -> np.ndarray:
    """xyxy boxes found on a flipped image, in the original image's pixels."""
    b = np.array(boxes, np.float64, copy=True).reshape(-1, 4)
    if flip_x:
        b[:, [0, 2]] = width - b[:, [2, 0]]
    if flip_y:
        b[:, [1, 3]] = height - b[:, [3, 1]]
    return b


def fuse_variants(variants: Sequence[dict[str, np.ndarray]], iou: float = 0.55) -> dict[str, np.ndarray]:
    """Weighted box fusion of the detections of one image found on `len(variants)` variants (each a dict of
    boxes (n, 4) in original pixels, scores (n,), labels (n,)). Returns the same dict, highest score first."""
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
                w = scores[members[c]]
                fused_boxes[c] = (boxes[members[c]] * w[:, None]).sum(0) / w.sum()
                continue
        fused_boxes.append(boxes[i].copy())
        members.append([i])
        fused_labels.append(labels[i])
    out_scores = np.array([sum(scores[[m for m in mem if source[m] == k]].max(initial=0.0) for k in range(n_var)) / n_var
                           for mem in members], np.float64)
    keep = np.argsort(-out_scores, kind="mergesort")
    return {"boxes": np.array(fused_boxes, np.float64).reshape(-1, 4)[keep], "scores": out_scores[keep],
            "labels": np.array(fused_labels, dtype=labels.dtype)[keep] if len(fused_labels) else labels[:0]}
