"""The memory-augmented 3D-convolutional autoencoder of Gong et al. 2019, narrowed for a CPU. Pure torch."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class Memory(nn.Module):
    """`slots` learnt prototypes of the encoding (dimension `dim`). Each encoded location is replaced by a sparse
    mix of them: attention w = softmax over slots of the cosine similarity, hard shrinkage (weights under `shrink`
    set to 0, a continuous ReLU form as in the paper), renormalised to sum 1. An anomaly, never seen in training, is
    rebuilt from normal prototypes and so reconstructed badly. `last_weights` keeps w for the entropy loss."""

    def __init__(self, slots: int, dim: int, shrink: float):
        super().__init__()
        self.items = nn.Parameter(torch.empty(slots, dim))
        nn.init.kaiming_uniform_(self.items, a=5 ** 0.5)
        self.shrink = float(shrink)
        self.last_weights: torch.Tensor | None = None

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b, c, *rest = z.shape
        q = z.movedim(1, -1).reshape(-1, c)  # one query per location
        w = F.softmax(F.normalize(q, dim=1) @ F.normalize(self.items, dim=1).t(), dim=1)
        if self.shrink > 0:
            w = F.relu(w - self.shrink) * w / ((w - self.shrink).abs() + 1e-12)
            w = F.normalize(w, p=1, dim=1)
        self.last_weights = w
        return (w @ self.items).reshape(b, *rest, c).movedim(-1, 1)


def entropy(w: torch.Tensor) -> torch.Tensor:
    """Mean entropy of the attention rows (the paper's sparsity loss)."""
    return -(w * torch.log(w + 1e-12)).sum(dim=1).mean()


def _down(cin: int, cout: int, stride: tuple[int, int, int]) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm3d(cout),
                         nn.LeakyReLU(0.2, inplace=True))


def _up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose3d(cin, cout, 4, stride=2, padding=1, bias=False), nn.BatchNorm3d(cout),
                         nn.LeakyReLU(0.2, inplace=True))


class MemAE(nn.Module):
    """(B, T, H, W) frames in [-1, 1] -> their reconstruction. Encoder: four 3x3x3 convs, the first halving H and W,
    the others T, H and W (T divisible by 8, H and W by 16); the memory between; a mirrored transposed-conv decoder
    and tanh (Gong et al.: 96-128-256-256 channels, 2,000 slots; here `widths` and `slots` are smaller)."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 64), slots: int = 500, shrink: float = 0.0025):
        super().__init__()
        w0, w1, w2, w3 = widths
        self.encoder = nn.Sequential(_down(1, w0, (1, 2, 2)), _down(w0, w1, (2, 2, 2)), _down(w1, w2, (2, 2, 2)),
                                     nn.Conv3d(w2, w3, 3, stride=2, padding=1))
        self.memory = Memory(slots, w3, shrink)
        self.decoder = nn.Sequential(_up(w3, w2), _up(w2, w1), _up(w1, w0),
                                     nn.ConvTranspose3d(w0, 1, (3, 4, 4), stride=(1, 2, 2), padding=1), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, h, w = x.shape[-3:]
        if t % 8 or h % 16 or w % 16:
            raise ValueError(f"window {t} must be divisible by 8 and frame size {w}x{h} by 16")
        return self.decoder(self.memory(self.encoder(x.unsqueeze(1)))).squeeze(1)
