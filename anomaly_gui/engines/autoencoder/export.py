"""The autoencoder's scoring as one traceable module, for ONNX / OpenVINO export (`engines/deploy.py`).

Same numbers as `AutoencoderEngine._score_batch`: whole images, or patches at stride patch/2 reconstructed
and averaged back together, then the residual map (1 - SSIM or squared error), the Gaussian smoothing and
the maximum. The engine's tiling uses `F.unfold` / `F.fold`, and torch's ONNX exporter cannot write `fold`
(Col2Im) with these shapes; here the tile positions are constants of the export size, so each tile is a
slice in and a zero-padded sum out (the same sum, in another order: equal to float rounding).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from anomaly_gui.engines.autoencoder.model import residual_map
from anomaly_gui.engines.image_data import gaussian_blur


def tile_positions(size: int, patch: int) -> list[tuple[int, int]]:
    """(top, left) of the patches `F.unfold(x, patch, stride=patch // 2)` cuts from a size x size image,
    in unfold's order (row by row)."""
    if patch >= size:
        return [(0, 0)]
    starts = list(range(0, size - patch + 1, patch // 2))
    return [(y, x) for y in starts for x in starts]


class AutoencoderExport(nn.Module):
    """images (N, C, S, S) in [0, 1] -> (scores (N,), maps (N, S, S)), S the engine's image size."""

    def __init__(self, model: nn.Module, image_size: int, patch_size: int, residual: str, sigma: float) -> None:
        super().__init__()
        self.model = model
        self.size, self.patch = int(image_size), int(patch_size)
        self.residual, self.sigma = residual, float(sigma)
        self.positions = tile_positions(self.size, self.patch)
        count = torch.zeros(1, 1, self.size, self.size)
        for y, x in self.positions:
            count[..., y : y + self.patch, x : x + self.patch] += 1
        self.register_buffer("count", count.clamp_min(1))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.positions) == 1 and self.patch >= self.size:
            return self.model(x).float()
        n, p, s = x.shape[0], self.patch, self.size
        patches = torch.cat([x[:, :, y : y + p, c : c + p] for y, c in self.positions], 0)  # (L*n, C, p, p)
        rec = self.model(patches).float()
        out = torch.zeros_like(x, dtype=torch.float32)
        for k, (y, c) in enumerate(self.positions):
            out = out + F.pad(rec[k * n : (k + 1) * n], (c, s - p - c, y, s - p - y))
        return out / self.count

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rec = self.reconstruct(x)
        m = residual_map(x.float(), rec, self.residual).unsqueeze(1)
        m = gaussian_blur(m, self.sigma)[:, 0]
        return m.flatten(1).max(1).values, m
