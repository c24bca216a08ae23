"""Frame convolutional autoencoder: one grayscale frame in, its reconstruction out, L2 loss.

The appearance-only baseline: a frame whose content was never seen in normal video reconstructs badly.
"""
from __future__ import annotations

import torch
from torch import nn

from anomaly_gui.engines.base import register_engine
from anomaly_gui.engines.video_common import VideoAEEngine
from anomaly_gui.engines.video_common.layers import ConvAE


class FrameAE(nn.Module):
    """(B, 1, H, W) -> (B, 1, H, W)."""

    def __init__(self) -> None:
        super().__init__()
        self.ae = ConvAE(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ae(x)


@register_engine
class FrameAEEngine(VideoAEEngine):
    name = "frame_ae"
    title = "Frame autoencoder"
    description = "Convolutional autoencoder on single grayscale frames; appearance only (fast)."
    rank = 2

    def build_module(self) -> nn.Module:
        return FrameAE()
