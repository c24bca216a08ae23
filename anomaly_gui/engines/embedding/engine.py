"""Contrastive embedding + one-class SVM per species: the wildlife novelty engine.

fit: crops (boxes or whole images) -> CNN encoder trained on augmented views (NT-Xent or triplet
margin) with a class-balanced sampler -> embeddings -> one OneClassSVM per species.
score: an animal is anomalous when it lies outside its species' model, or (species unknown to every
model, or no label used) outside all of them. Score = -(normalised decision), so 0 is the boundary.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from anomaly_gui.core.crops import GENERIC_LABELS, CropSpec, crop_specs, load_crops
from anomaly_gui.core.errors import DataError
from anomaly_gui.core.formats.base import DatasetItem
from anomaly_gui.engines.base import Engine, RunContext, ScoreResult, Task, param
from anomaly_gui.engines.embedding.network import (EmbeddingNet, augment, find_mobilenet_weights, nt_xent_loss,
                                                   other_index, triplet_loss)
from anomaly_gui.engines.embedding.oneclass import OneClassModel, fit_oneclass, models_from_tensors, models_to_tensors

LOSSES = ("ntxent", "triplet")


@dataclass
class EmbeddingParams:
    loss: str = param("ntxent", "Contrastive loss: SimCLR NT-Xent or triplet margin (positive = augmentation)", choices=list(LOSSES))
    image_size: int = param(96, "Crop size fed to the encoder (pixels)", minimum=32, maximum=512, step=16)
    projection_dim: int = param(128, "Size of the projection head output", minimum=8, maximum=1024)
    temperature: float = param(0.5, "NT-Xent temperature", minimum=0.01, maximum=5.0, step=0.05)
    margin: float = param(0.5, "Triplet margin (on unit-length embeddings)", minimum=0.0, maximum=2.0, step=0.05)
    lr: float = param(3e-4, "Learning rate (Adam)", minimum=1e-6, maximum=1e-1)
    epochs: int = param(10, "Contrastive training epochs (0 = pretrained features only)", minimum=0, maximum=500)
    batch_size: int = param(32, "Crops per batch (two views each)", minimum=2, maximum=1024)
    pretrained: bool = param(True, "Start from ImageNet MobileNetV2 weights (offline file)")
    weights_path: str = param("", "MobileNetV2 weights file or folder (empty = default places)", advanced=True)
    trainable_blocks: int = param(4, "Backbone blocks trained (from the top; -1 = all)", minimum=-1, maximum=19, advanced=True)
    balanced_sampler: bool = param(True, "Sample species equally often (against class imbalance)")
    pad: float = param(0.1, "Padding around boxes (fraction of box size per side)", minimum=0.0, maximum=1.0, step=0.05)
    min_box_score: float = param(0.2, "Ignore detections below this confidence", minimum=0.0, maximum=1.0, step=0.05)
    embed_space: str = param("backbone", "Embeddings for the one-class models: pooled backbone features or projection", choices=["backbone", "projection"], advanced=True)
    nu: float = param(0.1, "One-class SVM nu (expected outlier fraction in training)", minimum=0.001, maximum=1.0, step=0.01)
    gamma: float = param(0.0, "RBF gamma (0 = 1 / (dim * variance), shared by all species)", minimum=0.0, advanced=True)
    use_labels: bool = param(True, "Score an animal against its labelled species' model (off: against the nearest model)")
    seed: int = param(0, "Random seed", advanced=True)


class EmbeddingEngine(Engine):
    """Base of the registered variants (they differ by the default loss)."""

    task = Task.EMBEDDING
    Params = EmbeddingParams
    needs = frozenset({"classes", "boxes"})

    def __init__(self, params: Any | None = None, device: str = "auto", **overrides: Any):
        super().__init__(params, device, **overrides)
        if self.params.loss not in LOSSES:
            raise ValueError(f"unknown loss {self.params.loss!r}; known: {', '.join(LOSSES)}")
        self.net = EmbeddingNet(self.params.projection_dim).to(self.device)
        self.models: dict[str, OneClassModel] = {}

    # -- training ----------------------------------------------------------------------------
    def fit(self, items: Sequence[DatasetItem], ctx: RunContext | None = None) -> None:
        ctx = ctx or RunContext()
        p = self.params
        t0 = time.perf_counter()
        torch.manual_seed(p.seed)
        gen = torch.Generator().manual_seed(p.seed)
        if p.pretrained:  # before the (slow) crops: a missing weights file is reported at once
            self.net.load_imagenet(find_mobilenet_weights(p.weights_path))
        specs = crop_specs(items, min_score=p.min_box_score)
        crops, kept, problems = load_crops(specs, p.image_size, p.pad, progress=ctx.progress, check=ctx.check)
        if not kept:
            raise DataError(items[0].path if items else ".", f"no readable crop among {len(specs)} ({problems[:1]})")
        labels = [specs[k].label for k in kept]
        losses = self._train(crops, labels, ctx, gen) if p.epochs > 0 and len(kept) >= 2 else []
        emb = self.embed_array(crops, ctx)
        counts = Counter(labels)
        gamma = p.gamma if p.gamma > 0 else _shared_gamma(emb)
        self.models = {}
        for name in sorted(counts):
            rows = np.array([i for i, lab in enumerate(labels) if lab == name])
            self.models[name] = fit_oneclass(emb[rows], nu=p.nu, gamma=gamma)
        self.stats = {
            "species": sorted(self.models), "counts": dict(counts), "n_crops": len(kept), "n_items": len(items),
            "losses": losses, "gamma": gamma, "threshold": 0.0, "fit_seconds": time.perf_counter() - t0,
            "problems": [str(e) for e in problems[:20]],
        }
        self.fitted = True

    def _train(self, crops: np.ndarray, labels: list[str], ctx: RunContext, gen: torch.Generator) -> list[float]:
        p = self.params
        n = len(labels)
        names = sorted(set(labels))
        lab_idx = torch.tensor([names.index(lab) for lab in labels])
        counts = torch.bincount(lab_idx).float()
        weights = (1.0 / counts[lab_idx]) if p.balanced_sampler else torch.ones(n)
        self.net.freeze_backbone(p.trainable_blocks)
        opt = torch.optim.Adam([q for q in self.net.parameters() if q.requires_grad], lr=p.lr)
        data = torch.from_numpy(crops).permute(0, 3, 1, 2)
        bs = max(2, min(p.batch_size, n))
        steps = max(1, n // bs)
        losses: list[float] = []
        self.net.train_mode()
        for epoch in range(p.epochs):
            total = 0.0
            for step in range(steps):
                ctx.check()
                idx = torch.multinomial(weights, bs, replacement=False, generator=gen)
                x = data[idx].to(self.device).float() / 255.0
                v1, v2 = augment(x, gen), augment(x, gen)
                _, z1 = self.net(v1)
                _, z2 = self.net(v2)
                if p.loss == "ntxent":
                    loss = nt_xent_loss(z1, z2, p.temperature)
                else:
                    neg = other_index(lab_idx[idx], bs, gen).to(self.device)
                    loss = triplet_loss(z1, z2, z2[neg], p.margin)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach())
                ctx.progress(epoch * steps + step + 1, p.epochs * steps, f"epoch {epoch + 1}/{p.epochs}")
            losses.append(total / steps)
            ctx.log({"epoch": epoch + 1, "loss": losses[-1]})
        self.net.eval()
        return losses

    # -- embeddings and scores ---------------------------------------------------------------
    @torch.no_grad()
    def embed_array(self, crops: np.ndarray, ctx: RunContext | None = None, batch: int = 64) -> np.ndarray:
        """(n, h, w, 3) uint8 crops -> (n, d) float32 unit-length embeddings."""
        self.net.eval()
        out = []
        for i in range(0, len(crops), batch):
            if ctx is not None:
                ctx.check()
            x = torch.from_numpy(crops[i:i + batch]).permute(0, 3, 1, 2).to(self.device).float() / 255.0
            h, z = self.net(x)
            e = h if self.params.embed_space == "backbone" else z
            out.append(F.normalize(e, dim=1).cpu().numpy())
        return np.concatenate(out, 0).astype(np.float32) if out else np.zeros((0, 1), np.float32)

    def embed_specs(self, specs: Sequence[CropSpec], ctx: RunContext | None = None) -> tuple[np.ndarray, list[int], list[DataError]]:
        ctx = ctx or RunContext()
        crops, kept, problems = load_crops(specs, self.params.image_size, self.params.pad, check=ctx.check)
        return self.embed_array(crops, ctx), kept, problems

    def crop_scores(self, emb: np.ndarray, labels: Sequence[str]) -> list[dict[str, Any]]:
        """Per crop: score, nearest species, whether its species is known to a model."""
        if not self.models:
            raise RuntimeError("the engine is not fitted: no species model")
        names = sorted(self.models)
        dec = np.stack([self.models[s].normalised(emb) for s in names], axis=1) if len(emb) else np.zeros((0, len(names)))
        out = []
        for i, lab in enumerate(labels):
            best = int(np.argmax(dec[i]))
            given = bool(lab) and lab.lower() not in GENERIC_LABELS and self.params.use_labels
            known = given and lab in self.models
            score = -float(dec[i, names.index(lab)]) if known else -float(dec[i, best])
            unknown = given and not known
            out.append({"score": score, "species": lab, "nearest_species": names[best], "unknown_species": unknown,
                        "is_anomaly": bool(score > self.stats.get("threshold", 0.0) or unknown)})
        return out

    def score(self, items: Sequence[DatasetItem], ctx: RunContext | None = None) -> list[ScoreResult]:
        ctx = ctx or RunContext()
        p = self.params
        specs = crop_specs(items, min_score=p.min_box_score)
        results: list[ScoreResult] = [ScoreResult(score=None, error="no readable crop") for _ in items]
        chunk = 256
        for start in range(0, len(specs), chunk):
            part = specs[start:start + chunk]
            emb, kept, problems = self.embed_specs(part, ctx)
            for e in problems:
                results[_item_of(part, e)].error = str(e)
            rows = self.crop_scores(emb, [part[k].label for k in kept])
            for j, k in enumerate(kept):
                s = part[k]
                res = results[s.item_index]
                crops = res.extra.setdefault("crops", [])
                crops.append({**rows[j], "box": list(s.box) if s.box else None})
                if res.score is None or rows[j]["score"] > res.score:
                    res.score = rows[j]["score"]
                    res.embedding = emb[j]
                    res.extra.update({k2: rows[j][k2] for k2 in ("species", "nearest_species", "unknown_species")})
                    res.species = rows[j]["species"]
                    res.crop_box = list(s.box) if s.box else None
                    res.error = None
                res.extra["is_anomaly"] = any(c["is_anomaly"] for c in crops)
            ctx.progress(min(start + chunk, len(specs)), len(specs), "scoring crops")
        return results

    # -- persistence -------------------------------------------------------------------------
    def state_tensors(self) -> dict[str, Any]:
        tensors: dict[str, Any] = {f"net.{k}": v for k, v in self.net.state_dict().items()}
        svm, names = models_to_tensors(self.models)
        self.stats["species"] = names
        tensors.update(svm)
        return tensors

    def load_state_tensors(self, tensors: dict[str, Any]) -> None:
        net = {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}
        self.net.load_state_dict(net)
        self.net.to(self.device).eval()
        self.models = models_from_tensors(tensors, list(self.stats.get("species", [])))


def _shared_gamma(emb: np.ndarray) -> float:
    var = float(emb.var()) if emb.shape[0] > 1 else 0.0
    return 1.0 / (emb.shape[1] * var) if var > 1e-12 else 1.0 / max(emb.shape[1], 1)


def _item_of(specs: Sequence[CropSpec], err: DataError) -> int:
    for s in specs:
        if str(err.path) == str(s.path):
            return s.item_index
    return specs[0].item_index
