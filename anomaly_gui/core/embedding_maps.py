"""2-D maps of embeddings (t-SNE, PCA), DBSCAN on the map, the k-distance curve, and their storage.

t-SNE uses openTSNE (FFT-accelerated, scales to 10^5 points) when installed and falls back to
scikit-learn's Barnes-Hut t-SNE otherwise. Embeddings of a run are kept as `.npy` files in the
run's cache folder (`embeddings.npy`, `item_ids.npy`, `labels.json`). Qt-free.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.geometry import points_in_polygon  # noqa: F401  (the lasso's; re-exported)
from anomaly_gui.core.imageio import atomic_path, write_text

MAP_METHODS = ("tsne", "pca")


def pca_reduce(x: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """First `k` principal components (n, k) float32; randomised SVD for large inputs, zero-padded when
    there are fewer dimensions or points than `k`."""
    x = np.asarray(x, np.float32)
    n = x.shape[0]
    out = np.zeros((n, k), np.float32)
    if n < 2:
        return out
    xc = x - x.mean(axis=0, keepdims=True)
    m = min(k, x.shape[1], n)
    if min(x.shape) > 4 * k and n * x.shape[1] > 200_000:
        from sklearn.utils.extmath import randomized_svd

        u, s, _ = randomized_svd(xc, m, n_iter=4, random_state=seed)
    else:
        u, s, _ = np.linalg.svd(xc.astype(np.float64), full_matrices=False)
    out[:, :m] = (u[:, :m] * s[:m]).astype(np.float32)
    return out


def pca_2d(x: np.ndarray) -> np.ndarray:
    """First two principal components (n, 2) float32."""
    x = np.asarray(x)
    return pca_reduce(x, 2) if x.shape[0] else np.zeros((0, 2), np.float32)


def tsne_2d(x: np.ndarray, perplexity: float = 30.0, seed: int = 0, n_jobs: int | None = None, backend: str = "auto",
            n_iter: int = 250, early_exaggeration_iter: int = 100) -> np.ndarray:
    """t-SNE map (n, 2) float32. `backend`: auto (openTSNE if installed), opentsne or sklearn. `n_iter`
    counts all iterations, the first `early_exaggeration_iter` of them exaggerated. 250 in all (PCA
    initialisation, FFT gradients): at 10,000 points the map is as trustworthy as with 500 iterations
    (0.984 both, k=10; `benchmarks/bench_embedding.py --compare-iterations`) in half the time.
    `n_jobs`: threads (default: every core).

    Inputs wider than 50 dimensions are first reduced to 50 principal components (the usual t-SNE
    practice; it makes the neighbour search cheap). Perplexity is capped below n/3 so small sets work;
    fewer than 4 points fall back to PCA.
    """
    x = np.ascontiguousarray(np.asarray(x, np.float32))
    n_jobs = n_jobs or os.cpu_count() or 1
    if x.shape[1] > 50 and x.shape[0] > 50:
        x = pca_reduce(x, 50, seed)
    n = x.shape[0]
    if n < 4:
        return pca_2d(x)
    perp = float(max(1.0, min(perplexity, (n - 1) / 3.0)))
    if backend in ("auto", "opentsne"):
        try:
            import openTSNE
        except ImportError:
            if backend == "opentsne":
                raise
        else:
            emb = openTSNE.TSNE(
                n_components=2, perplexity=perp, random_state=seed, n_jobs=n_jobs, initialization="pca",
                negative_gradient_method="fft" if n > 1000 else "bh", verbose=False,
                early_exaggeration_iter=min(early_exaggeration_iter, n_iter), n_iter=max(n_iter - early_exaggeration_iter, 1),
            ).fit(x)
            return np.asarray(emb, np.float32)
    from sklearn.manifold import TSNE

    return TSNE(n_components=2, perplexity=perp, random_state=seed, init="pca", max_iter=max(n_iter, 250),
                n_jobs=n_jobs).fit_transform(x).astype(np.float32)


def map_2d(x: np.ndarray, method: str = "tsne", **kw: Any) -> np.ndarray:
    """`tsne` or `pca` map of the rows of `x`."""
    if method == "pca":
        return pca_2d(x)
    if method == "tsne":
        return tsne_2d(x, **kw)
    raise ValueError(f"unknown map method {method!r}; known: {', '.join(MAP_METHODS)}")


def k_distance(points: np.ndarray, k: int = 4) -> np.ndarray:
    """Sorted (ascending) distance of each point to its k-th nearest neighbour: the curve whose knee
    is a good DBSCAN eps (with min_samples = k + 1, the point itself counted)."""
    from sklearn.neighbors import NearestNeighbors

    pts = np.asarray(points, np.float64)
    n = pts.shape[0]
    if n < 2:
        return np.zeros(n, np.float32)
    kk = min(k, n - 1)
    dist, _ = NearestNeighbors(n_neighbors=kk + 1).fit(pts).kneighbors(pts)
    return np.sort(dist[:, kk]).astype(np.float32)


def suggest_eps(kdist: np.ndarray) -> float:
    """The knee of a sorted k-distance curve: the point farthest from the chord joining its ends."""
    d = np.asarray(kdist, np.float64)
    n = d.shape[0]
    if n == 0:
        return 1.0
    if n < 3 or d[-1] - d[0] < 1e-12:
        return float(max(d[-1], 1e-6))
    x = np.linspace(0.0, 1.0, n)
    y = (d - d[0]) / (d[-1] - d[0])
    knee = int(np.argmax(x - y))  # convex increasing curve: the chord lies above it
    return float(max(d[knee], 1e-6))


def dbscan_labels(points: np.ndarray, eps: float, min_samples: int = 5) -> np.ndarray:
    """DBSCAN cluster of each point (-1 = noise, the anomalies of the map)."""
    from sklearn.cluster import DBSCAN

    pts = np.asarray(points, np.float64)
    if pts.shape[0] == 0:
        return np.zeros(0, np.int64)
    return DBSCAN(eps=float(eps), min_samples=int(min_samples)).fit_predict(pts).astype(np.int64)


@dataclass
class EmbeddingSet:
    """Embeddings of items, with what the cluster view shows about them."""

    item_ids: np.ndarray  # (n,) int64
    embeddings: np.ndarray  # (n, d) float32
    labels: list[str] = field(default_factory=list)  # species per point
    scores: np.ndarray | None = None  # anomaly score per point (higher = more anomalous)
    crop_boxes: list[list[float] | None] = field(default_factory=list)  # pixel box of the crop, None = whole image
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.item_ids.shape[0])


def save_embedding_set(folder: str | Path, es: EmbeddingSet) -> Path:
    """Write `embeddings.npy`, `item_ids.npy` (+ `scores.npy`) and `embeddings.json` into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, arr in (("embeddings", es.embeddings.astype(np.float32)), ("item_ids", es.item_ids.astype(np.int64)),
                      ("scores", None if es.scores is None else es.scores.astype(np.float32))):
        if arr is None:
            (folder / f"{name}.npy").unlink(missing_ok=True)
            continue
        with atomic_path(folder / f"{name}.npy") as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, arr, allow_pickle=False)
    write_text(folder / "embeddings.json", json.dumps({"labels": es.labels, "crop_boxes": es.crop_boxes,
                                                        "meta": es.meta, "saved": time.time()}))
    return folder


