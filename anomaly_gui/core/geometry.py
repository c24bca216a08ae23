"""Plane geometry shared by zones (rules) and the cluster view's lasso; pure numpy."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def points_in_polygon(points: np.ndarray, polygon: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Boolean mask of `points` (n, 2) inside a closed polygon (m, 2): even-odd ray casting, vectorised.
    A polygon of fewer than 3 points contains nothing."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    poly = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    if len(pts) == 0 or len(poly) < 3:
        return np.zeros(len(pts), dtype=bool)
    x, y = pts[:, 0:1], pts[:, 1:2]
    x1, y1 = poly[:, 0][None, :], poly[:, 1][None, :]
    x2, y2 = np.roll(poly[:, 0], -1)[None, :], np.roll(poly[:, 1], -1)[None, :]
    crosses = (y1 > y) != (y2 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_at = x1 + (y - y1) * (x2 - x1) / np.where(y2 != y1, y2 - y1, 1.0)
    return ((crosses & (x < x_at)).sum(axis=1) % 2).astype(bool)
