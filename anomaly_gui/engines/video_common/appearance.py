"""Appearance of a clip's frames, judged against the normal training frames (issue 13, decision 0036).

Ped2's anomalies are bikes, carts, skateboards, wheelchairs: objects whose look is unlike the training walkers', and
some move at a walker's speed (a skater), where a frame predictor and a speed term see little (decisions 0029,
0033). This is PatchCore's memory bank (its building blocks in `engines/patch_common`, shared, not copied) over video frames: each
frame (gray, at `size`, e.g. Ped2's native 360x240) becomes ImageNet MobileNetV2 patch embeddings (`layers`, 3x3
pooling, the backbone's own zero border as PatchCore's default); a coreset of `bank_size` patches of up to
`max_frames` training frames spread evenly over the training clips is the memory; a patch's score is its distance
to the nearest bank patch, and a frame's score is the largest (`stat` "max") or the mean of the 4 largest ("top4")
of its patches, linear or in dB (`scale`). No statistic of the scored clip is used.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch

APPEARANCE_STATS = ("max", "top4")
APPEARANCE_SCALES = ("linear", "log")
DEFAULT_LAYERS = ("features.6", "features.13")
BATCH = 8  # frames per embedding call
LOG_FLOOR = 1e-6


def parse_layers(spec: str) -> tuple[str, ...]:
    """'features.6,features.13' -> ('features.6', 'features.13'); empty: the default pair."""
    out = tuple(s.strip() for s in str(spec).split(",") if s.strip())
    return out or DEFAULT_LAYERS


def evenly_spaced(n_total: int, n_pick: int) -> np.ndarray:
    """Indices of `n_pick` items spread evenly over `n_total` (all of them when n_pick >= n_total)."""
    if n_pick <= 0 or n_pick >= n_total:
        return np.arange(n_total)
    return np.unique(np.linspace(0, n_total - 1, n_pick).round().astype(np.int64))


def folds(lengths: Sequence[int], most: int = 4) -> list[np.ndarray]:
    """The fold of every frame of clips of `lengths`: whole clips dealt round-robin into min(most, clips) folds; a
    single clip is cut into its first and second half (frames of one fold never choose the memory they are scored
    against)."""
    if len(lengths) == 1:
        n = int(lengths[0])
        return [(np.arange(n) >= n // 2).astype(np.int64)] if n > 1 else [np.zeros(n, np.int64)]
    k = min(int(most), len(lengths))
    return [np.full(int(n), c % k, np.int64) for c, n in enumerate(lengths)]


def frame_statistic(patches: np.ndarray, stat: str, scale: str) -> np.ndarray:
    """(T,) frame scores from (T, h, w) patch distances: the largest or the mean of the 4 largest, linear or dB."""
    flat = patches.reshape(len(patches), -1).astype(np.float64)
    if stat == "max":
        e = flat.max(axis=1)
    elif stat == "top4":
        k = min(4, flat.shape[1])
        e = -np.partition(-flat, k - 1, axis=1)[:, :k].mean(axis=1)
    else:
        raise ValueError(f"unknown appearance statistic {stat!r}; known: {', '.join(APPEARANCE_STATS)}")
    if scale == "log":
        e = 10.0 * np.log10(np.maximum(e, LOG_FLOOR))
    elif scale != "linear":
        raise ValueError(f"unknown appearance scale {scale!r}; known: {', '.join(APPEARANCE_SCALES)}")
    return e.astype(np.float32)


class AppearanceModel:
    """A PatchCore memory bank of normal training frames' patch embeddings, scoring frames of a static camera."""

    def __init__(self, layers: Sequence[str] = DEFAULT_LAYERS, bank_size: int = 2048, stat: str = "max",
                 scale: str = "linear", seed: int = 0, weights: str | None = None) -> None:
        from anomaly_gui.engines.backbones import FeatureExtractor
        from anomaly_gui.engines.patch_common.memory import Embedder

        if stat not in APPEARANCE_STATS or scale not in APPEARANCE_SCALES:
            raise ValueError(f"appearance statistic {stat!r} / scale {scale!r}: known {APPEARANCE_STATS} / "
                             f"{APPEARANCE_SCALES}")
        self.layers, self.bank_size, self.stat, self.scale, self.seed = tuple(layers), int(bank_size), stat, scale, seed
        # PatchCore's embedding with the backbone's own zero border (its default since decision 0034)
        self.embedder = Embedder(FeatureExtractor("mobilenet_v2", self.layers, weights), border="zero",
                                 neighbourhood=3, pool_include_pad=True)
        self._onnx: Any = None
        self._channels_last = False
        self._bank = torch.zeros(0, 0)
        self._bank_sq = torch.zeros(0)
        self._index: Any = None

    # -- embeddings -----------------------------------------------------------------------------------
    @torch.inference_mode()
    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        """(n, D, h, w) fp32 embeddings of (n, 1, H, W) frames in [0, 1]: ONNX Runtime on the CPU when installed
        (3-4x faster, `patch_common/runtime.py`), else torch channels-last (as PatchCore's model)."""
        from anomaly_gui.engines.patch_common.runtime import OnnxEmbedder, onnxruntime_available

        if onnxruntime_available():
            if self._onnx is None:
                self._onnx = OnnxEmbedder(self.embedder)
            return self._onnx(x)
        if not self._channels_last:
            self.embedder.extractor.to(memory_format=torch.channels_last)
            self._channels_last = True
        return self.embedder(x.expand(-1, 3, -1, -1).contiguous(memory_format=torch.channels_last)).contiguous()

    def embeddings(self, frames: np.ndarray, check: Callable[[], None] | None = None) -> Iterator[torch.Tensor]:
        """(n, D, h, w) patch embeddings of (T, H, W) uint8 gray frames, `BATCH` frames at a time."""
        for s in range(0, len(frames), BATCH):
            if check:
                check()
            x = torch.from_numpy(np.ascontiguousarray(frames[s : s + BATCH])).float().div_(255.0)[:, None]
            yield self._embed(x)

    # -- fit --------------------------------------------------------------------------------------------
    def fit(self, clips: Sequence[np.ndarray], max_frames: int = 200,
            check: Callable[[], None] | None = None) -> list[np.ndarray]:
        """The memory from up to `max_frames` frames spread evenly over the normal training clips (each (T, H, W)
        uint8 at the model's size): a greedy k-center coreset of `bank_size` of their patches. Returns every
        training frame's patch distances (T, h, w) per clip, each measured against a memory chosen WITHOUT its own
        clip's frames (leave-clips-out, `folds`): a memory lies close to the frames it was chosen from, so distances
        of its own frames would understate what unseen normal clips give (decision 0036: the held-back normal clip
        sat 4-9 training sd above them); the training mean, spread and threshold come from these distances."""
        if not clips:
            raise ValueError("no training clip for the appearance model")
        where = [(c, i) for c, clip in enumerate(clips) for i in range(len(clip))]
        picked = evenly_spaced(len(where), int(max_frames))
        frames = np.stack([clips[where[j][0]][where[j][1]] for j in picked])
        per_frame = [e.permute(0, 2, 3, 1).reshape(len(e), -1, e.shape[1]) for e in self.embeddings(frames, check)]
        feats = torch.cat(per_frame)  # (n_picked, h*w, D)
        fold_of = folds([len(c) for c in clips])
        picked_fold = np.array([fold_of[where[j][0]][where[j][1]] for j in picked])
        out: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in clips]
        for f in sorted(set(np.concatenate(fold_of).tolist())):
            rest = torch.from_numpy(np.flatnonzero(picked_fold != f))
            if len(rest) == 0:  # one frame, or no memory frame outside this fold: its own memory it is
                rest = torch.arange(len(feats))
            self.set_bank(self._coreset(feats.index_select(0, rest).reshape(-1, feats.shape[-1])))
            for c, clip in enumerate(clips):
                mine = np.flatnonzero(fold_of[c] == f)
                if len(mine):
                    out[c].append((mine, self.patch_distances(clip[mine], check)))
        self.set_bank(self._coreset(feats.reshape(-1, feats.shape[-1])))
        result = []
        for c, clip in enumerate(clips):
            d = np.zeros((len(clip), *out[c][0][1].shape[1:]), np.float32)
            for idx, dist in out[c]:
                d[idx] = dist
            result.append(d)
        return result

    def _coreset(self, rows: torch.Tensor) -> torch.Tensor:
        from anomaly_gui.engines.patch_common.memory import chunked_coreset, random_projection

        proj = random_projection(int(rows.shape[1]), 128, rows.device, self.seed)
        idx = chunked_coreset(rows, min(self.bank_size, int(rows.shape[0])), proj, seed=self.seed, chunk_size=16384)
        return rows.index_select(0, idx)

    def set_bank(self, bank: torch.Tensor) -> None:
        self._bank = bank.detach().float().cpu().contiguous()
        self._bank_sq = (self._bank**2).sum(1)
        self._index = None

    @property
    def bank(self) -> torch.Tensor:
        """(M, D) the memory of training patch embeddings."""
        return self._bank

    # -- score --------------------------------------------------------------------------------------------
    def nearest_distances(self, e: torch.Tensor) -> torch.Tensor:
        """(n, h, w) distance of each patch of embeddings (n, D, h, w) to its nearest memory patch: faiss when
        installed (`patch_common/knn.py`), else the chunked torch search."""
        from anomaly_gui.engines.patch_common.knn import BankIndex, faiss_available
        from anomaly_gui.engines.patch_common.memory import nearest

        if self._bank.numel() == 0:
            raise RuntimeError("the appearance model has no memory bank: fit it first")
        n, d, h, w = e.shape
        flat = e.permute(0, 2, 3, 1).reshape(-1, d)
        if faiss_available():
            if self._index is None:
                self._index = BankIndex(self._bank, "exact")
            dist = self._index.search(flat, 1)[0][:, 0].clamp_min(0).sqrt()
        else:
            dist = nearest(flat, self._bank, self._bank_sq)[0]
        return dist.view(n, h, w)

    def patch_distances(self, frames: np.ndarray, check: Callable[[], None] | None = None) -> np.ndarray:
        """(T, h, w) distance of every patch to its nearest bank patch."""
        out = [self.nearest_distances(e).cpu().numpy() for e in self.embeddings(frames, check)]
        return np.concatenate(out).astype(np.float32)

    def frame_scores(self, frames: np.ndarray, check: Callable[[], None] | None = None) -> np.ndarray:
        """(T,) appearance score of every frame (unsmoothed)."""
        return frame_statistic(self.patch_distances(frames, check), self.stat, self.scale)
