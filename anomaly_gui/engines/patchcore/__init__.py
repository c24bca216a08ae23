"""PatchCore engine: memory bank of pretrained patch features, coreset-subsampled; nearest-neighbour scoring."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from anomaly_gui.core.errors import ModelFileError
from anomaly_gui.core.formats.base import DatasetItem
from anomaly_gui.engines.backbones import backbone_names, get_spec
from anomaly_gui.engines.base import RunContext, Task, param, register_engine
from anomaly_gui.engines.image_data import ImageEngine, as_items, autocast, iter_batches, require_images, upsample_blur
from anomaly_gui.engines.patchcore.calibration import MAX_IMAGES, border_weight, leave_image_out_distances
from anomaly_gui.engines.patchcore.model import (BANK_AUGMENTS, BORDERS, INTENSITIES, TEST_ROTATIONS,
                                                 PatchCoreExport, PatchCoreModel, augmented_views, center_crop,
                                                 chunked_coreset, crop_box, random_projection)


@dataclass
class PatchCoreParams:
    backbone: str = param("mobilenet_v2", "pretrained CNN the patch features come from", choices=backbone_names())
    layers: str = param("", "comma-separated layer names; empty = the backbone's mid-level default "
                            "(features.6,features.13 for MobileNetV2, layer2,layer3 for ResNets)", advanced=True)
    weights: str = param("", "weights file or folder for the backbone (empty: the standard search)", advanced=True)
    neighbourhood: int = param(3, "feature cells averaged around each patch (odd; 3 in the paper): 1 keeps tiny "
                                  "sharp defects sharper, larger sees more context (README: what each gave)",
                               minimum=1, maximum=9, step=2, advanced=True)
    image_size: int = param(512, "images are resized to this square size (larger: small defects cover more "
                                 "cells, scoring is slower; 256 is about 4x faster); training images that are "
                                 "smaller are not enlarged: their own size (rounded to 32) is used instead",
                            minimum=64, maximum=1024, step=32)
    border: str = param("zero", "image edges: zero = the CNN's own padding, as the original PatchCore (edge cells "
                                "score at most the interior's level: fewer edge false alarms, decision 0034); "
                                "reflect = mirror the image outwards before the CNN, so edge cells are described "
                                "like the interior's", choices=list(BORDERS))
    intensity: str = param("stretch", "grey levels: stretch = each image's darkest / brightest 1 % become black / "
                                      "white before the features, so brighter or dimmer exposures of the same part "
                                      "look alike and faint contrast counts (decision 0035); none = as recorded, for "
                                      "defects that are an overall change of brightness or exposure",
                           choices=list(INTENSITIES))
    center_crop: float = param(1.0, "fraction of each side kept around the centre after the resize (1 = the whole "
                                    "image; anomalib's default is 0.875 = 224 of 256). For parts that always sit "
                                    "away from the edge: defects in the cut-off frame are not seen", minimum=0.5,
                               maximum=1.0, step=0.025, advanced=True)
    border_pad: int = param(16, "pixels mirrored on each side with border = reflect", minimum=0, maximum=256,
                            step=8, advanced=True)
    bank_augment: str = param("none", "add rotated / flipped copies of the training images to the memory bank, "
                                      "for parts that lie in any orientation (rot90: 4 copies, flips: 4, d4: "
                                      "all 8; fit time grows alike)", choices=list(BANK_AUGMENTS))
    test_rotations: str = param("none", "score each image also turned by 90, 180 and 270 degrees; every patch keeps "
                                        "its smallest distance: for parts that lie in any orientation, without "
                                        "a larger bank, at 4x the scoring time (not in exported models)",
                                choices=list(TEST_ROTATIONS))
    coreset_ratio: float = param(0.1, "fraction of training patches kept in the memory bank", minimum=0.001,
                                 maximum=1.0, step=0.01)
    projection_dim: int = param(128, "random projection used for coreset distances (0 = none)", minimum=0,
                                maximum=1024, advanced=True)
    coreset_chunk: int = param(8192, "approximate coreset: greedy within random chunks of this many patches, so "
                                     "fit time grows linearly (0 = exact greedy over all patches)", minimum=0,
                               maximum=1 << 24, advanced=True)
    normalize: bool = param(True, "learn from the training images (each left out in turn) how far normal patches "
                                  "lie from the bank: edge cells are divided by the normal edge profile (no false "
                                  "alarms along the border) and scores by the most unusual normal image's, so 1.0 "
                                  "means 'as unusual as the most unusual normal image' for every model")
    num_neighbors: int = param(9, "bank neighbours used to reweight the image score", minimum=1, maximum=64,
                               advanced=True)
    score_mode: str = param("reweighted", "image score: the paper's reweighted max patch distance, or the max",
                            choices=["reweighted", "max"])
    sigma: float = param(4.0, "Gaussian smoothing of the map (pixels)", minimum=0.0, maximum=16.0, step=0.5)
    batch_size: int = param(16, "images per batch", minimum=1, maximum=1024)
    precision: str = param("fp32", "bf16/fp16 autocast and bf16 neighbour search on CUDA (CPU: always fp32)",
                           choices=["fp32", "bf16", "fp16"])
    runtime: str = param("auto", "CPU inference: ONNX Runtime (auto when installed, 3-4x faster) or torch",
                         choices=["auto", "torch", "onnxruntime"], advanced=True)
    knn_index: str = param("exact", "CPU nearest-neighbour search with faiss: exact (IndexFlatL2) or hnsw "
                                    "(approximate, faster with large banks)", choices=["exact", "hnsw"], advanced=True)
    seed: int = param(0, "random seed (coreset start, projection)", advanced=True)


def native_size_cap(items: Sequence[DatasetItem], size: int) -> int:
    """`size`, or the training images' median shorter side rounded to a multiple of 32 when that is smaller
    (enlarging adds no detail, only cost). Unreadable headers are left to the image loader's error."""
    from PIL import Image

    sides = []
    for it in items[:64]:
        try:
            with Image.open(it.path) as im:
                sides.append(min(im.size))
        except Exception:  # the loader names the file when it reads it
            continue
    if not sides:
        return size
    native = int(sorted(sides)[len(sides) // 2])
    return max(64, min(size, 32 * round(native / 32)))


@register_engine
class PatchCoreEngine(ImageEngine):
    name = "patchcore"
    task = Task.IMAGE
    Params = PatchCoreParams
    title = "PatchCore"
    description = ("Pretrained mid-level patch features in a coreset memory bank; the anomaly map is each patch's "
                   "distance to its nearest normal patch. The right choice for objects and parts (screws, bottles, "
                   "boards) and for textures alike, from about ten normal images; no training loop. Offered first: "
                   "best measured image AUROC (MVTec screw 0.90 vs 0.50 self-similarity; leather 0.99; ELPV solar cells 0.95; "
                   "engines/patchcore/README.md). Image edges "
                   "raise no false alarms (their level is learnt from the normal images); scores are in units of "
                   "the most unusual normal training image.")
    rank = 0
    needs = frozenset({"normal_images"})

    def __init__(self, params: Any | None = None, device: str = "auto", **overrides: Any) -> None:
        super().__init__(params, device, **overrides)
        self.model: PatchCoreModel | None = None
        self._legacy_pooling = False  # a model file fitted when border "zero" pooled only the inner cells

    def _pool_include_pad(self) -> bool:
        """With border "zero", pool as the original PatchCore (and anomalib): the zero padding counts."""
        return self.params.border == "zero" and not self._legacy_pooling

    def _layers(self) -> list[str]:
        raw = self.params.layers.strip()
        return [s.strip() for s in raw.split(",") if s.strip()] if raw else list(get_spec(self.params.backbone).default_layers)

    def _build(self) -> PatchCoreModel:
        p = self.params
        model = PatchCoreModel(p.backbone, self._layers(), p.weights or None, p.num_neighbors, p.score_mode, p.sigma,
                               use_bf16=(p.precision == "bf16" and self.device.type == "cuda"),
                               runtime=p.runtime, knn_index=p.knn_index, border=p.border, border_pad=p.border_pad,
                               neighbourhood=p.neighbourhood, pool_include_pad=self._pool_include_pad(),
                               center_crop=p.center_crop, test_rotations=p.test_rotations, intensity=p.intensity)
        return model.to(self.device)

    def fit(self, items: Sequence[DatasetItem], ctx: RunContext | None = None) -> None:
        ctx = ctx or RunContext()
        items = as_items(items)
        require_images(items, 1, "PatchCore")
        p = self.params
        t0 = time.perf_counter()
        size = native_size_cap(items, p.image_size)
        if size != p.image_size:
            ctx.log({"message": f"training images are smaller than {p.image_size} px: using {size} px"})
            p.image_size = size
        self._legacy_pooling = False
        self.model = self._build()
        chunks, ids, first_view = [], [], []
        grid: tuple[int, int] = (0, 0)
        for batch in iter_batches(items, p.image_size, 3, p.batch_size, self.device, ctx, strict=True,
                                  message="extracting features"):
            def run(x: torch.Tensor) -> torch.Tensor:
                nonlocal grid
                with autocast(self.device, p.precision):
                    e = self.model.embed(center_crop(x, p.center_crop))
                grid = (int(e.shape[-2]), int(e.shape[-1]))
                return e.permute(0, 2, 3, 1).reshape(-1, e.shape[1])

            for v, view in enumerate(augmented_views(batch.images, p.bank_augment)):
                part = torch.cat(self.with_backoff(run, view, ctx))
                chunks.append(part)
                cells = part.shape[0] // len(batch.indices)
                ids.append(torch.tensor(batch.indices, device=part.device).repeat_interleave(cells))
                first_view.append(torch.full((part.shape[0],), v == 0, device=part.device))
        feats = torch.cat(chunks)
        image_ids, first = torch.cat(ids), torch.cat(first_view)
        del chunks
        self.fit_embeddings(feats, image_ids, first, grid, len(items), ctx)
        self.stats["fit_seconds"] = round(time.perf_counter() - t0, 3)

    def fit_embeddings(self, feats: torch.Tensor, image_ids: torch.Tensor, first: torch.Tensor,
                       grid: tuple[int, int], n_images: int, ctx: RunContext | None = None) -> None:
        """The memory bank and calibration from training patch embeddings (rows of `feats` (P, D)), each
        row's training image (`image_ids`) and whether it comes from the image itself rather than an
        augmented copy (`first`); `grid` = the embedding's (h, w). `fit` calls it after extracting the
        features; benchmarks call it with cached features. Builds the model when there is none."""
        ctx = ctx or RunContext()
        p = self.params
        t0 = time.perf_counter()
        if self.model is None:
            self._legacy_pooling = False
            self.model = self._build()
        feats = feats.to(self.device)
        image_ids, first = image_ids.to(self.device), first.to(self.device)
        n_keep = max(1, int(round(feats.shape[0] * p.coreset_ratio)))
        message = f"coreset: {n_keep} of {feats.shape[0]} patches"
        ctx.progress(0, 1, message)
        ctx.check()
        t1 = time.perf_counter()
        proj = random_projection(feats.shape[1], p.projection_dim, self.device, p.seed)

        def progress(done: int, total: int) -> None:
            ctx.check()
            ctx.progress(done, total, f"{message} (part {done}/{total})")

        idx = chunked_coreset(feats, n_keep, proj, seed=p.seed, chunk_size=p.coreset_chunk,
                              use_bf16=p.precision == "bf16", progress=progress)
        self.model.set_memory_bank(feats.index_select(0, idx))
        if p.normalize:
            ctx.progress(1, 1, "learning the normal border profile and score scale")
            self._calibrate(feats, image_ids, first, image_ids.index_select(0, idx), grid, n_images)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        coreset_s = time.perf_counter() - t1
        ctx.progress(1, 1, "memory bank ready")
        self.fitted = True
        self.stats.update({
            "image_size": p.image_size, "n_train": n_images, "border": p.border, "bank_augment": p.bank_augment,
            "neighbourhood": p.neighbourhood, "center_crop": p.center_crop, "intensity": p.intensity,
            "pool_include_pad": self._pool_include_pad(),
            "n_patches": int(feats.shape[0]),
            "bank_size": int(n_keep), "feature_dim": int(feats.shape[1]), "layers": self._layers(),
            "coreset_seconds": round(coreset_s, 3), "fit_seconds": round(time.perf_counter() - t0, 3),
        })
        ctx.log({"epoch": 1, "bank_size": int(n_keep), "coreset_seconds": coreset_s})

    def _calibrate(self, feats: torch.Tensor, image_ids: torch.Tensor, first: torch.Tensor,
                   bank_ids: torch.Tensor, grid: tuple[int, int], n_images: int) -> None:
        """Border profile and score scale from leave-one-image-out distances (`calibration.py`); nothing
        with a single training image (nothing to leave out)."""
        assert self.model is not None
        if n_images < 2 or len(torch.unique(bank_ids)) < 2:
            self.stats.update({"border_weight_max": 1.0, "score_scale": 1.0})
            return
        g = torch.Generator().manual_seed(self.params.seed)
        chosen = torch.randperm(n_images, generator=g)[:MAX_IMAGES].to(feats.device)
        rows = torch.nonzero(first & torch.isin(image_ids, chosen)).squeeze(1)
        h, w = grid
        dist = leave_image_out_distances(feats.index_select(0, rows), image_ids.index_select(0, rows),
                                         self.model.memory_bank, bank_ids).view(-1, h, w)
        dist = dist[torch.isfinite(dist).flatten(1).all(1)]
        if len(dist) == 0:
            return
        weight = border_weight(dist)
        size = crop_box(int(self.params.image_size), self.params.center_crop)[1]
        maps = upsample_blur(dist / weight, (size, size), float(self.params.sigma))
        scale = float(maps.flatten(1).max(1).values.max().clamp_min(1e-12))
        self.model.set_calibration(weight, scale)
        self.stats.update({"border_weight_max": round(float(weight.max()), 4), "score_scale": round(scale, 6)})

    def _score_batch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.model is not None
        return self.model(x)

    def export_module(self) -> torch.nn.Module:
        """A traceable module with this model's scores and maps, for `engines.deploy.export_model`."""
        if self.model is None:
            raise RuntimeError("nothing to export: PatchCore is not fitted")
        if self.params.test_rotations != "none":
            raise ValueError("PatchCore with test_rotations cannot be exported yet (the exported model scores one "
                             "orientation): train with test_rotations = none to export")
        size = int(self.params.image_size)
        return PatchCoreExport(self.model, (size, size))

    def state_tensors(self) -> dict[str, Any]:
        if self.model is None:
            raise RuntimeError("nothing to save: PatchCore is not fitted")
        return {"memory_bank": self.model.memory_bank, "border_weight": self.model.border_weight,
                "score_scale": self.model.score_scale}

    def load_state_tensors(self, tensors: dict[str, Any]) -> None:
        if "memory_bank" not in tensors:
            raise ModelFileError("PatchCore model file has no memory_bank tensor")
        if "border" not in self.stats:  # a file from before border handling: its bank has zero-padded edges
            self.params.border = "zero"
        if "intensity" not in self.stats:  # a file from before the intensity option: images as recorded
            self.params.intensity = "none"
        self._legacy_pooling = "pool_include_pad" not in self.stats
        self.model = self._build()
        self.model.set_memory_bank(tensors["memory_bank"].to(self.device))
        self.model.set_calibration(tensors.get("border_weight"), tensors.get("score_scale", 1.0))
