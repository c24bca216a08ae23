"""Export of scored video: an annotated mp4 (OpenCV VideoWriter) and a per-frame CSV of scores and verdicts.

Both are written to a temporary file beside the target and moved in place at the end, so a failed or
cancelled export never replaces a good file. Overlays are drawn by `render_overlay`, shared with the player.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.imageio import atomic_path, write_text
from anomaly_gui.core.video_io import FrameSource

ANOMALY_RGB = (255, 40, 40)
NORMAL_RGB = (40, 200, 80)


@dataclass
class FrameVerdicts:
    """Per-frame scores and the thresholds that turn them into verdicts and pixel masks."""

    scores: np.ndarray  # (T,) anomaly score per frame
    threshold: float  # frame is anomalous when score >= threshold
    maps: np.ndarray | None = None  # (T, h, w) raw pixel maps (model resolution) or None
    pixel_threshold: float | None = None  # pixels flagged when map >= pixel_threshold
    min_area: float = 0.0  # regions smaller than this (in frame pixels) are dropped
    errors: np.ndarray | None = None  # raw frame errors (optional CSV column)
    labels: np.ndarray | None = None  # ground truth (optional CSV column)
    known: np.ndarray | None = None  # frames whose label is known (a partly labelled clip); None: all of them

    def anomalous(self) -> np.ndarray:
        return np.asarray(self.scores) >= self.threshold


def flagged_mask(amap: np.ndarray, pixel_threshold: float, size: tuple[int, int], min_area: float = 0.0
                 ) -> tuple[np.ndarray, list[tuple[int, int, int, int, int]]]:
    """Thresholded map at frame size (width, height), with regions below `min_area` removed."""
    from anomaly_gui.core.postprocess import regions, resize_map

    full = resize_map(amap, size) >= pixel_threshold
    return regions(full, min_area)


def render_overlay(frame: np.ndarray, mask: np.ndarray | None, boxes: Sequence[tuple[int, int, int, int, int]] = (),
                   index: int | None = None, score: float | None = None, anomalous: bool = False,
                   opacity: float = 0.45) -> np.ndarray:
    """RGB uint8 frame with flagged pixels tinted, region boxes, a status banner and a red border when anomalous."""
    import cv2

    out = np.ascontiguousarray(frame[:, :, :3] if frame.ndim == 3 else np.repeat(frame[:, :, None], 3, 2)).copy()
    if mask is not None and mask.any():
        tint = np.array(ANOMALY_RGB, np.float32)
        sel = out[mask].astype(np.float32)
        out[mask] = (sel * (1 - opacity) + tint * opacity).astype(np.uint8)
    for x, y, w, h, _ in boxes:
        cv2.rectangle(out, (x, y), (x + w - 1, y + h - 1), ANOMALY_RGB, 1)
    colour = ANOMALY_RGB if anomalous else NORMAL_RGB
    if index is not None or score is not None:
        text = " ".join(p for p in (f"#{index + 1}" if index is not None else "",
                                    f"score {score:.3f}" if score is not None else "",
                                    "ANOMALY" if anomalous else "") if p)
        cv2.rectangle(out, (0, 0), (min(out.shape[1] - 1, 8 + 8 * len(text)), 16), (0, 0, 0), -1)
        cv2.putText(out, text, (4, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
    if anomalous:
        cv2.rectangle(out, (0, 0), (out.shape[1] - 1, out.shape[0] - 1), ANOMALY_RGB, 3)
    return out


def annotate_frame(source: FrameSource, i: int, v: FrameVerdicts) -> np.ndarray:
    """Frame `i` of `source` with its overlay."""
    frame = source.read(i)
    mask, boxes = None, []
    if v.maps is not None and v.pixel_threshold is not None:
        mask, boxes = flagged_mask(v.maps[i], v.pixel_threshold, (frame.shape[1], frame.shape[0]), v.min_area)
    return render_overlay(frame, mask, boxes, i, float(v.scores[i]), bool(v.scores[i] >= v.threshold))


def export_video(path: str | Path, source: FrameSource, verdicts: FrameVerdicts, fps: float | None = None,
                 progress: Callable[[int, int], None] | None = None, cancelled: Callable[[], bool] | None = None) -> Path:
    """Write the annotated clip as mp4 (mp4v) atomically; returns the path."""
    import cv2

    path = Path(path)
    n = min(len(source), len(verdicts.scores))
    if n == 0:
        raise DataError(path, "nothing to export: the clip has no scored frames")
    w, h = source.size
    fps = float(fps or source.fps or 10.0)
    with atomic_path(path) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not writer.isOpened():
            raise DataError(path, "OpenCV cannot write mp4 here (codec mp4v unavailable or folder not writable)")
        try:
            for i in range(n):
                if cancelled is not None and cancelled():
                    raise InterruptedError("export cancelled")
                rgb = annotate_frame(source, i, verdicts)
                writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                if progress is not None:
                    progress(i + 1, n)
        finally:
            writer.release()
        if tmp.stat().st_size == 0:
            raise DataError(path, "the video writer produced an empty file")
    return path


def export_csv(path: str | Path, verdicts: FrameVerdicts, fps: float = 10.0, clip: str = "") -> Path:
    """Per-frame CSV: clip, frame (1-based), time_s, score, [error], verdict, [ground_truth]; atomic."""
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    head = ["clip", "frame", "time_s", "score"]
    if verdicts.errors is not None:
        head.append("error")
    head += ["verdict", "threshold"]
    if verdicts.labels is not None:
        head.append("ground_truth")
    wr.writerow(head)
    flags = verdicts.anomalous()
    for i, s in enumerate(verdicts.scores):
        row: list[object] = [clip, i + 1, f"{i / fps:.3f}", f"{float(s):.6g}"]
        if verdicts.errors is not None:
            row.append(f"{float(verdicts.errors[i]):.6g}")
        row += ["anomalous" if flags[i] else "normal", f"{verdicts.threshold:.6g}"]
        if verdicts.labels is not None:
            unknown = verdicts.known is not None and not verdicts.known[i]
            row.append("" if unknown else "anomalous" if verdicts.labels[i] else "normal")
        wr.writerow(row)
    return write_text(path, buf.getvalue())
