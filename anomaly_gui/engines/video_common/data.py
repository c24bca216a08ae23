"""Clip frames at model resolution: streamed from the source, converted to gray and resized on the way."""
from __future__ import annotations

import numpy as np

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.video_io import Clip
from anomaly_gui.engines.base import RunContext


def load_clip_frames(clip: Clip, size: tuple[int, int], ctx: RunContext | None = None,
                     done: int = 0, total: int = 0) -> np.ndarray:
    """(T, H, W) uint8 gray frames of `clip` resized to (width, height); only the small copies are kept."""
    import cv2

    from anomaly_gui.core.imageio import to_gray8

    ctx = ctx or RunContext()
    out = []
    for i, frame in clip.source.iter_frames():
        g = to_gray8(frame)
        if (g.shape[1], g.shape[0]) != size:
            g = cv2.resize(g, size, interpolation=cv2.INTER_AREA)
        out.append(g)
        if i % 32 == 0:
            ctx.check()
            ctx.progress(done + i, total or done + len(clip), f"reading {clip.name}")
    if not out:
        raise DataError(clip.source.path, "no frame could be read")
    return np.stack(out)


def window_starts(n_frames: int, window: int, stride: int) -> list[int]:
    """Start indices of windows of `window` frames every `stride`, the last one flush with the end."""
    if n_frames < window:
        return []
    starts = list(range(0, n_frames - window + 1, max(1, stride)))
    if starts[-1] != n_frames - window:
        starts.append(n_frames - window)
    return starts
