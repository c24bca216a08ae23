"""Bright blobs of a CFAR-style (constant false alarm rate) test, and detector boxes snapped to them.

A SAR ship is a compact bright blob on sea clutter: pixels more than `k` local standard deviations above the
local mean (square window) trace its extent far better than a learnt box, which on HRSID comes out too
square for long ships (a 53x15 ship got a 33x32 box). `snap_to_blobs` keeps the detector's decision (which
objects, their scores) and takes the box of the blob it overlaps: the detector says *what*, the blob says
*where exactly*. Scene-grouped CV over the 20 HRSID training chips: pooled mAP50 0.568 -> 0.846 (decision 0018).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from anomaly_gui.core.metrics.detection import box_iou


@dataclass(frozen=True)
class CfarSettings:
    """Chosen on the 20 HRSID training chips (nested per CV fold, every fold chose window 151, k 2.5, closing 1)."""

    window: int = 151  # side of the square window of the local mean and deviation (pixels of the image)
    k: float = 2.5  # a pixel is bright when above mean + k * std of its window
    closing: int = 1  # binary closing iterations (joins a ship's broken bright pixels)
    min_area: int = 40  # smaller blobs (pixels) are speckle


def bright_blobs(image: np.ndarray, settings: CfarSettings = CfarSettings()) -> np.ndarray:
    """xyxy boxes (float, pixel edges) of the 8-connected bright blobs of an image (H x W or H x W x C)."""
    from scipy import ndimage as ndi

    gray = np.asarray(image, np.float32)
    if gray.ndim == 3:
        gray = gray.mean(axis=2)
    win = max(3, min(int(settings.window), 2 * max(gray.shape) + 1))
    mean = ndi.uniform_filter(gray, win, mode="reflect")
    std = np.sqrt(np.maximum(ndi.uniform_filter(gray * gray, win, mode="reflect") - mean * mean, 1.0))
    mask = gray > mean + settings.k * std
    if settings.closing:
        mask = ndi.binary_closing(mask, iterations=int(settings.closing))
    labels, n = ndi.label(mask, structure=np.ones((3, 3), bool))
    if n == 0:
        return np.zeros((0, 4))
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    boxes = [[sl[1].start, sl[0].start, sl[1].stop, sl[0].stop]
             for sl, area in zip(ndi.find_objects(labels), areas) if sl is not None and area >= settings.min_area]
    return np.array(boxes, np.float64).reshape(-1, 4)


def snap_to_blobs(found: dict[str, np.ndarray], blobs: np.ndarray, min_iou: float = 0.1,
                  duplicate_iou: float = 0.5, split: bool = False, inside: float = 0.5) -> dict[str, np.ndarray]:
    """Detections (dict of boxes, scores, labels; highest score first) with each box replaced by the blob it
    overlaps most when that IoU is at least `min_iou`; then a detection overlapping a higher-scored one of its
    class by more than `duplicate_iou` (two detections snapped to one blob) is dropped.
    `split`: a snapped detection also yields, with its score, every other blob lying at least `inside` (share
    of the blob's area) within its box: one loose box over ships moored side by side becomes one box per ship."""
    boxes = np.array(found["boxes"], np.float64, copy=True).reshape(-1, 4)
    scores, labels = np.asarray(found["scores"]), np.asarray(found["labels"])
    if len(boxes) and len(blobs):
        iou = box_iou(boxes, blobs)
        hit = iou.max(1) >= min_iou
        extra = _blobs_inside(boxes[hit], blobs, inside) if split else []
        boxes[hit] = blobs[iou[hit].argmax(1)]
        if split and any(len(e) for e in extra):
            src = np.flatnonzero(hit)
            rows = [(src[h], j) for h, js in enumerate(extra) for j in js if j != iou[src[h]].argmax()]
            if rows:
                boxes = np.concatenate([boxes, blobs[[j for _, j in rows]]])
                scores = np.concatenate([scores, scores[[i for i, _ in rows]]])
                labels = np.concatenate([labels, labels[[i for i, _ in rows]]])
    order = np.argsort(-scores, kind="mergesort")
    keep: list[int] = []
    for i in order:
        same = [j for j in keep if labels[j] == labels[i]]
        if same and box_iou(boxes[i:i + 1], boxes[same]).max() > duplicate_iou:
            continue
        keep.append(int(i))
    idx = np.array(keep, int)
    return {"boxes": boxes[idx].reshape(-1, 4), "scores": scores[idx], "labels": labels[idx]}


def _blobs_inside(boxes: np.ndarray, blobs: np.ndarray, inside: float) -> list[np.ndarray]:
    """Per box, the indices of the blobs with at least `inside` of their area within it."""
    ix = (np.minimum(boxes[:, None, 2], blobs[None, :, 2]) - np.maximum(boxes[:, None, 0], blobs[None, :, 0])).clip(0)
    iy = (np.minimum(boxes[:, None, 3], blobs[None, :, 3]) - np.maximum(boxes[:, None, 1], blobs[None, :, 1])).clip(0)
    area = ((blobs[:, 2] - blobs[:, 0]) * (blobs[:, 3] - blobs[:, 1])).clip(1e-9)
    return [np.flatnonzero(row) for row in (ix * iy / area[None]) >= inside]
