"""A small U-Net that predicts the next frame from the k before it (Liu et al. 2018, narrowed for a CPU),
the intensity + gradient (+ optional motion) loss it is trained with, and the per-pixel gradient and motion
errors a frame score can add. Pure torch."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class PredictorUNet(nn.Module):
    """(B, k, H, W) past frames in [-1, 1] -> (B, 1, H, W) the next frame; H and W divisible by 2**len(widths)-1.

    Encoder: a double conv per scale, max-pooled between scales; decoder: bilinear upsampling, the skip of the
    same scale concatenated, a double conv; a 1x1 conv + tanh makes the frame (Liu et al.'s generator, with
    fewer channels: 16-32-64-64 instead of 64-128-256-512)."""

    def __init__(self, k: int, widths: tuple[int, ...] = (16, 32, 64, 64)):
        super().__init__()
        self.factor = 2 ** (len(widths) - 1)
        self.down = nn.ModuleList()
        c = k
        for w in widths:
            self.down.append(double_conv(c, w))
            c = w
        self.up = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.up.append(double_conv(c + w, w))
            c = w
        self.head = nn.Conv2d(c, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h % self.factor or w % self.factor:
            raise ValueError(f"frame size {w}x{h} must be divisible by {self.factor}")
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return torch.tanh(self.head(x))


def gradient_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean | |grad pred| - |grad target| | over x and y (Liu et al. 2018, alpha = 1): keeps predictions sharp."""
    def grads(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (t[..., :, 1:] - t[..., :, :-1]).abs(), (t[..., 1:, :] - t[..., :-1, :]).abs()

    px, py = grads(pred)
    tx, ty = grads(target)
    return (px - tx).abs().mean() + (py - ty).abs().mean()


def gradient_magnitude(t: torch.Tensor) -> torch.Tensor:
    """|d/dx| + |d/dy| per pixel (forward differences, the last column / row repeats its neighbour's), same shape."""
    gx = (t[..., :, 1:] - t[..., :, :-1]).abs()
    gy = (t[..., 1:, :] - t[..., :-1, :]).abs()
    return F.pad(gx, (0, 1, 0, 0), mode="replicate") + F.pad(gy, (0, 0, 0, 1), mode="replicate")


def motion_magnitude(frame: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """|frame - last|: how much each pixel changed since the last input frame (optical flow's cheap stand-in)."""
    return (frame - last).abs()


def motion_loss(pred: torch.Tensor, target: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """Mean | |pred - last| - |target - last| |: the predicted change since the last input frame should be as
    large as the real one, pixel by pixel (a motion constraint without a flow network). Only the magnitudes are
    compared: the signed difference (pred - last) - (target - last) is pred - target, the intensity loss again."""
    return (motion_magnitude(pred, last) - motion_magnitude(target, last)).abs().mean()
