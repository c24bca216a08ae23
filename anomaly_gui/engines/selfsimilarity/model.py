"""CNN self-similarity (Napoletano, Piccoli, Schettini, Sensors 2018) as a torch module.

The paper describes each image patch by pretrained CNN features, learns a dictionary of normal patches by
k-means, and scores a test patch by its mean distance to the m nearest dictionary words; overlapping patch
scores give the pixel map. Here the patch descriptors are read densely from the backbone's feature maps
(each feature cell is the CNN's response to the patch in its receptive field, averaged over a
`patch_cells` x `patch_cells` window), which gives the same descriptors as cropping patches at the
feature stride, in one forward pass per image. Descriptors are L2-normalised (optional) and reduced by PCA
before k-means, as in the paper.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from anomaly_gui.engines.backbones import FeatureExtractor
from anomaly_gui.engines.border import reflect_border
from anomaly_gui.engines.image_data import gaussian_blur, upsample_map


class SelfSimilarityModel(nn.Module):
    """Dense patch descriptors -> distance to the m nearest of k dictionary words."""

    def __init__(self, backbone: str = "mobilenet_v2", layers: Sequence[str] | None = None, weights: str | None = None,
                 patch_cells: int = 3, m_nearest: int = 5, normalize: bool = True, sigma: float = 4.0,
                 border_pad: int = 0) -> None:
        super().__init__()
        self.extractor = FeatureExtractor(backbone, layers, weights)
        self.layers = self.extractor.layers
        self.patch_cells = patch_cells
        self.m_nearest = m_nearest
        self.normalize = normalize
        self.sigma = sigma
        self.border_pad = border_pad  # > 0: reflect padding of the input (`backbones.reflect_border`)
        self.register_buffer("pca_mean", torch.zeros(0))
        self.register_buffer("pca_components", torch.zeros(0, 0))  # (D, d)
        self.register_buffer("words", torch.zeros(0, 0))  # (k, d)
        self.register_buffer("border_weight", torch.zeros(0, 0))  # (h, w) divisor of patch scores; empty: none

    @torch.no_grad()
    def descriptors(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D, h, w) patch descriptors before PCA (input mirrored outwards by `border_pad` pixels and the
        descriptors cropped back, so the CNN's zero padding does not make the image edge look unusual)."""
        return reflect_border(self._descriptors, x, self.border_pad)

    def _descriptors(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.extractor(x)
        first = feats[self.layers[0]]
        parts = []
        for name in self.layers:
            f = feats[name].float()
            if self.patch_cells > 1:
                f = F.avg_pool2d(f, self.patch_cells, stride=1, padding=self.patch_cells // 2, count_include_pad=False)
            if f.shape[-2:] != first.shape[-2:]:
                f = F.interpolate(f, size=first.shape[-2:], mode="bilinear", align_corners=False)
            parts.append(f)
        d = torch.cat(parts, 1)
        if self.normalize:
            d = F.normalize(d, dim=1)
        return d

    def project(self, flat: torch.Tensor) -> torch.Tensor:
        if self.pca_components.numel() == 0:
            return flat
        return (flat - self.pca_mean) @ self.pca_components

    def set_dictionary(self, words: torch.Tensor, pca_mean: torch.Tensor | None = None,
                       pca_components: torch.Tensor | None = None) -> None:
        dev = self.words.device
        self.words = words.float().to(dev)
        self.pca_mean = (pca_mean if pca_mean is not None else torch.zeros(0)).float().to(dev)
        self.pca_components = (pca_components if pca_components is not None else torch.zeros(0, 0)).float().to(dev)

    @torch.no_grad()
    def patch_scores(self, x: torch.Tensor) -> torch.Tensor:
        """(N, h, w) mean distance of each patch to its m nearest words, before the border profile."""
        if self.words.numel() == 0:
            raise RuntimeError("the dictionary is empty: fit first")
        d = self.descriptors(x)
        n, c, h, w = d.shape
        flat = self.project(d.permute(0, 2, 3, 1).reshape(-1, c))
        dist = torch.cdist(flat, self.words)  # (n*h*w, k); k is small (a dictionary, not a bank)
        m = min(self.m_nearest, self.words.shape[0])
        return dist.topk(m, dim=1, largest=False).values.mean(1).view(n, h, w)

    def set_border_weight(self, weight: torch.Tensor | None) -> None:
        """(h, w) divisor of the patch scores learnt on normal images (`border.border_weight`); None: none."""
        self.border_weight = (weight if weight is not None else torch.zeros(0, 0)).float().to(self.words.device)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        patch = self.patch_scores(x)
        if tuple(self.border_weight.shape) == tuple(patch.shape[-2:]):
            patch = patch / self.border_weight
        maps = gaussian_blur(upsample_map(patch.unsqueeze(1), tuple(x.shape[-2:])), self.sigma)[:, 0]
        return maps.flatten(1).max(1).values, maps
