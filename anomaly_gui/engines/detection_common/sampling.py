"""Training crops for small-object detectors and SAR-safe augmentation.

Large chips or scenes are not shrunk to fit a network input (a 10-pixel ship would vanish): training
uses fixed-size crops at the model's scale, most of them centred near an object (the object anywhere
inside the crop), the rest anywhere (background, so the detector also learns sea clutter, coast and
harbour). Images smaller than a crop are used whole. Augmentation keeps SAR physics plausible: flips
and 90-degree rotations (no interpolation), a global gain (calibration differences) and multiplicative
gamma speckle (L looks), never colour jitter.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass
class Crop:
    image: np.ndarray  # (h, w, 3) uint8
    boxes: np.ndarray  # (n, 4) xyxy in crop pixels
    labels: list[str]


def random_crop(image: np.ndarray, boxes: np.ndarray, labels: list[str], size: int, rng: np.random.Generator,
                object_fraction: float = 0.7, min_visible: float = 0.5) -> Crop:
    """A `size` x `size` crop (the whole image when it is smaller). With probability `object_fraction`
    the crop contains a randomly chosen box (at a random position); boxes cut by the crop border keep
    their visible part when at least `min_visible` of their area is inside, else they are dropped."""
    h, w = image.shape[:2]
    if size <= 0 or (h <= size and w <= size):
        return Crop(image, boxes.copy(), list(labels))
    ch, cw = min(size, h), min(size, w)
    if len(boxes) and rng.random() < object_fraction:
        b = boxes[rng.integers(len(boxes))]
        # the crop's top-left such that the box lies inside (when it fits), chosen uniformly
        lo_x, hi_x = max(0.0, b[2] - cw), min(b[0], w - cw)
        lo_y, hi_y = max(0.0, b[3] - ch), min(b[1], h - ch)
        x0 = int(rng.uniform(lo_x, hi_x)) if hi_x > lo_x else int(np.clip((b[0] + b[2] - cw) / 2, 0, w - cw))
        y0 = int(rng.uniform(lo_y, hi_y)) if hi_y > lo_y else int(np.clip((b[1] + b[3] - ch) / 2, 0, h - ch))
    else:
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    crop = image[y0:y0 + ch, x0:x0 + cw]
    if not len(boxes):
        return Crop(crop, boxes.reshape(0, 4).copy(), [])
    shifted = boxes - np.array([x0, y0, x0, y0], np.float64)
    clipped = np.stack([shifted[:, 0].clip(0, cw), shifted[:, 1].clip(0, ch), shifted[:, 2].clip(0, cw), shifted[:, 3].clip(0, ch)], 1)
    area = (shifted[:, 2] - shifted[:, 0]) * (shifted[:, 3] - shifted[:, 1])
    vis = (clipped[:, 2] - clipped[:, 0]).clip(0) * (clipped[:, 3] - clipped[:, 1]).clip(0)
    keep = (vis >= min_visible * np.maximum(area, 1e-9)) & (clipped[:, 2] - clipped[:, 0] >= 1) & (clipped[:, 3] - clipped[:, 1] >= 1)
    return Crop(crop, clipped[keep], [lab for lab, k in zip(labels, keep) if k])


def flip_rotate(crop: Crop, rng: np.random.Generator) -> Crop:
    """Random horizontal/vertical flip and 90-degree rotation (exact, boxes follow)."""
    img, b = crop.image, crop.boxes.copy()
    h, w = img.shape[:2]
    if rng.random() < 0.5:
        img = img[:, ::-1]
        b[:, [0, 2]] = w - b[:, [2, 0]]
    if rng.random() < 0.5:
        img = img[::-1]
        b[:, [1, 3]] = h - b[:, [3, 1]]
    k = int(rng.integers(4))
    for _ in range(k):  # rotate 90 degrees counter-clockwise: (x, y) -> (y, W - x)
        h, w = img.shape[:2]
        img = np.rot90(img)
        b = np.stack([b[:, 1], w - b[:, 2], b[:, 3], w - b[:, 0]], 1) if len(b) else b.reshape(0, 4)
    return Crop(np.ascontiguousarray(img), b.reshape(-1, 4), crop.labels)


def gain_speckle(image: np.ndarray, rng: np.random.Generator, gain: tuple[float, float] = (0.75, 1.35),
                 speckle_prob: float = 0.5, looks: float = 4.0) -> np.ndarray:
    """Global gain and, sometimes, multiplicative gamma speckle (mean 1, `looks` looks); uint8 out."""
    x = image.astype(np.float32) * float(rng.uniform(*gain))
    if rng.random() < speckle_prob:
        g = rng.gamma(looks, 1.0 / looks, size=image.shape[:2]).astype(np.float32)
        x *= g[..., None]
    return x.clip(0, 255).astype(np.uint8)


def training_sample(image: np.ndarray, boxes: np.ndarray, labels: list[str], size: int, rng: np.random.Generator,
                    augment: bool = True) -> Crop:
    crop = random_crop(image, boxes, labels, size, rng)
    if not augment:
        return crop
    crop = flip_rotate(crop, rng)
    return Crop(gain_speckle(crop.image, rng), crop.boxes, crop.labels)


def auto_scale(boxes: Sequence[np.ndarray], target: float = 8.0) -> float:
    """Upsampling that brings the median short side of the training boxes to about `target` pixels
    (1 when they are already that large; at most 4), in quarter steps."""
    sides = np.concatenate([np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) for b in boxes if len(b)] or [np.zeros(0)])
    if not len(sides):
        return 1.0
    return float(np.clip(np.ceil(target / max(float(np.median(sides)), 1e-3) * 4) / 4, 1.0, 4.0))
