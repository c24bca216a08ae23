"""Image edges for the CNN-feature engines (PatchCore, self-similarity).

A CNN pads its input with zeros, so the cells at the image edge see a black frame that no cell inside the image
sees: on a normal image every edge looks anomalous. Two remedies, used together:

- `reflect_border`: mirror the image outwards before the CNN and crop the features back to the image;
- `border_weight`: what is left, learnt from normal training maps: the mean level of the cells at each
  distance from the two nearest edges (so the corners too) over the interior's median cell, used as a
  divisor (>= 1) of the map's outer cells.
"""
from __future__ import annotations

from typing import Callable

import torch

#: the border profile covers the outer `1 / BORDER_FRACTION` of the grid on each side
BORDER_FRACTION = 4


def reflect_border(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, pad: int) -> torch.Tensor:
    """`fn(x)` for a dense feature function `fn` ((N, C, H, W) -> (N, D, h, w)), computed on `x` mirrored
    outwards by `pad` pixels and cropped back to the cells over the image itself: the CNN's zero padding
    then falls outside the image, so cells at the image edge are described like cells inside it."""
    H, W = int(x.shape[-2]), int(x.shape[-1])
    p = min(int(pad), H - 1, W - 1)
    if p <= 0:
        return fn(x)
    e = fn(torch.nn.functional.pad(x, (p, p, p, p), mode="reflect"))
    sy, sx = (H + 2 * p) / int(e.shape[-2]), (W + 2 * p) / int(e.shape[-1])  # ints: constants when traced
    cy, cx = int(round(p / sy)), int(round(p / sx))
    h, w = int(round(H / sy)), int(round(W / sx))
    return e[..., cy:cy + h, cx:cx + w]


def ring_index(h: int, w: int, device: torch.device | None = None) -> torch.Tensor:
    """(h, w) long: each cell's distance in cells to the nearest image edge."""
    ys = torch.arange(h, device=device)
    xs = torch.arange(w, device=device)
    return torch.minimum(torch.minimum(ys, h - 1 - ys).unsqueeze(1), torch.minimum(xs, w - 1 - xs).unsqueeze(0))


def border_weight(dist_maps: torch.Tensor) -> torch.Tensor:
    """(h, w) divisor >= 1 from normal distance maps (n, h, w). Cells are pooled by their distances to the two
    nearest edges, (a, b) with a <= b (b capped at the profile's depth), so corners, which see two padded
    sides, get their own level; each pool's mean over the interior's median cell, when larger than 1,
    divides its cells. Only the outer 1 / BORDER_FRACTION of the grid is touched."""
    n, h, w = dist_maps.shape
    dev = dist_maps.device
    depth = max(1, min(h, w) // BORDER_FRACTION)
    dy = torch.minimum(torch.arange(h, device=dev), h - 1 - torch.arange(h, device=dev)).unsqueeze(1).expand(h, w)
    dx = torch.minimum(torch.arange(w, device=dev), w - 1 - torch.arange(w, device=dev)).unsqueeze(0).expand(h, w)
    a, b = torch.minimum(dy, dx), torch.maximum(dy, dx).clamp_max(depth)
    mean = dist_maps.float().mean(0)
    interior = mean[a >= depth]
    if interior.numel() == 0:
        return torch.ones(h, w, device=dev)
    base = interior.median().clamp_min(1e-12)  # the median cell: the background when an object fills the middle
    key = (a.clamp_max(depth) * (depth + 1) + b).flatten()
    sums = torch.zeros(int(key.max()) + 1, device=dev).index_add_(0, key, mean.flatten())
    counts = torch.zeros_like(sums).index_add_(0, key, torch.ones_like(mean.flatten()))
    level = (sums / counts.clamp_min(1)).index_select(0, key).view(h, w)
    return torch.where(a < depth, (level / base).clamp_min(1.0), torch.ones_like(level))
