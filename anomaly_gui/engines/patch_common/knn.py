"""Nearest-neighbour search in a PatchCore memory bank on the CPU: faiss when installed, torch otherwise.

- ``exact``: faiss ``IndexFlatL2`` (BLAS blocks tuned by faiss, several threads, no Python per query);
  the same neighbours as a brute-force search.
- ``hnsw``: faiss ``IndexHNSWFlat`` (approximate; ``benchmarks/bench_patchcore_knn.py`` measures its recall
  and the AUROC it gives). Only used when asked for.

On a GPU (or without faiss) the chunked torch search of `model.nearest` / `model.knn` is used instead.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

INDEX_KINDS = ("exact", "hnsw")


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


class BankIndex:
    """A faiss index over the rows of a (M, D) float32 memory bank on the CPU."""

    def __init__(self, bank: torch.Tensor, kind: str = "exact", hnsw_m: int = 32, ef_search: int = 64) -> None:
        import faiss

        if kind not in INDEX_KINDS:
            raise ValueError(f"unknown nearest-neighbour index {kind!r}; known: {', '.join(INDEX_KINDS)}")
        data = np.ascontiguousarray(bank.detach().cpu().float().numpy())
        d = data.shape[1]
        self.kind = kind
        if kind == "exact":
            self.index: Any = faiss.IndexFlatL2(d)
        else:
            self.index = faiss.IndexHNSWFlat(d, hnsw_m)
            self.index.hnsw.efConstruction = 80
            self.index.hnsw.efSearch = ef_search
        self.index.add(data)

    def search(self, q: torch.Tensor, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """(squared distances (Q, k), indices (Q, k) int64) of each query row's k nearest bank rows."""
        import faiss

        faiss.omp_set_num_threads(max(1, torch.get_num_threads()))
        qn = np.ascontiguousarray(q.detach().cpu().float().numpy())
        dist, idx = self.index.search(qn, min(k, self.index.ntotal))
        return torch.from_numpy(dist), torch.from_numpy(idx)
