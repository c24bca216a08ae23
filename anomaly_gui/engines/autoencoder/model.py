"""Convolutional autoencoders of the MVTec AD paper / Bergmann et al. (VISAPP 2019, "Improving Unsupervised
Defect Segmentation by Applying Structural Similarity to Autoencoders"), the SSIM they train and score with,
and a variant whose encoder is a frozen pretrained CNN.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K = (0.01, 0.03)


def _gauss_1d(size: int, sigma: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def _filter(x: torch.Tensor, g: torch.Tensor, padding: str) -> torch.Tensor:
    c = int(x.shape[1])  # a constant when traced for ONNX export (a depthwise kernel needs a known shape)
    r = g.numel() // 2
    if padding == "same":
        mode = "reflect" if r < min(x.shape[-2:]) else "replicate"
        x = F.pad(x, (r, r, r, r), mode=mode)
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def ssim_map(x: torch.Tensor, y: torch.Tensor, window: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA,
             padding: str = "same", data_range: float = 1.0) -> torch.Tensor:
    """Per-pixel, per-channel SSIM (N, C, H, W) with a Gaussian window (Wang et al. 2004).

    padding "valid" matches the usual reference implementations; "same" (reflect) keeps the image size
    for residual maps."""
    g = _gauss_1d(window, sigma, x.device, x.dtype)
    c1, c2 = (SSIM_K[0] * data_range) ** 2, (SSIM_K[1] * data_range) ** 2
    mu_x, mu_y = _filter(x, g, padding), _filter(y, g, padding)
    sxx = _filter(x * x, g, padding) - mu_x**2
    syy = _filter(y * y, g, padding) - mu_y**2
    sxy = _filter(x * y, g, padding) - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))


def ms_ssim_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """1 - MS-SSIM (pytorch-msssim), with the window shrunk so that small patches survive 4 downsamplings."""
    from pytorch_msssim import ms_ssim

    side = min(x.shape[-2:])
    win = SSIM_WINDOW
    while win > 3 and side <= (win - 1) * 16:
        win -= 2
    if side <= (win - 1) * 16:
        raise ValueError(f"MS-SSIM needs patches larger than {(win - 1) * 16} pixels; got {side}")
    return 1.0 - ms_ssim(x, y, data_range=1.0, win_size=win)


def reconstruction_loss(x: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    """mse: mean squared error; l2: squared error summed per image (Bergmann's L2), averaged over the batch;
    ssim: 1 - mean SSIM; ms-ssim: 1 - MS-SSIM."""
    if kind == "mse":
        return F.mse_loss(y, x)
    if kind == "l2":
        return ((y - x) ** 2).flatten(1).sum(1).mean()
    if kind == "ssim":
        return 1.0 - ssim_map(x, y, padding="valid").mean()
    if kind == "ms-ssim":
        return ms_ssim_loss(x, y)
    raise ValueError(f"unknown loss {kind!r}; use mse, l2, ssim or ms-ssim")


def residual_map(x: torch.Tensor, y: torch.Tensor, kind: str) -> torch.Tensor:
    """(N, H, W) per-pixel residual: 'ssim' = 1 - SSIM (averaged over channels), 'l2' = squared error summed
    over channels."""
    if kind == "ssim":
        return (1.0 - ssim_map(x, y, padding="same")).mean(1)
    if kind == "l2":
        return ((x - y) ** 2).sum(1)
    raise ValueError(f"unknown residual {kind!r}; use ssim or l2")


def _conv(cin: int, cout: int, k: int, s: int, p: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, p), nn.LeakyReLU(0.2, inplace=True))


def _deconv(cin: int, cout: int, k: int, s: int, p: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, k, s, p), nn.LeakyReLU(0.2, inplace=True))


class CompactCAE(nn.Module):
    """Bergmann et al.'s CAE (Table 1 of the SSIM paper), for square patches whose side is a multiple of 16:
    the 8x8 bottleneck convolution of the 128-pixel original becomes (side / 16) x (side / 16)."""

    def __init__(self, channels: int = 1, patch_size: int = 128, latent_dim: int = 100, width: int = 32) -> None:
        super().__init__()
        if patch_size % 16:
            raise ValueError(f"patch size must be a multiple of 16; got {patch_size}")
        w = width
        k = patch_size // 16
        self.encoder = nn.Sequential(
            _conv(channels, w, 4, 2, 1), _conv(w, w, 4, 2, 1), _conv(w, w, 3, 1, 1),
            _conv(w, 2 * w, 4, 2, 1), _conv(2 * w, 2 * w, 3, 1, 1), _conv(2 * w, 4 * w, 4, 2, 1),
            _conv(4 * w, 2 * w, 3, 1, 1), _conv(2 * w, w, 3, 1, 1), nn.Conv2d(w, latent_dim, k, 1, 0),
        )
        self.decoder = nn.Sequential(
            _deconv(latent_dim, w, k, 1, 0), _conv(w, 2 * w, 3, 1, 1), _conv(2 * w, 4 * w, 3, 1, 1),
            _deconv(4 * w, 2 * w, 4, 2, 1), _conv(2 * w, 2 * w, 3, 1, 1), _deconv(2 * w, w, 4, 2, 1),
            _conv(w, w, 3, 1, 1), _deconv(w, w, 4, 2, 1), nn.ConvTranspose2d(w, channels, 4, 2, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(self.encoder(x)))


class PretrainedEncoderAE(nn.Module):
    """A frozen pretrained CNN encoder (stride 16 features) and a trained transposed-convolution decoder."""

    def __init__(self, channels: int = 3, backbone: str = "mobilenet_v2", layer: str = "features.13",
                 weights: str | Path | None = None, latent_channels: int = 64, width: int = 32) -> None:
        super().__init__()
        from anomaly_gui.engines.backbones import FeatureExtractor

        self.channels = channels
        self.encoder = FeatureExtractor(backbone, [layer], weights)
        self.layer = layer
        cin = self.encoder.channels()[layer]
        w = width
        self.bottleneck = nn.Sequential(nn.Conv2d(cin, latent_channels, 1), nn.LeakyReLU(0.2, inplace=True))
        self.decoder = nn.Sequential(
            _deconv(latent_channels, 4 * w, 4, 2, 1), _conv(4 * w, 4 * w, 3, 1, 1),
            _deconv(4 * w, 2 * w, 4, 2, 1), _conv(2 * w, 2 * w, 3, 1, 1),
            _deconv(2 * w, w, 4, 2, 1), _deconv(w, w, 4, 2, 1), nn.Conv2d(w, channels, 3, 1, 1),
        )

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """Only the trained parts (the encoder comes from the backbone weights)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("encoder.")}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            f = self.encoder(x)[self.layer]
        return torch.sigmoid(self.decoder(self.bottleneck(f)))
