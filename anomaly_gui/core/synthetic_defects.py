"""Synthetic product defects for validation: a normal image in, the same image with one small defect and its
mask out. Qt-free, numpy + OpenCV.

Used to choose engine settings without a labelled test split (`benchmarks/choose_image_defaults.py`): fold the
normal training images, add defects to the held-out ones, and measure how well each setting tells them from
their clean copies. Three kinds, each a few pixels to a few percent of the image, placed on the object:

- ``scratch``: a thin bright or dark polyline (a scratch, a crack in a solar cell);
- ``cutpaste``: a patch cut from elsewhere on the object, rotated and pasted (CutPaste, Li et al. CVPR 2021),
  a local texture or shape error;
- ``blob``: a soft dark or bright spot (a stain, a dark cell region, a dent).

The object is the foreground by Otsu's threshold when the two classes separate clearly and it covers 3-70 %
of the image (a part on a plain background); otherwise the whole image (a texture, a solar cell).
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

KINDS = ("scratch", "cutpaste", "blob")
#: Otsu separability above which the image is taken as a part on a plain background
SEPARABLE = 0.75


def object_mask(gray: np.ndarray) -> np.ndarray:
    """(H, W) bool: the object on a plain background (Otsu on the blurred image, the smaller side), or all
    True when no clear object stands out."""
    g = cv2.GaussianBlur(gray, (0, 0), max(1.0, gray.shape[0] / 256))
    _, th = cv2.threshold(g, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    fg = th > 0
    if fg.mean() > 0.5:
        fg = ~fg
    frac = float(fg.mean())
    # Otsu's separability (between-class over total variance): ~0.64 for one blurred texture, ~0.8 for a
    # part on a plain background (screws 0.79-0.83, leather 0.67-0.70)
    d = float(g[fg].mean() - g[~fg].mean()) if 0 < frac < 1 else 0.0
    separability = frac * (1 - frac) * d * d / max(float(g.astype(np.float64).var()), 1e-9)
    if not 0.03 <= frac <= 0.7 or separability < SEPARABLE:
        return np.ones(gray.shape, bool)
    inner = cv2.erode(fg.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    return inner if inner.any() else fg


def _gray(img: np.ndarray) -> np.ndarray:
    return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


def _pick(mask: np.ndarray, rng: np.random.Generator, margin: int) -> tuple[int, int]:
    H, W = mask.shape
    inner = np.zeros_like(mask)
    inner[margin:H - margin, margin:W - margin] = mask[margin:H - margin, margin:W - margin]
    ys, xs = np.nonzero(inner if inner.any() else mask)
    k = int(rng.integers(len(ys)))
    return int(ys[k]), int(xs[k])


def _scratch(img: np.ndarray, fg: np.ndarray, rng: np.random.Generator, size: float) -> np.ndarray:
    H, W = fg.shape
    y, x = _pick(fg, rng, int(size))
    n = int(rng.integers(2, 4))
    pts = [(x, y)]
    ang = rng.uniform(0, 2 * np.pi)
    for _ in range(n):
        ang += rng.uniform(-0.6, 0.6)
        step = size / n
        x, y = x + step * np.cos(ang), y + step * np.sin(ang)
        pts.append((int(np.clip(x, 0, W - 1)), int(np.clip(y, 0, H - 1))))
    m = np.zeros((H, W), np.uint8)
    cv2.polylines(m, [np.array(pts, np.int32)], False, 255, max(2, int(round(size / 15))), cv2.LINE_AA)
    return m


def _blob(fg: np.ndarray, rng: np.random.Generator, size: float) -> np.ndarray:
    H, W = fg.shape
    y, x = _pick(fg, rng, int(size / 2))
    m = np.zeros((H, W), np.uint8)
    axes = (max(2, int(size / 2 * rng.uniform(0.4, 1.0))), max(2, int(size / 2 * rng.uniform(0.4, 1.0))))
    cv2.ellipse(m, (x, y), axes, float(rng.uniform(0, 180)), 0, 360, 255, -1, cv2.LINE_AA)
    return cv2.GaussianBlur(m, (0, 0), max(1.0, size / 12))


def add_defect(img: np.ndarray, rng: np.random.Generator, kind: str | None = None,
               size: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(the image with one synthetic defect, its (H, W) bool mask). `img`: uint8 (H, W) or (H, W, 3);
    `size`: the defect's extent in pixels (default 2-5 % of the smaller side); `kind`: one of KINDS
    (random when None)."""
    if img.dtype != np.uint8 or img.ndim not in (2, 3):
        raise ValueError("add_defect expects a uint8 gray or RGB image")
    kind = kind or str(rng.choice(KINDS))
    if kind not in KINDS:
        raise ValueError(f"unknown defect kind {kind!r}; known: {', '.join(KINDS)}")
    H, W = img.shape[:2]
    size = float(size or rng.uniform(0.02, 0.05) * min(H, W))
    fg = object_mask(_gray(img))
    out = img.astype(np.float32)
    sign = 1.0 if rng.random() < 0.5 else -1.0
    if kind == "cutpaste":
        s = max(4, int(size))
        y, x = _pick(fg, rng, s)
        sy, sx = _pick(fg, rng, s)
        y0, x0 = int(np.clip(y - s // 2, 0, H - s)), int(np.clip(x - s // 2, 0, W - s))
        sy0, sx0 = int(np.clip(sy - s // 2, 0, H - s)), int(np.clip(sx - s // 2, 0, W - s))
        patch = np.ascontiguousarray(out[sy0:sy0 + s, sx0:sx0 + s])
        rot = cv2.getRotationMatrix2D((s / 2, s / 2), float(rng.uniform(30, 330)), 1.0)
        patch = cv2.warpAffine(patch, rot, (s, s), borderMode=cv2.BORDER_REFLECT)
        alpha = np.zeros((H, W), np.float32)
        alpha[y0:y0 + s, x0:x0 + s] = 1.0
        placed = out.copy()
        placed[y0:y0 + s, x0:x0 + s] = patch.reshape(placed[y0:y0 + s, x0:x0 + s].shape)
        a = alpha if out.ndim == 2 else alpha[:, :, None]
        out = a * placed + (1 - a) * out
        mask = alpha > 0
    else:
        m = (_scratch(img, fg, rng, size) if kind == "scratch" else _blob(fg, rng, size)).astype(np.float32) / 255
        local = float(np.std(out[fg])) if fg.any() else 20.0
        amp = sign * float(rng.uniform(1.0, 2.0)) * max(15.0, local)
        out = out + amp * (m if out.ndim == 2 else m[:, :, None])
        mask = m > 0.25
    return np.clip(out, 0, 255).astype(np.uint8), mask


def defect_set(images: Sequence[np.ndarray], seed: int = 0, kinds: Sequence[str] = KINDS,
               size_range: tuple[float, float] = (0.02, 0.05)) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """One defect per image, kinds in turn: [(image, mask, kind)]."""
    rng = np.random.default_rng(seed)
    out = []
    for i, img in enumerate(images):
        kind = kinds[i % len(kinds)]
        size = rng.uniform(*size_range) * min(img.shape[:2])
        im, m = add_defect(img, rng, kind, size)
        out.append((im, m, kind))
    return out