def load_embedding_set(folder: str | Path) -> EmbeddingSet:
    """Read what `save_embedding_set` wrote; DataError naming the file when missing or damaged."""
    folder = Path(folder)
    try:
        emb = np.load(folder / "embeddings.npy", allow_pickle=False)
        ids = np.load(folder / "item_ids.npy", allow_pickle=False)
        scores = np.load(folder / "scores.npy", allow_pickle=False) if (folder / "scores.npy").is_file() else None
    except (OSError, ValueError) as exc:
        raise DataError(folder / "embeddings.npy", f"cannot read embeddings ({exc})") from exc
    try:
        info = json.loads((folder / "embeddings.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(folder / "embeddings.json", f"cannot read ({exc})") from exc
    if emb.ndim != 2 or emb.shape[0] != ids.shape[0]:
        raise DataError(folder / "embeddings.npy", f"shape {emb.shape} does not match {ids.shape[0]} item ids")
    labels = list(info.get("labels", [])) or [""] * len(ids)
    boxes = list(info.get("crop_boxes", [])) or [None] * len(ids)
    return EmbeddingSet(ids, emb.astype(np.float32), labels, scores, boxes, dict(info.get("meta", {})))


@dataclass
class ClusterMap:
    """A 2-D map of an embedding set with its DBSCAN clustering."""

    xy: np.ndarray
    method: str
    seconds: float
    kdist: np.ndarray
    eps: float
    min_samples: int
    clusters: np.ndarray


def compute_cluster_map(es: EmbeddingSet, method: str = "tsne", min_samples: int = 5, eps: float | None = None,
                        perplexity: float = 30.0, check: Callable[[], None] | None = None) -> ClusterMap:
    """Map + k-distance + DBSCAN (eps from the knee unless given): the work the cluster view runs in a worker."""
    x = es.embeddings
    t0 = time.perf_counter()
    xy = map_2d(x, method, perplexity=perplexity) if method == "tsne" else map_2d(x, method)
    seconds = time.perf_counter() - t0
    if check is not None:
        check()
    kd = k_distance(xy, max(1, min_samples - 1))
    e = float(eps) if eps else suggest_eps(kd)
    return ClusterMap(xy, method, seconds, kd, e, min_samples, dbscan_labels(xy, e, min_samples))
