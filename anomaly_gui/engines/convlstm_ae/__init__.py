"""Spatiotemporal ConvLSTM autoencoder (Chong & Tay, "Abnormal Event Detection in Videos using
Spatiotemporal Autoencoder", 2017): a per-frame convolutional encoder, a ConvLSTM temporal
encoder-decoder (64 -> 32 -> 64 in the paper, narrower by default here for CPU) and a per-frame
deconvolutional decoder reconstructing the whole sequence.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from anomaly_gui.engines.base import param, register_engine
from anomaly_gui.engines.video_common import VideoAEEngine, VideoAEParams
from anomaly_gui.engines.video_common.layers import down, up


class ConvLSTMCell(nn.Module):
    """One ConvLSTM cell (Shi et al. 2015): gates computed by a 3x3 convolution over [x, h]."""

    def __init__(self, cin: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Conv2d(cin + hidden, 4 * hidden, 3, padding=1)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state
        i, f, o, g = self.gates(torch.cat([x, h], dim=1)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c


class ConvLSTMAE(nn.Module):
    """(B, T, H, W) -> (B, T, H, W)."""

    def __init__(self, widths: tuple[int, int, int] = (32, 64, 64), lstm: tuple[int, int, int] = (32, 16, 32)):
        super().__init__()
        self.encoder = nn.Sequential(down(1, widths[0]), down(widths[0], widths[1]), down(widths[1], widths[2]))
        cells, c = [], widths[2]
        for hdim in lstm:
            cells.append(ConvLSTMCell(c, hdim))
            c = hdim
        self.cells = nn.ModuleList(cells)
        self.decoder = nn.Sequential(up(c, widths[1]), up(widths[1], widths[0]),
                                     nn.ConvTranspose2d(widths[0], 1, 4, stride=2, padding=1), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, hgt, wid = x.shape
        if hgt % 8 or wid % 8:
            raise ValueError(f"frame size {wid}x{hgt} must be divisible by 8")
        z = self.encoder(x.reshape(b * t, 1, hgt, wid))
        z = z.reshape(b, t, *z.shape[1:])
        states = [(z.new_zeros(b, cell.hidden, *z.shape[-2:]),) * 2 for cell in self.cells]
        outs = []
        for step in range(t):
            h = z[:, step]
            for k, cell in enumerate(self.cells):
                states[k] = cell(h, states[k])
                h = states[k][0]
            outs.append(h)
        y = self.decoder(torch.stack(outs, 1).reshape(b * t, -1, *z.shape[-2:]))
        return y.reshape(b, t, hgt, wid)


@dataclass
class ConvLSTMAEParams(VideoAEParams):
    window: int = param(10, "frames per sequence (paper: 10)", minimum=2, maximum=32)


@register_engine
class ConvLSTMAEEngine(VideoAEEngine):
    name = "convlstm_ae"
    title = "ConvLSTM autoencoder (Chong & Tay 2017)"
    description = "Spatial conv encoder + ConvLSTM temporal encoder-decoder; models motion explicitly (slowest)."
    rank = 3
    Params = ConvLSTMAEParams

    @property
    def window(self) -> int:
        return int(self.params.window)

    def build_module(self) -> nn.Module:
        return ConvLSTMAE()
