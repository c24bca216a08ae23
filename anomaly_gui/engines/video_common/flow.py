"""Optical-flow speed of a clip, judged against the speeds of the normal training clips (issue 13, decision 0029).

Ped2's anomalies (cyclists, skaters, carts) mostly move faster than the walkers. Dense optical flow (OpenCV's DIS,
classical, no network weights) gives every pixel's speed between consecutive frames; its mean over an object-sized
box is the speed of whatever is there. A far walker moves fewer pixels a frame than a near one, so each row's speed is
divided by that row's reference: the `quantile` (99 %) of the training clips' box speeds in that row, floored at
`floor_share` of the largest row reference (rows where nobody walked in training are not blown up). A frame's speed
score is 10*log10 of its largest divided box speed (dB, like the predictor's score): 0 dB walks as fast as the
fastest 1 % of normal motion at that distance from the camera. Uses no statistic of the scored clip.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SPEED_FLOOR = 1e-3  # the dB scale's floor: a frame where nothing moves
ROW_SCALE_MIN = 1e-3  # px/frame: a training set where nothing ever moved still divides by something


def flow_speeds(frames: np.ndarray) -> np.ndarray:
    """(T, H, W) float32 speed in px/frame of every pixel between frame t-1 and t (DIS optical flow, medium
    preset); frame 0, which has no predecessor, takes frame 1's."""
    import cv2

    t = len(frames)
    out = np.zeros(frames.shape, np.float32)
    if t < 2:
        return out
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    for i in range(1, t):
        flow = dis.calc(np.ascontiguousarray(frames[i - 1]), np.ascontiguousarray(frames[i]), None)
        out[i] = np.hypot(flow[..., 0], flow[..., 1])
    out[0] = out[1]
    return out


def box_mean(speeds: np.ndarray, box: int) -> np.ndarray:
    """Mean of each `box` x `box` neighbourhood (zeros outside the frame), frame by frame."""
    import cv2

    k = max(1, int(box))
    return np.stack([cv2.blur(s, (k, k), borderType=cv2.BORDER_CONSTANT) for s in speeds]).astype(np.float32)


@dataclass
class SpeedModel:
    """Per-row reference speeds learnt from normal clips, and the frame score they give."""

    row_scale: np.ndarray  # (H,) px/frame at flow resolution
    box: int

    @classmethod
    def fit(cls, clips: Sequence[np.ndarray], box: int, quantile: float = 0.99, floor_share: float = 0.1) -> "SpeedModel":
        """From the normal training clips, each (T, H, W) uint8 at flow resolution."""
        return cls.from_box_speeds([box_mean(flow_speeds(f), box) for f in clips], box, quantile, floor_share)

    @classmethod
    def from_box_speeds(cls, clips: Sequence[np.ndarray], box: int, quantile: float = 0.99,
                        floor_share: float = 0.1) -> "SpeedModel":
        """From `box_mean(flow_speeds(clip), box)` of every normal training clip."""
        if not clips:
            raise ValueError("no training clip for the speed model")
        # every second column is enough for a row's quantile (the box mean is smooth); float16 halves the memory
        per_row = np.concatenate([c[:, :, ::2].astype(np.float16) for c in clips])
        q = np.quantile(per_row.astype(np.float32).transpose(1, 0, 2).reshape(per_row.shape[1], -1), quantile, axis=1)
        scale = np.maximum(q, max(floor_share * float(q.max()), ROW_SCALE_MIN))
        return cls(row_scale=scale.astype(np.float32), box=int(box))

    def frame_scores(self, frames: np.ndarray) -> np.ndarray:
        """(T,) dB: 10*log10 of the frame's largest box speed divided by its row's training reference."""
        return self.scores_of_box_speeds(box_mean(flow_speeds(frames), self.box))

    def scores_of_box_speeds(self, box_speeds: np.ndarray) -> np.ndarray:
        """`frame_scores` from `box_mean(flow_speeds(frames), box)`."""
        if box_speeds.shape[1] != len(self.row_scale):
            raise ValueError(f"frames have {box_speeds.shape[1]} rows, the speed model {len(self.row_scale)}")
        rel = box_speeds / self.row_scale[None, :, None]
        return (10.0 * np.log10(np.maximum(rel.reshape(len(rel), -1).max(axis=1), SPEED_FLOOR))).astype(np.float32)
