"""Spatio-temporal stacked-frame autoencoder (Hasan et al., "Learning Temporal Regularity in Video
Sequences", CVPR 2016): n consecutive grayscale frames as the channels of one input, reconstructed whole.

Motion and appearance are learnt together; the frame error is averaged over every window that holds the frame.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from anomaly_gui.engines.base import param, register_engine
from anomaly_gui.engines.video_common import VideoAEEngine, VideoAEParams
from anomaly_gui.engines.video_common.layers import ConvAE


class StackedAE(nn.Module):
    """(B, T, H, W) -> (B, T, H, W): frames as channels (the paper's temporal cuboid)."""

    def __init__(self, window: int):
        super().__init__()
        self.ae = ConvAE(window, widths=(64, 128, 128, 128), bottleneck=64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ae(x)


@dataclass
class StackedAEParams(VideoAEParams):
    window: int = param(10, "consecutive frames stacked as channels (paper: 10)", minimum=2, maximum=32)


@register_engine
class StackedAEEngine(VideoAEEngine):
    name = "stacked_ae"
    title = "Stacked-frame autoencoder (Hasan 2016)"
    description = ("n consecutive frames as channels; learns temporal regularity (motion + appearance). Frame AUC on "
                   "the Ped2 subset 0.955 vs 0.849 frame AE, 0.805 ConvLSTM in 129 s of CPU training (20 epochs, "
                   "96x64; engines/video_common/README.md); the future-frame predictor does better on held-back clips.")
    rank = 1
    Params = StackedAEParams

    @property
    def window(self) -> int:
        return int(self.params.window)

    def build_module(self) -> nn.Module:
        return StackedAE(self.window)
