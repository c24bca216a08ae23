"""CNN self-similarity engine (Napoletano et al., Sensors 2018): k-means dictionary of normal patch features."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from anomaly_gui.core.errors import ModelFileError
from anomaly_gui.core.formats.base import DatasetItem
from anomaly_gui.engines.backbones import backbone_names
from anomaly_gui.engines.base import RunContext, Task, param, register_engine
from anomaly_gui.engines.border import border_weight
from anomaly_gui.engines.image_data import ImageEngine, as_items, autocast, iter_batches, require_images
from anomaly_gui.engines.selfsimilarity.model import SelfSimilarityModel


#: training images whose maps give the border profile
MAX_BORDER_IMAGES = 16


@dataclass
class SelfSimilarityParams:
    backbone: str = param("mobilenet_v2", "pretrained CNN that describes the patches", choices=backbone_names())
    layers: str = param("features.6,features.13", "comma-separated layers (empty = backbone default)", advanced=True)
    weights: str = param("", "weights file or folder for the backbone (empty: the standard search)", advanced=True)
    image_size: int = param(256, "images are resized to this square size", minimum=64, maximum=1024, step=32)
    border: str = param("reflect", "image edges: reflect = mirror the image outwards before the CNN and divide "
                                   "the outer rings by their normal level learnt on the training images (no "
                                   "false alarms along the edges); zero = the CNN's own zero padding",
                        choices=["reflect", "zero"])
    border_pad: int = param(16, "pixels mirrored on each side with border = reflect", minimum=0, maximum=256,
                            step=8, advanced=True)
    patch_cells: int = param(3, "patch size in feature cells (descriptors averaged over it)", minimum=1, maximum=9)
    n_words: int = param(64, "dictionary size (k of k-means)", minimum=2, maximum=4096)
    m_nearest: int = param(5, "words averaged for a patch's score (m)", minimum=1, maximum=64)
    pca_dim: int = param(64, "PCA dimensions before k-means (0 = none)", minimum=0, maximum=1024)
    augment: bool = param(True, "add flipped copies of the training images (helps with a single image)")
    sigma: float = param(4.0, "Gaussian smoothing of the map (pixels)", minimum=0.0, maximum=16.0, step=0.5)
    batch_size: int = param(16, "images per batch", minimum=1, maximum=512)
    max_patches: int = param(200000, "patch descriptors used for PCA and k-means at most (random subset)",
                             minimum=1000, maximum=5000000, advanced=True)
    precision: str = param("fp32", "bf16/fp16 autocast on CUDA", choices=["fp32", "bf16", "fp16"])
    seed: int = param(0, "random seed", advanced=True)


@register_engine
class SelfSimilarityEngine(ImageEngine):
    name = "selfsimilarity"
    task = Task.IMAGE
    Params = SelfSimilarityParams
    title = "CNN self-similarity"
    description = ("Pretrained CNN features of patches, a k-means dictionary of normal patches; a patch is anomalous "
                   "when it is far from its nearest dictionary words. The right choice for textures and regular "
                   "surfaces (leather, fabric, solar cells) from one or a few normal images: it learns what the "
                   "surface is made of, not where things are, so it is no choice for objects whose parts depend on "
                   "position or pose (MVTec screw: near chance). engines/selfsimilarity/README.md has the figures.")
    rank = 1
    needs = frozenset({"normal_images"})

    def __init__(self, params: Any | None = None, device: str = "auto", **overrides: Any) -> None:
        super().__init__(params, device, **overrides)
        self.model: SelfSimilarityModel | None = None

    def _build(self) -> SelfSimilarityModel:
        p = self.params
        layers = [s.strip() for s in p.layers.split(",") if s.strip()] or None
        pad = p.border_pad if p.border == "reflect" else 0
        return SelfSimilarityModel(p.backbone, layers, p.weights or None, p.patch_cells, p.m_nearest,
                                   True, p.sigma, pad).to(self.device)

    def fit(self, items: Sequence[DatasetItem], ctx: RunContext | None = None) -> None:
        from sklearn.cluster import MiniBatchKMeans
        from sklearn.decomposition import PCA

        ctx = ctx or RunContext()
        items = as_items(items)
        require_images(items, 1, "CNN self-similarity")
        p = self.params
        t0 = time.perf_counter()
        self.model = self._build()
        chunks, calib = [], None
        for batch in iter_batches(items, p.image_size, 3, p.batch_size, self.device, ctx, strict=True,
                                  message="describing patches"):
            if calib is None:
                calib = batch.images[:MAX_BORDER_IMAGES]
            views = [batch.images]
            if p.augment:
                views += [batch.images.flip(-1), batch.images.flip(-2)]
            for v in views:
                with autocast(self.device, p.precision):
                    d = self.model.descriptors(v).float()
                chunks.append(d.permute(0, 2, 3, 1).reshape(-1, d.shape[1]).cpu())
        desc = torch.cat(chunks).numpy().astype(np.float32)
        rng = np.random.default_rng(p.seed)
        if len(desc) > p.max_patches:
            desc = desc[rng.choice(len(desc), p.max_patches, replace=False)]
        ctx.check()
        mean = comps = None
        if p.pca_dim and p.pca_dim < desc.shape[1]:
            ctx.progress(0, 2, "PCA")
            pca = PCA(n_components=min(p.pca_dim, len(desc) - 1), random_state=p.seed).fit(desc)
            mean, comps = pca.mean_.astype(np.float32), pca.components_.T.astype(np.float32)
            desc = (desc - mean) @ comps
        k = min(p.n_words, len(desc))
        ctx.progress(1, 2, f"k-means dictionary of {k} words from {len(desc)} patches")
        ctx.check()
        km = MiniBatchKMeans(n_clusters=k, random_state=p.seed, n_init=3, batch_size=4096, max_iter=100)
        km.fit(desc)
        ctx.progress(2, 2, "dictionary ready")
        self.model.set_dictionary(torch.from_numpy(km.cluster_centers_.astype(np.float32)),
                                  None if mean is None else torch.from_numpy(mean),
                                  None if comps is None else torch.from_numpy(comps))
        if p.border == "reflect" and calib is not None:
            with autocast(self.device, p.precision):
                weight = border_weight(self.model.patch_scores(calib).float())
            self.model.set_border_weight(weight)
            self.stats["border_weight_max"] = round(float(weight.max()), 4)
        self.fitted = True
        self.stats.update({"image_size": p.image_size, "n_train": len(items), "n_words": int(k), "border": p.border,
                           "n_patches": int(len(desc)), "kmeans_inertia": float(km.inertia_),
                           "fit_seconds": round(time.perf_counter() - t0, 3)})
        ctx.log({"epoch": 1, "loss": float(km.inertia_) / max(1, len(desc))})

    def _score_batch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.model is not None
        return self.model(x)

    def export_module(self) -> torch.nn.Module:
        """The scoring module itself (descriptors, PCA, distances to the nearest words, map, maximum): it has
        no Python control flow that depends on the data, so it traces to ONNX as it is."""
        if self.model is None:
            raise RuntimeError("nothing to export: the model is not fitted")
        return self.model

    def state_tensors(self) -> dict[str, Any]:
        if self.model is None:
            raise RuntimeError("nothing to save: the model is not fitted")
        return {"words": self.model.words, "pca_mean": self.model.pca_mean, "pca_components": self.model.pca_components,
                "border_weight": self.model.border_weight}

    def load_state_tensors(self, tensors: dict[str, Any]) -> None:
        if "words" not in tensors:
            raise ModelFileError("self-similarity model file has no dictionary ('words')")
        if "border" not in self.stats:  # a file from before border handling: its words saw zero-padded edges
            self.params.border = "zero"
        self.model = self._build()
        self.model.set_dictionary(tensors["words"], tensors.get("pca_mean"), tensors.get("pca_components"))
        self.model.set_border_weight(tensors.get("border_weight"))
