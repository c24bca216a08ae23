"""PatchCore (Roth et al., CVPR 2022) as a pure torch module, plus its GPU-friendly building blocks.

- Mid-level features of a frozen pretrained CNN, each layer averaged over a 3x3 neighbourhood, resized to
  the first layer's grid and concatenated: one embedding per patch.
- Greedy k-center coreset of the patch embeddings, distances taken in a random projection; runs on the
  module's device with no host synchronisation inside the loop.
- Nearest-neighbour search in the memory bank by chunked matmul with a running minimum (the full
  query x bank distance matrix never exists); optional bf16 matmul on CUDA, the final distance to the
  chosen neighbour recomputed in fp32.
- Image score: the paper's reweighting of the largest patch distance (or the plain maximum), pixel map:
  patch distances upsampled to the input size and smoothed with a Gaussian (sigma 4).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from anomaly_gui.engines.backbones import FeatureExtractor
from anomaly_gui.engines.image_data import gaussian_blur, upsample_map

#: elements of a query-chunk x bank-chunk block (bounds memory: 2**26 floats = 256 MB in fp32 on a GPU;
#: smaller on the CPU, where cache-sized blocks are faster)
BLOCK_ELEMENTS = 1 << 26
BLOCK_ELEMENTS_CPU = 1 << 22


def embed(features: dict[str, torch.Tensor], layers: Sequence[str]) -> torch.Tensor:
    """(N, D, h, w) patch embeddings: 3x3 average pooling per layer, resized to the first grid, concatenated."""
    first = features[layers[0]]
    size = first.shape[-2:]
    parts = []
    for name in layers:
        f = F.avg_pool2d(features[name], kernel_size=3, stride=1, padding=1, count_include_pad=False)
        if f.shape[-2:] != size:
            f = F.interpolate(f, size=size, mode="bilinear", align_corners=False)
        parts.append(f)
    return torch.cat(parts, dim=1)


def random_projection(dim_in: int, dim_out: int, device: torch.device, seed: int = 0) -> torch.Tensor | None:
    """A Gaussian Johnson-Lindenstrauss projection (dim_in, dim_out), None when no reduction is needed."""
    if dim_out <= 0 or dim_out >= dim_in:
        return None
    g = torch.Generator(device="cpu").manual_seed(seed)
    return (torch.randn(dim_in, dim_out, generator=g) / math.sqrt(dim_out)).to(device)


@torch.no_grad()
def greedy_coreset(x: torch.Tensor, n: int, projection: torch.Tensor | None = None, seed: int = 0,
                   use_bf16: bool = False) -> torch.Tensor:
    """Indices (n,) of a greedy k-center coreset of rows of `x` (N, D), on x's device.

    The loop keeps everything on the device (argmax index stays a tensor), so a GPU never waits for the host.
    """
    N = x.shape[0]
    if n >= N:
        return torch.arange(N, device=x.device)
    z = x.float() @ projection if projection is not None else x.float()
    if use_bf16 and z.is_cuda:
        z = z.to(torch.bfloat16)
    sq = (z.float() ** 2).sum(1)
    g = torch.Generator(device="cpu").manual_seed(seed)
    start = int(torch.randint(N, (1,), generator=g))
    selected = torch.empty(n, dtype=torch.long, device=x.device)
    idx = torch.tensor([start], device=x.device)
    min_d = torch.full((N,), float("inf"), device=x.device)
    for i in range(n):
        selected[i : i + 1] = idx
        c = z.index_select(0, idx)  # (1, D)
        d = sq + sq.index_select(0, idx) - 2.0 * (z @ c.t()).squeeze(1).float()
        torch.minimum(min_d, d, out=min_d)
        idx = torch.argmax(min_d).view(1)
    return selected


@torch.no_grad()
def nearest(q: torch.Tensor, bank: torch.Tensor, bank_sq: torch.Tensor | None = None, use_bf16: bool = False,
            block_elements: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(distance, index) of each query row's nearest bank row, Euclidean.

    Chunked over queries and bank with a running minimum; never the full distance matrix."""
    if block_elements is None:
        block_elements = BLOCK_ELEMENTS if q.is_cuda else BLOCK_ELEMENTS_CPU
    bank_sq = (bank.float() ** 2).sum(1) if bank_sq is None else bank_sq
    Q, M = q.shape[0], bank.shape[0]
    bank_chunk = min(M, max(1024, block_elements // max(1, min(Q, 4096))))
    q_chunk = max(1, min(Q, block_elements // bank_chunk))
    low = use_bf16 and q.is_cuda
    bank_mm = bank.to(torch.bfloat16) if low else bank.float()
    best_d = torch.empty(Q, device=q.device)
    best_i = torch.empty(Q, dtype=torch.long, device=q.device)
    for qs in range(0, Q, q_chunk):
        qq = q[qs : qs + q_chunk].float()
        q_sq = (qq**2).sum(1, keepdim=True)
        qm = qq.to(torch.bfloat16) if low else qq
        run_d = torch.full((qq.shape[0],), float("inf"), device=q.device)
        run_i = torch.zeros(qq.shape[0], dtype=torch.long, device=q.device)
        for bs in range(0, M, bank_chunk):
            d = bank_sq[bs : bs + bank_chunk].unsqueeze(0) - 2.0 * (qm @ bank_mm[bs : bs + bank_chunk].t()).float()
            dmin, imin = d.min(1)
            better = dmin < run_d
            run_d = torch.where(better, dmin, run_d)
            run_i = torch.where(better, imin + bs, run_i)
        if low:  # exact fp32 distance to the chosen neighbour
            run_d = ((qq - bank.index_select(0, run_i).float()) ** 2).sum(1)
        else:
            run_d = run_d + q_sq.squeeze(1)
        best_d[qs : qs + q_chunk] = run_d.clamp_min(0).sqrt()
        best_i[qs : qs + q_chunk] = run_i
    return best_d, best_i


@torch.no_grad()
def knn(q: torch.Tensor, bank: torch.Tensor, k: int, bank_sq: torch.Tensor | None = None) -> torch.Tensor:
    """Indices (Q, k) of the k nearest bank rows of each (few) query row, chunked over the bank."""
    bank_sq = (bank.float() ** 2).sum(1) if bank_sq is None else bank_sq
    k = min(k, bank.shape[0])
    chunk = max(4096, BLOCK_ELEMENTS // max(1, q.shape[0]))
    best_d = torch.full((q.shape[0], 0), float("inf"), device=q.device)
    best_i = torch.zeros((q.shape[0], 0), dtype=torch.long, device=q.device)
    qf = q.float()
    for bs in range(0, bank.shape[0], chunk):
        d = bank_sq[bs : bs + chunk].unsqueeze(0) - 2.0 * qf @ bank[bs : bs + chunk].float().t()
        d_all = torch.cat([best_d, d], 1)
        i_all = torch.cat([best_i, torch.arange(bs, bs + d.shape[1], device=q.device).expand(q.shape[0], -1)], 1)
        best_d, pos = d_all.topk(min(k, d_all.shape[1]), dim=1, largest=False)
        best_i = i_all.gather(1, pos)
    return best_i


class PatchCoreModel(nn.Module):
    """Feature extractor + memory bank. `forward(x)` -> (image scores (N,), maps (N, H, W))."""

    def __init__(self, backbone: str = "mobilenet_v2", layers: Sequence[str] | None = None,
                 weights: str | None = None, num_neighbors: int = 9, score_mode: str = "reweighted",
                 sigma: float = 4.0, use_bf16: bool = False) -> None:
        super().__init__()
        self.extractor = FeatureExtractor(backbone, layers, weights)
        self.layers = self.extractor.layers
        self.num_neighbors = num_neighbors
        self.score_mode = score_mode
        self.sigma = sigma
        self.use_bf16 = use_bf16
        self.register_buffer("memory_bank", torch.zeros(0, 0))
        self.register_buffer("bank_sq", torch.zeros(0))

    def set_memory_bank(self, bank: torch.Tensor) -> None:
        self.memory_bank = bank.float().contiguous()
        self.bank_sq = (self.memory_bank**2).sum(1)

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D, h, w) patch embeddings in fp32."""
        return embed(self.extractor(x), self.layers).float()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.memory_bank.numel() == 0:
            raise RuntimeError("PatchCore has no memory bank: fit it first")
        e = self.embed(x)
        n, d, h, w = e.shape
        flat = e.permute(0, 2, 3, 1).reshape(-1, d)
        dist, idx = nearest(flat, self.memory_bank, self.bank_sq, self.use_bf16)
        patch = dist.view(n, h * w)
        idx = idx.view(n, h * w)
        scores = self._image_scores(flat.view(n, h * w, d), patch, idx)
        maps = upsample_map(patch.view(n, 1, h, w), tuple(x.shape[-2:]))
        maps = gaussian_blur(maps, self.sigma)
        return scores, maps[:, 0]

    def _image_scores(self, emb: torch.Tensor, patch: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Largest patch distance, reweighted as in the paper (Eq. 7) unless score_mode is "max"."""
        s_star, p_star = patch.max(1)
        if self.score_mode == "max" or self.memory_bank.shape[0] < 2:
            return s_star
        n = emb.shape[0]
        ar = torch.arange(n, device=emb.device)
        m_test = emb[ar, p_star]  # (n, d) the most anomalous test patch
        m_star = self.memory_bank.index_select(0, idx[ar, p_star])  # its nearest bank patch
        support = knn(m_star, self.memory_bank, self.num_neighbors, self.bank_sq)  # (n, k), m_star first
        d_support = torch.cdist(m_test.unsqueeze(1), self.memory_bank[support]).squeeze(1)  # (n, k)
        weights = 1.0 - torch.softmax(d_support, dim=1)[:, 0]
        return weights * s_star
