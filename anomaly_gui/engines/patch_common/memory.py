"""Patch memories shared by PatchCore (`engines/patchcore`) and the video appearance term
(`video_common/appearance.py`): patch embeddings of a frozen pretrained CNN, a greedy k-center coreset of them,
and the nearest-neighbour search in the memory (moved here from `patchcore/model.py`, decision 0036).

- `embed`: each layer averaged over a 3x3 neighbourhood, resized to the first layer's grid and concatenated.
- `greedy_coreset` / `chunked_coreset`: k-center coreset, distances in a random projection, on the device.
- `nearest` / `knn`: chunked matmul with a running minimum (never the full distance matrix); optional bf16 on CUDA.
- `Embedder`: backbone + pooling, with the border handling of decision 0034.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from anomaly_gui.engines.backbones import FeatureExtractor
from anomaly_gui.engines.border import reflect_border

#: elements of a query-chunk x bank-chunk block (bounds memory: 2**26 floats = 256 MB in fp32 on a GPU;
#: smaller on the CPU, where cache-sized blocks are faster)
BLOCK_ELEMENTS = 1 << 26
BLOCK_ELEMENTS_CPU = 1 << 22


def embed(features: dict[str, torch.Tensor], layers: Sequence[str], neighbourhood: int = 3,
          include_pad: bool = False) -> torch.Tensor:
    """(N, D, h, w) patch embeddings: `neighbourhood` x `neighbourhood` average pooling per layer (3 in the
    paper), resized to the first grid, concatenated. `include_pad`: the pooling counts the zero padding at the
    image edge (the paper's code and anomalib: torch's default), else it averages only the cells inside."""
    first = features[layers[0]]
    size = first.shape[-2:]
    parts = []
    for name in layers:
        f = features[name]
        if neighbourhood > 1:
            f = F.avg_pool2d(f, kernel_size=neighbourhood, stride=1, padding=neighbourhood // 2,
                             count_include_pad=include_pad)
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
def chunked_coreset(x: torch.Tensor, n: int, projection: torch.Tensor | None = None, seed: int = 0,
                    chunk_size: int = 16384, use_bf16: bool = False,
                    progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Indices (n,) of an approximate greedy k-center coreset: the rows are shuffled, cut into chunks of
    about `chunk_size`, and each chunk contributes a greedy coreset of its share of `n`.

    Cost grows linearly with the number of rows (the exact greedy grows with rows x kept rows) and each
    chunk's projected features stay in the CPU cache. `benchmarks/bench_coreset.py` measures how well the
    result covers the patches compared with the exact greedy. chunk_size <= 0 or >= N: the exact greedy."""
    N = x.shape[0]
    if n >= N:
        return torch.arange(N, device=x.device)
    if chunk_size <= 0 or N <= chunk_size:
        out = greedy_coreset(x, n, projection, seed, use_bf16)
        if progress:
            progress(1, 1)
        return out
    g = torch.Generator(device="cpu").manual_seed(seed)
    order = torch.randperm(N, generator=g).to(x.device)
    k = math.ceil(N / chunk_size)
    bounds = [round(i * N / k) for i in range(k + 1)]
    keep = [round(b * n / N) for b in bounds]  # cumulative shares: exactly n in total
    picked = []
    for i in range(k):
        rows = order[bounds[i] : bounds[i + 1]]
        m = keep[i + 1] - keep[i]
        if m > 0:
            local = greedy_coreset(x.index_select(0, rows), m, projection, seed + i, use_bf16)
            picked.append(rows.index_select(0, local))
        if progress:
            progress(i + 1, k)
    return torch.cat(picked)


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


BORDERS = ("reflect", "zero")
INTENSITIES = ("none", "stretch")


def stretch_intensity(x: torch.Tensor, low: float = 0.01, high: float = 0.99) -> torch.Tensor:
    """(N, C, H, W) images in [0, 1], each stretched so that the `low` / `high` quantiles of its grey level
    (the channel mean) become 0 / 1, clipped: brighter or dimmer exposures of the same thing look alike
    (electroluminescence cells, decision 0035). Quantiles interpolated as `torch.quantile` does, at positions
    fixed by the image size (constants when traced, so the export keeps it)."""
    v = x.mean(1).flatten(1).sort(dim=1).values  # no batch size in the graph: exported models take any batch
    m = int(v.shape[1])

    def quantile(q: float) -> torch.Tensor:
        pos = q * (m - 1)
        i = math.floor(pos)
        f = pos - i
        return v[:, i] * (1.0 - f) + v[:, min(i + 1, m - 1)] * f

    lo, hi = quantile(low), quantile(high)
    lo, span = lo[:, None, None, None], (hi - lo).clamp_min(1e-3)[:, None, None, None]
    return ((x - lo) / span).clamp(0.0, 1.0)


class Embedder(nn.Module):
    """Backbone + PatchCore pooling: (N, 3|1, H, W) in [0, 1] -> (N, D, h, w) fp32 patch embeddings.

    border "reflect": the image is mirrored outwards by `pad` pixels before the backbone and the embedding
    cropped back to the image's own cells, so the CNN's zero padding falls outside the image and border
    patches look like their neighbours (without it, every edge of a normal image is "hot"). "zero": the
    backbone's own padding at the image edge (the original PatchCore, whose pooling counts that padding:
    `pool_include_pad`, off only for model files fitted before it was matched). intensity "stretch": each
    image's grey levels are stretched first (`stretch_intensity`)."""

    def __init__(self, extractor: FeatureExtractor, border: str = "reflect", pad: int = 16,
                 neighbourhood: int = 3, pool_include_pad: bool = False, intensity: str = "none") -> None:
        super().__init__()
        if border not in BORDERS:
            raise ValueError(f"unknown border handling {border!r}; known: {', '.join(BORDERS)}")
        if intensity not in INTENSITIES:
            raise ValueError(f"unknown intensity handling {intensity!r}; known: {', '.join(INTENSITIES)}")
        self.intensity = intensity
        self.extractor = extractor
        self.layers = extractor.layers
        self.pad = int(pad) if border == "reflect" else 0
        if neighbourhood < 1 or neighbourhood % 2 == 0:
            raise ValueError(f"neighbourhood must be an odd number of cells; got {neighbourhood}")
        self.neighbourhood = int(neighbourhood)
        self.pool_include_pad = bool(pool_include_pad)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        return embed(self.extractor(x), self.layers, self.neighbourhood, self.pool_include_pad).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.intensity == "stretch":
            x = stretch_intensity(x)
        return reflect_border(self._embed, x, self.pad)
