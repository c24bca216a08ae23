"""Video by frame range: each unit scores frames [start, stop) of one clip, reading `context` frames more on
either side so every window of a sequence engine that covers an owned frame is the same as over the whole
clip (context = window - 1; exact with the engines' default score stride of 1).

The score of a frame is the engine's raw frame error: the per-clip normalisation ("1 - regularity") needs
the whole clip, so it is applied when the results are imported (`batch.importer`), never per range.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from anomaly_gui.batch.units import Unit, frame_range_units
from anomaly_gui.core.video_io import Clip, FrameFolderSource, FrameSource, open_source
from anomaly_gui.engines.base import Engine, ScoreResult


class RangeSource(FrameSource):
    """Frames [lo, hi) of another source, indexed from 0."""

    def __init__(self, source: FrameSource, lo: int, hi: int):
        super().__init__()
        self.source, self.lo, self.hi = source, int(lo), int(hi)
        self.path = source.path
        self.fps = source.fps

    def __len__(self) -> int:
        return self.hi - self.lo

    @property
    def size(self) -> tuple[int, int]:
        return self.source.size

    def read(self, index: int) -> Any:
        if not 0 <= index < len(self):
            raise IndexError(f"frame {index} outside 0..{len(self) - 1}")
        return self.source.read(self.lo + index)

    def close(self) -> None:
        self.source.close()


def clip_units(path: str, engine: Engine, frames_per_unit: int) -> list[Unit]:
    """Frame-range units of one video file or frame folder."""
    src = open_source(path)
    try:
        n = len(src)
    finally:
        src.close()
    context = max(0, int(getattr(engine, "window", 1)) - 1)
    return frame_range_units(str(path), n, frames_per_unit, context)


def score_frame_range(engine: Engine, u: Unit) -> Iterator[tuple[ScoreResult, dict[str, Any]]]:
    """(result, row fields) per owned frame of a frame-range unit."""
    src = open_source(u["path"])
    try:
        n = len(src)
        start, stop, ctx = int(u["start"]), min(int(u["stop"]), n), int(u["context"])
        lo, hi = max(0, start - ctx), min(n, stop + ctx)
        clip = Clip(name=Path(u["path"]).stem, source=RangeSource(src, lo, hi))
        cs = engine.score_clip(clip)  # type: ignore[attr-defined]
        w, h = src.size
        for i in range(start, stop):
            k = i - lo
            res = ScoreResult(score=float(cs.errors[k]), map=cs.maps[k],
                              extra={"image_size": [int(w), int(h)], "frame_error": float(cs.errors[k]),
                                     "clip": clip.name})
            path = str(src.paths[i]) if isinstance(src, FrameFolderSource) else u["path"]
            key = path if isinstance(src, FrameFolderSource) else f"{u['path']}#{i}"
            yield res, {"key": key, "path": path, "frame_index": i}
    finally:
        src.close()
