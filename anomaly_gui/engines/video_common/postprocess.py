"""Regularity score (Hasan et al. 2016) and box-summed pixel errors; pure numpy/OpenCV.

Resizing maps and connected regions are shared with the image tasks: `anomaly_gui.core.postprocess`."""
from __future__ import annotations

import numpy as np

from anomaly_gui.core.metrics.video import per_clip_minmax
from anomaly_gui.core.postprocess import regions, resize_map  # noqa: F401  (moved to the core; re-exported this release)


def regularity(errors: np.ndarray) -> np.ndarray:
    """s(t) = 1 - (e(t) - min e) / (max e - min e), over one clip (Hasan et al. 2016); all ones for a constant clip."""
    return (1.0 - per_clip_minmax(errors)).astype(np.float32)


def anomaly_from_errors(errors: np.ndarray) -> np.ndarray:
    """Anomaly score = 1 - regularity = the clip's min-max normalised errors (`core.metrics.video.per_clip_minmax`)."""
    return per_clip_minmax(errors)


def box_sum(err: np.ndarray, k: int) -> np.ndarray:
    """Sum of `err` over a k x k box around each pixel (zeros outside); (H, W) or (T, H, W) float32."""
    import cv2

    err = np.asarray(err, dtype=np.float32)
    if k <= 1:
        return err.copy()
    if err.ndim == 3:
        return np.stack([box_sum(e, k) for e in err])
    return cv2.boxFilter(err, -1, (k, k), normalize=False, borderType=cv2.BORDER_CONSTANT)
