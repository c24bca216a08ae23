"""Shared parts of the video engines: clip loading, regularity score, pixel-map post-processing and the
training/scoring loop of reconstruction autoencoders (`VideoAEEngine`). Registers no engine itself."""
from anomaly_gui.engines.video_common.base import (
    ClipScores,
    VideoAEEngine,
    VideoAEParams,
)
from anomaly_gui.engines.video_common.postprocess import (
    anomaly_from_errors,
    box_sum,
    regularity,
)

__all__ = ["ClipScores", "VideoAEEngine", "VideoAEParams", "anomaly_from_errors", "box_sum", "regularity"]
