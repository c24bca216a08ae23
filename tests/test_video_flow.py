"""The optical-flow speed term of the video engines (issue 13, decision 0029): pure numpy + OpenCV, no model."""
from __future__ import annotations

import numpy as np
import pytest

from anomaly_gui.engines.video_common.flow import SpeedModel, box_mean, flow_speeds


def scene(speeds: dict[int, float], n: int = 24, seed: int = 0) -> np.ndarray:
    """(n, 120, 180) uint8: a static textured background and, for every row band start r -> speed v (px/frame),
    a textured 16x16 square crossing the frame at that band at v px/frame."""
    import cv2

    rng = np.random.default_rng(seed)
    bg = cv2.GaussianBlur(rng.integers(0, 256, (120, 180)).astype(np.uint8), (5, 5), 1.5)
    sq = cv2.GaussianBlur(rng.integers(0, 256, (16, 16)).astype(np.uint8), (3, 3), 1.0)
    frames = np.repeat(bg[None], n, axis=0)
    for row, v in speeds.items():
        for t in range(n):
            x = int(round(10 + v * t)) % (180 - 16)
            frames[t, row:row + 16, x:x + 16] = sq
    return frames


def test_flow_speed_follows_the_motion():
    frames = scene({40: 2.0})
    s = flow_speeds(frames)
    assert s.shape == frames.shape and s.dtype == np.float32
    assert np.array_equal(s[0], s[1])  # the first frame has no predecessor
    inside = s[5, 42:54, 10 + 10:10 + 10 + 12]  # the square sits at x = 10 + 2 * 5 in frame 5
    assert np.median(inside) == pytest.approx(2.0, abs=0.5)
    assert np.median(s[5, 90:, :]) < 0.2  # the static background


def test_speed_is_judged_against_the_training_speed_of_its_row():
    """A far band where training walkers move 1 px/frame and a near band where they move 3: 3 px/frame is normal
    near and anomalous far; the frame score is in dB of the row's reference speed."""
    model = SpeedModel.fit([scene({20: 1.0, 90: 3.0}, seed=s) for s in range(2)], box=12)
    assert model.row_scale.shape == (120,) and model.row_scale[95] > 2 * model.row_scale[25]
    normal = model.frame_scores(scene({20: 1.0, 90: 3.0}, seed=5))
    fast_far = model.frame_scores(scene({20: 3.0, 90: 3.0}, seed=5))
    assert normal.shape == (24,) and np.median(fast_far) > np.median(normal) + 3.0  # 3x: about +4.8 dB
    still = model.frame_scores(scene({}, seed=5))
    assert still.max() < normal.min()
    with pytest.raises(ValueError, match="rows"):
        model.frame_scores(scene({20: 1.0})[:, :100])


def test_box_mean_is_a_local_mean():
    x = np.zeros((1, 20, 20), np.float32)
    x[0, 10, 10] = 9.0
    b = box_mean(x, 3)
    assert b[0, 10, 10] == pytest.approx(1.0) and b[0, 11, 11] == pytest.approx(1.0) and b[0, 13, 13] == 0.0
