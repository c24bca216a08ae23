"""PatchCore (Roth et al., CVPR 2022) as a pure torch module.

- Mid-level features of a frozen pretrained CNN, each layer averaged over a 3x3 neighbourhood, resized to
  the first layer's grid and concatenated: one embedding per patch (`engines/patch_common/memory.py`, shared
  with the video appearance term).
- Greedy k-center coreset of the patch embeddings, distances taken in a random projection; runs on the
  module's device with no host synchronisation inside the loop (`patch_common/memory.py`).
- Nearest-neighbour search in the memory bank by chunked matmul with a running minimum (the full
  query x bank distance matrix never exists); optional bf16 matmul on CUDA, the final distance to the
  chosen neighbour recomputed in fp32 (`patch_common/memory.py`; faiss on the CPU: `patch_common/knn.py`).
- Image score: the paper's reweighting of the largest patch distance (or the plain maximum), pixel map:
  patch distances upsampled to the input size and smoothed with a Gaussian (sigma 4).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from anomaly_gui.engines.backbones import FeatureExtractor
from anomaly_gui.engines.image_data import upsample_blur
from anomaly_gui.engines.patch_common.knn import INDEX_KINDS, BankIndex, faiss_available
from anomaly_gui.engines.patch_common.memory import (  # noqa: F401  (re-exported: the engine's building blocks)
    BLOCK_ELEMENTS,
    BLOCK_ELEMENTS_CPU,
    BORDERS,
    INTENSITIES,
    Embedder,
    chunked_coreset,
    embed,
    greedy_coreset,
    knn,
    nearest,
    random_projection,
    stretch_intensity,
)
from anomaly_gui.engines.patch_common.runtime import RUNTIMES, OnnxEmbedder, onnxruntime_available

BANK_AUGMENTS = ("none", "flips", "rot90", "d4")
TEST_ROTATIONS = ("none", "rot90")


def augmented_views(x: torch.Tensor, kind: str) -> list[torch.Tensor]:
    """The training batch (N, C, H, W) and its copies for an augmented memory bank: "flips" adds the
    horizontal, vertical and both flips, "rot90" the 90/180/270-degree rotations, "d4" all eight symmetries
    of the square."""
    if kind not in BANK_AUGMENTS:
        raise ValueError(f"unknown bank augmentation {kind!r}; known: {', '.join(BANK_AUGMENTS)}")
    if kind == "none":
        return [x]
    if kind == "flips":
        return [x, x.flip(-1), x.flip(-2), x.flip(-1, -2)]
    rots = [x if k == 0 else torch.rot90(x, k, dims=(-2, -1)) for k in range(4)]
    return rots if kind == "rot90" else rots + [r.flip(-1) for r in rots]


def crop_box(size: int, fraction: float) -> tuple[int, int]:
    """(offset, side) of the centred square that keeps `fraction` of a side of `size` pixels."""
    side = max(1, min(size, int(round(size * float(fraction)))))
    return (size - side) // 2, side


def center_crop(x: torch.Tensor, fraction: float) -> torch.Tensor:
    """The centred `fraction` of each side of (N, C, H, W) images (anomalib's default keeps 224 / 256)."""
    if fraction >= 1.0:
        return x
    (oy, h), (ox, w) = crop_box(int(x.shape[-2]), fraction), crop_box(int(x.shape[-1]), fraction)
    return x[..., oy:oy + h, ox:ox + w]


def paste_center(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, h, w) maps of a centre crop put back in place on (N, H, W), zero (not inspected) around them."""
    H, W = size
    h, w = int(maps.shape[-2]), int(maps.shape[-1])
    if (h, w) == (H, W):
        return maps
    oy, ox = (H - h) // 2, (W - w) // 2
    return F.pad(maps, (ox, W - w - ox, oy, H - h - oy))


class PatchCoreModel(nn.Module):
    """Feature extractor + memory bank. `forward(x)` -> (image scores (N,), maps (N, H, W)).

    On the CPU the embedding runs in ONNX Runtime (``runtime="auto"`` when it is installed; `runtime.py`)
    and the nearest-neighbour search in faiss (`knn.py`), else in torch (channels-last, chunked search)."""

    def __init__(self, backbone: str = "mobilenet_v2", layers: Sequence[str] | None = None,
                 weights: str | None = None, num_neighbors: int = 9, score_mode: str = "reweighted",
                 sigma: float = 4.0, use_bf16: bool = False, runtime: str = "auto", knn_index: str = "exact",
                 border: str = "reflect", border_pad: int = 16, neighbourhood: int = 3,
                 pool_include_pad: bool = False, center_crop: float = 1.0, test_rotations: str = "none",
                 intensity: str = "none") -> None:
        super().__init__()
        if test_rotations not in TEST_ROTATIONS:
            raise ValueError(f"unknown test_rotations {test_rotations!r}; known: {', '.join(TEST_ROTATIONS)}")
        self.test_rotations = test_rotations
        if not 0.0 < center_crop <= 1.0:
            raise ValueError(f"center_crop is the fraction of each side kept, in (0, 1]; got {center_crop}")
        self.center_crop = float(center_crop)
        if runtime not in RUNTIMES:
            raise ValueError(f"unknown runtime {runtime!r}; known: {', '.join(RUNTIMES)}")
        if knn_index not in INDEX_KINDS:
            raise ValueError(f"unknown nearest-neighbour index {knn_index!r}; known: {', '.join(INDEX_KINDS)}")
        self.extractor = FeatureExtractor(backbone, layers, weights)
        self.border, self.border_pad, self.neighbourhood = border, border_pad, neighbourhood
        self.pool_include_pad, self.intensity = pool_include_pad, intensity
        # shares the extractor; no second copy
        object.__setattr__(self, "embedder", Embedder(self.extractor, border, border_pad, neighbourhood,
                                                      pool_include_pad, intensity))
        self._channels_last = False
        self.layers = self.extractor.layers
        self.num_neighbors = num_neighbors
        self.score_mode = score_mode
        self.sigma = sigma
        self.use_bf16 = use_bf16
        self.runtime = runtime
        self.knn_index = knn_index
        self._onnx: OnnxEmbedder | None = None
        self._index: BankIndex | None = None
        self.register_buffer("memory_bank", torch.zeros(0, 0))
        self.register_buffer("bank_sq", torch.zeros(0))
        self.register_buffer("border_weight", torch.zeros(0, 0))  # (h, w) divisor of patch distances; empty: none
        self.register_buffer("score_scale", torch.ones(()))  # scores and maps are divided by it

    def set_calibration(self, border_weight: torch.Tensor | None, score_scale: float | torch.Tensor = 1.0) -> None:
        """The training statistics of `calibration.py` (None / 1.0: raw distances)."""
        dev = self.memory_bank.device
        self.border_weight = (border_weight if border_weight is not None else torch.zeros(0, 0)).float().to(dev)
        self.score_scale = torch.as_tensor(score_scale, dtype=torch.float32).reshape(()).to(dev)

    def normalise_patches(self, patch: torch.Tensor) -> torch.Tensor:
        """(n, h, w) patch distances over the border profile (when it was learnt for this grid)."""
        if tuple(self.border_weight.shape) == tuple(patch.shape[-2:]):
            return patch / self.border_weight
        return patch

    def set_memory_bank(self, bank: torch.Tensor) -> None:
        self.memory_bank = bank.float().contiguous()
        self.bank_sq = (self.memory_bank**2).sum(1)
        self._index = None

    def _on_cpu(self) -> bool:
        return self.memory_bank.device.type == "cpu"

    def uses_onnxruntime(self) -> bool:
        if self.runtime == "torch" or not self._on_cpu():
            return False
        if self.runtime == "onnxruntime" and not onnxruntime_available():
            raise RuntimeError("runtime 'onnxruntime' asked for, but onnxruntime is not installed "
                               "(pip install onnxruntime)")
        return onnxruntime_available()

    def bank_index(self) -> BankIndex | None:
        """The faiss index of the bank on the CPU (built once per bank), None on a GPU or without faiss."""
        if not self._on_cpu() or not faiss_available() or self.memory_bank.numel() == 0:
            if self.knn_index != "exact" and self._on_cpu() and not faiss_available():
                raise RuntimeError(f"knn_index {self.knn_index!r} needs faiss (pip install faiss-cpu)")
            return None
        if self._index is None:
            self._index = BankIndex(self.memory_bank, self.knn_index)
        return self._index

    @torch.inference_mode()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D, h, w) patch embeddings in fp32."""
        if self.uses_onnxruntime():
            if self._onnx is None:
                self._onnx = OnnxEmbedder(self.embedder)
            return self._onnx(x)
        if x.device.type == "cpu":  # oneDNN's fast convolutions want NHWC on the CPU
            if not self._channels_last:
                self.extractor.to(memory_format=torch.channels_last)
                self._channels_last = True
            x = x.contiguous(memory_format=torch.channels_last)
        return self.embedder(x).contiguous()

    @torch.inference_mode()
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.memory_bank.numel() == 0:
            raise RuntimeError("PatchCore has no memory bank: fit it first")
        xc = center_crop(x, self.center_crop)
        size = (int(xc.shape[-2]), int(xc.shape[-1]))
        if self.test_rotations == "rot90" and size[0] == size[1]:
            scores, maps = self._score_rotations(xc)
        else:
            scores, maps = self.score_embeddings(self.embed(xc), size)
        return scores, paste_center(maps, (int(x.shape[-2]), int(x.shape[-1])))

    def _score_rotations(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Test-time rotation: the square batch and its 90 / 180 / 270-degree turns are searched in the bank,
        each patch keeps its smallest (normalised) distance over the four, taken back to the image's frame;
        the image score is the largest of those (the part in whichever orientation the bank knows best)."""
        best = None
        for r in range(4):
            e = self.embed(torch.rot90(x, r, dims=(-2, -1)) if r else x)
            patch = self._patch_distances(e)[1]
            patch = torch.rot90(patch, -r, dims=(-2, -1)) if r else patch
            best = patch if best is None else torch.minimum(best, patch)
        assert best is not None
        maps = upsample_blur(best, (int(x.shape[-2]), int(x.shape[-1])), self.sigma)
        return best.flatten(1).max(1).values / self.score_scale, maps / self.score_scale

    def _patch_distances(self, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                         BankIndex | None]:
        """(embeddings (n, h*w, D), normalised patch distances (n, h, w), nearest bank rows (n, h*w), the
        faiss index or None) of patch embeddings (n, D, h, w)."""
        e = e.to(self.memory_bank.device)
        n, d, h, w = e.shape
        flat = e.permute(0, 2, 3, 1).reshape(-1, d)
        index = self.bank_index()
        if index is not None:
            d2, i1 = index.search(flat, 1)
            dist, idx = d2[:, 0].clamp_min(0).sqrt(), i1[:, 0]
        else:
            dist, idx = nearest(flat, self.memory_bank, self.bank_sq, self.use_bf16)
        return flat.view(n, h * w, d), self.normalise_patches(dist.view(n, h, w)), idx.view(n, h * w), index

    @torch.inference_mode()
    def score_embeddings(self, e: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(image scores (N,), maps (N, H, W) at `size`) of patch embeddings (N, D, h, w) from `embed`."""
        flat, patch, idx, index = self._patch_distances(e)
        n, h, w = patch.shape
        scores = self._image_scores(flat, patch.reshape(n, h * w), idx, index)
        maps = upsample_blur(patch, size, self.sigma)
        return scores / self.score_scale, maps / self.score_scale

    def _image_scores(self, emb: torch.Tensor, patch: torch.Tensor, idx: torch.Tensor,
                      index: BankIndex | None = None) -> torch.Tensor:
        """Largest patch distance, reweighted as in the paper (Eq. 7) unless score_mode is "max"."""
        s_star, p_star = patch.max(1)
        if self.score_mode == "max" or self.memory_bank.shape[0] < 2:
            return s_star
        n = emb.shape[0]
        ar = torch.arange(n, device=emb.device)
        m_test = emb[ar, p_star]  # (n, d) the most anomalous test patch
        m_star = self.memory_bank.index_select(0, idx[ar, p_star])  # its nearest bank patch
        if index is not None and index.kind == "exact":
            support = index.search(m_star, self.num_neighbors)[1]  # (n, k), m_star first
        else:
            support = knn(m_star, self.memory_bank, self.num_neighbors, self.bank_sq)
        d_support = torch.cdist(m_test.unsqueeze(1), self.memory_bank[support]).squeeze(1)  # (n, k)
        weights = 1.0 - torch.softmax(d_support, dim=1)[:, 0]
        return weights * s_star


class PatchCoreExport(nn.Module):
    """`PatchCoreModel.forward` without Python control flow, for ONNX / OpenVINO: images (N, 3, H, W) in
    [0, 1] -> (scores (N,), maps (N, H, W)). The bank search is one (N, h*w, M) distance block per batch
    (25 MB an image for a 6,144-patch bank at 256 px), the map smoothing two constant matrices."""

    def __init__(self, model: PatchCoreModel, image_size: tuple[int, int]) -> None:
        super().__init__()
        self.embedder = Embedder(model.extractor, model.border, model.border_pad, model.neighbourhood,
                                 model.pool_include_pad, model.intensity)
        self.register_buffer("bank", model.memory_bank.detach().clone().float())
        self.register_buffer("bank_sq", (self.bank**2).sum(1))
        self.register_buffer("border_weight", model.border_weight.detach().clone().float())
        self.register_buffer("inv_scale", 1.0 / model.score_scale.detach().clone().float())
        self.k = min(model.num_neighbors, self.bank.shape[0])
        self.reweight = model.score_mode != "max" and self.bank.shape[0] >= 2
        self.image_size = tuple(image_size)
        self.center_crop = model.center_crop
        H, W = crop_box(image_size[0], model.center_crop)[1], crop_box(image_size[1], model.center_crop)[1]
        with torch.no_grad():
            e = self.embedder(torch.zeros(1, 3, H, W, device=self.bank.device))
        h, w = e.shape[-2:]
        mode = "reflect" if int(round(4 * model.sigma)) < min(H, W) else "replicate"
        from anomaly_gui.engines.image_data import _upsample_blur_operator

        self.register_buffer("a_v", _upsample_blur_operator(h, H, float(model.sigma), mode).clone())
        self.register_buffer("a_h", _upsample_blur_operator(w, W, float(model.sigma), mode).clone())

    def _sq_dist(self, q: torch.Tensor) -> torch.Tensor:
        return (q**2).sum(-1, keepdim=True) + self.bank_sq - 2.0 * q @ self.bank.t()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        e = self.embedder(center_crop(x, self.center_crop))
        n, d, h, w = e.shape
        flat = e.permute(0, 2, 3, 1).reshape(n, h * w, d)
        d2, nn_idx = self._sq_dist(flat).min(-1)  # (n, h*w)
        patch = d2.clamp_min(0).sqrt()
        if tuple(self.border_weight.shape) == (h, w):
            patch = (patch.view(n, h, w) / self.border_weight).reshape(n, h * w)
        s_star, p_star = patch.max(1)
        maps = paste_center(self.a_v @ patch.view(n, h, w) @ self.a_h.t() * self.inv_scale, self.image_size)
        if not self.reweight:
            return s_star * self.inv_scale, maps
        m_test = torch.gather(flat, 1, p_star.view(n, 1, 1).expand(n, 1, d)).squeeze(1)  # (n, d)
        m_star = self.bank[torch.gather(nn_idx, 1, p_star.view(n, 1)).squeeze(1)]  # (n, d)
        support = self._sq_dist(m_star).topk(self.k, dim=1, largest=False).indices  # (n, k)
        d_support = ((m_test.unsqueeze(1) - self.bank[support]) ** 2).sum(-1).sqrt()
        weights = 1.0 - torch.softmax(d_support, dim=1)[:, 0]
        return weights * s_star * self.inv_scale, maps
