"""Small convolutional encoder/decoder blocks shared by the video autoencoders (pure torch)."""
from __future__ import annotations

import torch
from torch import nn


def down(cin: int, cout: int) -> nn.Sequential:
    """Conv stride 2 (halves H and W), batch norm, leaky ReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, inplace=True))


def up(cin: int, cout: int) -> nn.Sequential:
    """Transposed conv stride 2 (doubles H and W), batch norm, ReLU."""
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ConvAE(nn.Module):
    """Channels-in, channels-out convolutional autoencoder: (B, C, H, W) -> (B, C, H, W) in [-1, 1].

    `widths` are the channel counts after each stride-2 stage; H and W must be divisible by 2**len(widths).
    """

    def __init__(self, channels: int, widths: tuple[int, ...] = (32, 64, 128, 128), bottleneck: int = 64):
        super().__init__()
        enc, c = [], channels
        for w in widths:
            enc.append(down(c, w))
            c = w
        enc.append(nn.Conv2d(c, bottleneck, 3, padding=1))
        self.encoder = nn.Sequential(*enc)
        dec, c = [nn.Conv2d(bottleneck, widths[-1], 3, padding=1), nn.ReLU(inplace=True)], widths[-1]
        for w in reversed(widths[:-1]):
            dec.append(up(c, w))
            c = w
        dec += [nn.ConvTranspose2d(c, channels, 4, stride=2, padding=1), nn.Tanh()]
        self.decoder = nn.Sequential(*dec)
        self.factor = 2 ** len(widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % self.factor or w % self.factor:
            raise ValueError(f"frame size {w}x{h} must be divisible by {self.factor}")
        return self.decoder(self.encoder(x))
