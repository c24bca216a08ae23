"""Wildlife novelty engine: pretrained embeddings, optional contrastive fine-tuning, per-species scorers.

fit: crops (boxes or whole images) -> ImageNet MobileNetV2 global features -> per-species scorer
(k-NN distance by default; Mahalanobis or one-class SVM as options) with calibrated per-species scales.
Contrastive fine-tuning (NT-Xent or triplet margin) is tried when `epochs` > 0 and kept only when it
improves pseudo-novelty AUROC on training species alone (some species held out of tuning play the
unseen animal; `validation.py`); the run records which encoder was chosen and both figures.
score: an animal is anomalous when it lies far from its species (normalised distance above the
threshold calibrated on the training photos), or (species unknown, or labels not used) far from all.
"""
from __future__ import annotations

import copy
import functools
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from anomaly_gui.core.crops import GENERIC_LABELS, CropSpec, crop_specs, load_crops
from anomaly_gui.core.errors import DataError
from anomaly_gui.core.formats.base import DatasetItem
from anomaly_gui.core.formats.camtrap import species_key
from anomaly_gui.core.splits import group_key
from anomaly_gui.engines.base import Engine, RunContext, ScoreResult, Task, param
from anomaly_gui.engines.embedding.animal_crop import is_infrared, locate_animals
from anomaly_gui.engines.embedding.features import embed_kinds
from anomaly_gui.engines.embedding.network import (EmbeddingNet, augment, find_mobilenet_weights, nt_xent_loss,
                                                   other_index, triplet_loss)
from anomaly_gui.engines.embedding.scoring import SCORERS, make_scorer, scorer_from_tensors
from anomaly_gui.engines.embedding.selection import Candidate, choose
from anomaly_gui.engines.embedding.validation import finetune_split, pseudo_novelty_auroc, split_auroc

LOSSES = ("ntxent", "triplet")
ENCODERS = ("auto", "pretrained", "finetuned")
COLOURS = ("auto", "rgb", "gray")
ANIMAL_CROPS = ("auto", "cam_day", "cam", "whole")
SCORER_CHOICES = ("auto",) + SCORERS
FEATURES = ("auto", "unit", "animal", "raw")
#: what the `auto` settings choose from (crop, features, scorer), in the order a tie is settled: first decision
#: 0024's default (chosen on 80 validation folds; calibrated per-species scales), then the issue's untrained
#: baselines (whole photo, raw pooled features, Euclidean 1-NN / scikit-learn one-class SVM, one scale shared by
#: all species), then the other engine settings. Another candidate must beat the first by more than the fold
#: noise on this fit's own training species (decision 0025). `animal` features are an option, not a candidate:
#: leave-one-species-out folds favour them, pooled unseen species (as in the held-out tests) do not (decision 0028)
AUTO_CANDIDATES = (("cam_day", "unit", "knn"), ("whole", "raw", "knn"), ("whole", "raw", "ocsvm"),
                   ("whole", "unit", "knn"), ("cam_day", "unit", "mahalanobis"))
FALLBACK = ("cam_day", "unit", "knn")  # no validation fold (one species): decision 0024's defaults


@dataclass
class EmbeddingParams:
    scorer: str = param("auto", "Per-species novelty score: auto chooses k-NN distance, Mahalanobis distance or one-class SVM "
                        "per fit by leave-one-species-out validation on the training species (the simpler one unless "
                        "another gains more than the fold noise; the run records every candidate's figure)",
                        choices=list(SCORER_CHOICES))
    k: int = param(1, "Neighbours for the k-NN distance (the k-th nearest photo of the species)", minimum=1, maximum=50)
    encoder: str = param("auto", "Encoder: auto keeps fine-tuning only when pseudo-novelty validation improves; pretrained never fine-tunes",
                         choices=list(ENCODERS))
    loss: str = param("ntxent", "Contrastive loss: SimCLR NT-Xent or triplet margin (positive = augmentation)", choices=list(LOSSES))
    image_size: int = param(224, "Crop size fed to the encoder (pixels)", minimum=32, maximum=512, step=16)
    colour: str = param("auto", "Colour handling: gray makes day and night (IR) photos alike; auto chooses per fit by validation "
                        "(one species: gray when over a tenth of the photos are infrared)",
                        choices=list(COLOURS))
    animal_crop: str = param("auto", "Photos without boxes: cam_day crops the animal found by the ImageNet classifier's activation "
                             "map (class-agnostic, no detector) in day photos and keeps night infrared photos whole (the map "
                             "reads grey night shots badly); cam crops every photo; whole embeds every photo whole; auto "
                             "chooses whole or cam_day per fit by leave-one-species-out validation on the training species. "
                             "Boxes in the data are always used", choices=list(ANIMAL_CROPS))
    cam_steps: int = param(1, "Zoom steps of the activation-map animal crop (each looks again inside the previous crop)",
                           minimum=1, maximum=3, advanced=True)
    features: str = param("auto", "Features for the scorer: unit = the pooled features, unit length, averaged with the mirror "
                          "image's; animal = the scores of the 398 ImageNet animal classes (which known animals the crop "
                          "resembles; centred, unit length, averaged with the mirror image's; an option, never chosen by auto); "
                          "both with per-species calibrated scorers; raw = the pooled features as the network gives them, "
                          "scored as the untrained baselines do (Euclidean k-NN, scikit-learn one-class SVM); auto chooses "
                          "unit or raw per fit", choices=list(FEATURES))
    flip_average: bool = param(True, "Average the embeddings of each crop and its mirror image (unit features)")
    projection_dim: int = param(128, "Size of the projection head output", minimum=8, maximum=1024, advanced=True)
    temperature: float = param(0.5, "NT-Xent temperature", minimum=0.01, maximum=5.0, step=0.05, advanced=True)
    margin: float = param(0.5, "Triplet margin (on unit-length embeddings)", minimum=0.0, maximum=2.0, step=0.05, advanced=True)
    lr: float = param(1e-4, "Learning rate (Adam) of the fine-tuning", minimum=1e-6, maximum=1e-1)
    epochs: int = param(0, "Contrastive fine-tuning epochs (0 = ImageNet features only: fast, and on small data as good)", minimum=0, maximum=500)
    batch_size: int = param(32, "Crops per batch (two views each)", minimum=2, maximum=1024)
    pretrained: bool = param(True, "Start from ImageNet MobileNetV2 weights (offline file)")
    weights_path: str = param("", "MobileNetV2 weights file or folder (empty = default places)", advanced=True)
    trainable_blocks: int = param(2, "Backbone blocks fine-tuned (from the top; -1 = all)", minimum=-1, maximum=19, advanced=True)
    balanced_sampler: bool = param(True, "Sample species equally often (against class imbalance)")
    pad: float = param(0.1, "Padding around boxes (fraction of box size per side)", minimum=0.0, maximum=1.0, step=0.05)
    min_box_score: float = param(0.2, "Ignore detections below this confidence", minimum=0.0, maximum=1.0, step=0.05)
    embed_space: str = param("backbone", "Embeddings for the scorer: pooled backbone features or projection", choices=["backbone", "projection"], advanced=True)
    nu: float = param(0.1, "One-class SVM nu (expected outlier fraction in training)", minimum=0.001, maximum=1.0, step=0.01, advanced=True)
    gamma: float = param(0.0, "One-class SVM RBF gamma (0 = 1 / (dim * variance), shared by all species)", minimum=0.0, advanced=True)
    use_labels: bool = param(True, "Score an animal against its labelled species (off: against the nearest species)")
    seed: int = param(0, "Random seed", advanced=True)


class EmbeddingEngine(Engine):
    """Base of the registered variants (they differ by the default fine-tuning loss)."""

    task = Task.EMBEDDING
    Params = EmbeddingParams
    needs = frozenset({"species"})  # per photo or per box; boxes are used when the data has them

    def __init__(self, params: Any | None = None, device: str = "auto", **overrides: Any):
        super().__init__(params, device, **overrides)
        p = self.params
        for name, value, known in (("loss", p.loss, LOSSES), ("scorer", p.scorer, SCORER_CHOICES), ("encoder", p.encoder, ENCODERS),
                                   ("colour", p.colour, COLOURS), ("animal_crop", p.animal_crop, ANIMAL_CROPS),
                                   ("features", p.features, FEATURES)):
            if value not in known:
                raise ValueError(f"unknown {name} {value!r}; known: {', '.join(known)}")
        self.net = EmbeddingNet(p.projection_dim).to(self.device)
        self.scorer: Any = None
        self.locator: EmbeddingNet | None = None  # the pretrained net that finds animals (animal_crop=cam)
        # the settings in use (those asked, or what `auto` chose in fit)
        self.crop_mode, self.feature_mode, self.scorer_name = (v if v != "auto" else f for v, f in
                                                               zip((p.animal_crop, p.features, p.scorer), FALLBACK))
        self._groups: list[str] | None = None  # per training crop: its sequence / location (validation keeps them whole)

    # -- training ----------------------------------------------------------------------------
    def fit(self, items: Sequence[DatasetItem], ctx: RunContext | None = None) -> None:
        ctx = ctx or RunContext()
        p = self.params
        t0 = time.perf_counter()
        torch.manual_seed(p.seed)
        gen = torch.Generator().manual_seed(p.seed)
        if p.pretrained:  # before the (slow) crops: a missing weights file is reported at once
            self.net.load_imagenet(find_mobilenet_weights(p.weights_path))
        self.locator = None
        configs = self._configs()
        crop_options = list(dict.fromkeys(c for c, _, _ in configs))
        if any(c != "whole" for c in crop_options) and self.net.has_classifier:
            # a frozen copy when the encoder may be fine-tuned: the ImageNet head reads pretrained features
            self.locator = copy.deepcopy(self.net).eval() if p.epochs > 0 and p.encoder != "pretrained" else self.net
        variants = self._crop_variants(items, crop_options, ctx)
        crops_by, kept, problems = _load_variants(variants, p.image_size, p.pad, ctx)
        if not kept:
            raise DataError(items[0].path if items else ".", f"no readable crop among {len(next(iter(variants.values())))} ({problems[:1]})")
        some = next(iter(variants.values()))
        labels = [species_key(some[k].label) for k in kept]
        self._groups = [group_key(items[some[k].item_index]) for k in kept]  # sequences stay whole in validation
        crops, emb0, choice = self._choose_setting(configs, crops_by, labels, ctx)
        specs = variants[self.crop_mode]
        if self.crop_mode == "whole":
            self.locator = None  # nothing to locate when scoring
        self.stats = {"gray": choice["colour"] == "gray"}
        emb, enc = self._choose_encoder(crops, emb0, labels, ctx, gen)
        choice.update(enc)
        self.scorer = self._new_scorer().fit(emb, labels)
        train_d = self.scorer.distances(emb)
        own = train_d[np.arange(len(labels)), [self.scorer.species.index(lab) for lab in labels]]
        counts = Counter(labels)
        self.stats.update({
            "animal_crop": self.crop_mode if p.animal_crop in ("auto", "whole") or self.locator is not None else "whole (no ImageNet head: not pretrained)",
            "cam_boxes": sum(1 for k in kept if specs[k].meta.get("cam_box")),
            "infrared_whole": sum(1 for k in kept if specs[k].meta.get("infrared")),
            "species": self.scorer.species, "counts": dict(counts), "n_crops": len(kept), "n_items": len(items),
            **choice, "scorer": self.scorer_name, "features": self.feature_mode,
            # in-sample distances are optimistic for k-NN (a photo is its own neighbour): the threshold
            # comes from leave-one-out distances there, so 1.0 is a typical same-species distance
            "threshold": self._threshold(emb, labels, own), "fit_seconds": time.perf_counter() - t0,
            "problems": [str(e) for e in problems[:20]],
        })
        self.fitted = True

    def _specs(self, items: Sequence[DatasetItem], ctx: RunContext, crop: str | None = None) -> list[CropSpec]:
        """Crop specs of the items: their boxes; photos without one cropped to the animal as `crop` (default:
        the crop in use) says."""
        crop = crop or self.crop_mode
        specs = crop_specs(items, min_score=self.params.min_box_score)
        if self.locator is None or crop == "whole":
            return specs
        return locate_animals(self.locator, specs, self.device, steps=self.params.cam_steps, check=ctx.check, progress=ctx.progress,
                              skip_infrared=crop == "cam_day")

    def _crop_variants(self, items: Sequence[DatasetItem], crops: Sequence[str], ctx: RunContext) -> dict[str, list[CropSpec]]:
        """Crop specs per crop option (one spec per box or photo, in the same order for every option)."""
        if self.locator is None:  # no ImageNet head (not pretrained): the whole photo
            return {"whole": crop_specs(items, min_score=self.params.min_box_score)}
        return {c: self._specs(items, ctx, c) for c in crops}

    def _new_scorer(self, name: str | None = None, raw: bool | None = None) -> Any:
        p = self.params
        raw = self.feature_mode == "raw" if raw is None else raw
        return make_scorer(name or self.scorer_name, k=p.k, nu=p.nu, gamma=p.gamma, raw=raw)

    def _configs(self) -> list[tuple[str, str, str]]:
        """(crop, features, scorer) candidates: those of AUTO_CANDIDATES that fit what was asked, else the one asked.
        A scorer asked by name keeps its own (unit) features unless `features=raw` is asked too: its options (nu,
        gamma, k) are those of the calibrated scorers."""
        p = self.params
        asked = (p.animal_crop, "unit" if p.features == "auto" and p.scorer != "auto" else p.features, p.scorer)
        fits = [c for c in AUTO_CANDIDATES if all(a in ("auto", v) for a, v in zip(asked, c))]
        return fits or [tuple(a if a != "auto" else f for a, f in zip(asked, FALLBACK))]  # type: ignore[list-item]

    def _threshold(self, emb: np.ndarray, labels: list[str], own: np.ndarray) -> float:
        if self.scorer_name == "ocsvm":  # the one-class SVM's own boundary; with the baseline's nu 0.5 half the
            # training photos lie outside it, so there the 95th percentile of their own distances
            return 1.0 if self.feature_mode != "raw" else float(np.quantile(own, 0.95))
        loo = []
        for s in sorted(set(labels)):
            rows = [i for i, lab in enumerate(labels) if lab == s]
            if len(rows) < 2:
                continue
            for r in rows:
                rest = [i for i in rows if i != r]
                sc = self._new_scorer().fit(emb[rest], [s] * len(rest))
                sc.scales = self.scorer.scales  # the calibrated scales of the full model
                loo.append(float(sc.distances(emb[[r]])[0, 0]))
        return float(np.quantile(loo, 0.95)) if loo else 1.5

    def _choose_setting(self, configs: list[tuple[str, str, str]], crops_by: dict[str, np.ndarray], labels: list[str],
                        ctx: RunContext) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """Crop, features, colour and scorer: those asked, or (`auto`) the candidate that validation on the training
        species prefers (`selection.choose`: simplest first, a gain must exceed the fold noise; every candidate is
        scored on the same embeddings, computed once). Sets `crop_mode`, `feature_mode` and `scorer_name`; returns
        (crops as the encoder sees them, their embeddings, the choice for the stats)."""
        p = self.params
        colours = ["rgb", "gray"] if p.colour == "auto" else [p.colour]
        configs = [c if c[0] in crops_by else ("whole",) + c[1:] for c in configs]  # no ImageNet head: whole photos,
        configs = [c if c[1] != "animal" or self.net.has_classifier else (c[0], "unit", c[2]) for c in configs]  # pooled features
        configs = list(dict.fromkeys(configs))
        cands = [(crop, feat, col, sc) for crop, feat, sc in configs for col in colours]
        seen = {(crop, col): (_to_gray(crops_by[crop]) if col == "gray" else crops_by[crop]) for crop, _, col, _ in cands}
        embs = self._embed_variants(seen, {(crop, feat, col) for crop, feat, col, _ in cands}, ctx)
        names = [f"{crop} {feat} {col} | {sc}" for crop, feat, col, sc in cands]
        if len(cands) == 1:
            pick, record = 0, {"chosen": names[0], "reason": "asked", "candidates": {}}
        else:
            pick, record = choose([Candidate(n, embs[c[:3]], functools.partial(self._new_scorer, c[3], c[1] == "raw"))
                                   for n, c in zip(names, cands)], labels, groups=self._groups, seed=p.seed)
            if not any(v["folds"] for v in record["candidates"].values()):  # one species: the fixed defaults
                pick = _fallback(cands, seen)
                record.update(chosen=names[pick], reason="no validation fold (one species): the fixed defaults of decision 0024 "
                              f"({FALLBACK[0]} crop, {FALLBACK[1]} features, {FALLBACK[2]}; grey when over a tenth of the "
                              "photos are infrared)")
        self.crop_mode, self.feature_mode, colour, self.scorer_name = cands[pick]
        return seen[(self.crop_mode, colour)], embs[cands[pick][:3]], {
            "colour": colour, "colour_reason": "asked" if p.colour != "auto" else f"chosen with the crop and scorer: {record['reason']}",
            "selection": record}

    def _embed_variants(self, seen: dict[tuple[str, str], np.ndarray], wanted: set[tuple[str, str, str]], ctx: RunContext
                        ) -> dict[tuple[str, str, str], np.ndarray]:
        """Embeddings per (crop, features, colour) wanted; the feature kinds of one crop share its forward pass."""
        out: dict[tuple[str, str, str], np.ndarray] = {}
        for (crop, col), x in seen.items():
            feats = {f for c, f, co in wanted if (c, co) == (crop, col)}
            out.update({(crop, f, col): e for f, e in self._embed_kinds(x, feats, ctx).items()})
        return out

    def _choose_encoder(self, crops: np.ndarray, emb0: np.ndarray, labels: list[str], ctx: RunContext,
                        gen: torch.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        """Pretrained embeddings, or fine-tuned ones when asked / when validation says they are better."""
        p = self.params
        info: dict[str, Any] = {"pseudo_novelty_auroc": pseudo_novelty_auroc(emb0, labels, self._new_scorer, seed=p.seed, groups=self._groups),
                                "losses": []}
        base = "pretrained" if p.pretrained else "untrained"
        if p.epochs <= 0 or p.encoder == "pretrained" or len(labels) < 2:
            return emb0, {**info, "encoder": base, "encoder_reason": "no fine-tuning asked"}
        if p.encoder == "finetuned":
            info["losses"] = self._train(crops, labels, ctx, gen)
            emb = self.embed_array(crops, ctx)
            return emb, {**info, "encoder": "finetuned", "encoder_reason": "fine-tuning asked",
                         "pseudo_novelty_auroc": pseudo_novelty_auroc(emb, labels, self._new_scorer, seed=p.seed, groups=self._groups)}
        tune, normal, novel = finetune_split(labels, seed=p.seed, groups=self._groups)
        if not normal or not novel:
            return emb0, {**info, "encoder": base, "encoder_reason": "too few species/photos to validate fine-tuning"}
        start = copy.deepcopy(self.net.state_dict())
        a0 = split_auroc(emb0, labels, tune, normal, novel, self._new_scorer)
        self._train(crops[tune], [labels[i] for i in tune], ctx, gen)
        a1 = split_auroc(self.embed_array(crops, ctx), labels, tune, normal, novel, self._new_scorer)
        self.net.load_state_dict(start)
        check = {"finetune_check": {"pretrained": a0, "finetuned": a1,
                                    "pseudo_novel_species": sorted({labels[i] for i in novel})}}
        if a1 is None or a0 is None or a1 <= a0 + 0.01:
            return emb0, {**info, **check, "encoder": base,
                          "encoder_reason": "fine-tuning did not improve pseudo-novelty AUROC on training species"}
        losses = self._train(crops, labels, ctx, gen)
        emb = self.embed_array(crops, ctx)
        loso = pseudo_novelty_auroc(emb, labels, self._new_scorer, seed=p.seed, groups=self._groups)
        if loso is not None and info["pseudo_novelty_auroc"] is not None and loso < info["pseudo_novelty_auroc"]:
            # tuned on every species, leave-one-species-out favours it; worse even so: keep the pretrained one
            self.net.load_state_dict(start)
            return emb0, {**info, **check, "encoder": base, "finetuned_pseudo_novelty_auroc": loso,
                          "encoder_reason": "fine-tuned on all species, leave-one-species-out AUROC fell"}
        return emb, {**info, **check, "encoder": "finetuned", "encoder_reason": "fine-tuning improved pseudo-novelty AUROC",
                     "pseudo_novelty_auroc": loso, "pretrained_pseudo_novelty_auroc": info["pseudo_novelty_auroc"], "losses": losses}

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
                ctx.progress(epoch * steps + step + 1, p.epochs * steps, f"fine-tuning epoch {epoch + 1}/{p.epochs}")
            losses.append(total / steps)
            ctx.log({"epoch": epoch + 1, "loss": losses[-1]})
        self.net.eval()
        return losses

    # -- embeddings and scores ---------------------------------------------------------------
    def _colour(self, crops: np.ndarray) -> np.ndarray:
        return _to_gray(crops) if self.stats.get("gray") else crops

    def embed_array(self, crops: np.ndarray, ctx: RunContext | None = None, batch: int = 64) -> np.ndarray:
        """(n, h, w, 3) uint8 crops (colour already handled) -> (n, d) float32 embeddings as the scorer in use reads
        them (`feature_mode`: unit, animal or raw; `features.py`)."""
        return self._embed_kinds(crops, {self.feature_mode}, ctx, batch)[self.feature_mode]

    def _embed_kinds(self, crops: np.ndarray, kinds: set[str], ctx: RunContext | None = None, batch: int = 64) -> dict[str, np.ndarray]:
        p = self.params
        return embed_kinds(self.net, crops, kinds, self.device, flip=p.flip_average, project=p.embed_space == "projection",
                           check=ctx.check if ctx is not None else None, batch=batch)

    def embed_specs(self, specs: Sequence[CropSpec], ctx: RunContext | None = None) -> tuple[np.ndarray, list[int], list[DataError]]:
        ctx = ctx or RunContext()
        crops, kept, problems = load_crops(specs, self.params.image_size, self.params.pad, check=ctx.check)
        return self.embed_array(self._colour(crops), ctx), kept, problems

    def crop_scores(self, emb: np.ndarray, labels: Sequence[str]) -> list[dict[str, Any]]:
        """Per crop: score (normalised distance: about 1 = typical of the species), nearest species,
        whether its species is known."""
        if self.scorer is None:
            raise RuntimeError("the engine is not fitted: no species model")
        names = self.scorer.species
        dist = self.scorer.distances(emb) if len(emb) else np.zeros((0, len(names)))
        thr = float(self.stats.get("threshold", 1.0))
        out = []
        for i, raw in enumerate(labels):
            lab = species_key(raw)
            best = int(np.argmin(dist[i]))
            given = bool(lab) and lab not in GENERIC_LABELS and self.params.use_labels
            known = given and lab in names
            score = float(dist[i, names.index(lab)]) if known else float(dist[i, best])
            unknown = given and not known
            out.append({"score": score, "species": lab, "nearest_species": names[best], "unknown_species": unknown,
                        "is_anomaly": bool(score > thr or unknown)})
        return out

    def score(self, items: Sequence[DatasetItem], ctx: RunContext | None = None) -> list[ScoreResult]:
        ctx = ctx or RunContext()
        specs = self._specs(items, ctx)
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
                crops.append({**rows[j], "box": list(s.box) if s.box else None, "cam_box": bool(s.meta.get("cam_box"))})
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
        if self.scorer is None:
            raise RuntimeError("nothing to save: the engine is not fitted")
        tensors: dict[str, Any] = {f"net.{k}": v for k, v in self.net.state_dict().items()}
        if self.locator is not None and self.locator is not self.net:  # the encoder was fine-tuned
            tensors.update({f"loc.{k}": v for k, v in self.locator.state_dict().items() if not k.startswith("head.")})
        tensors.update(self.scorer.to_tensors())
        self.stats["species"] = self.scorer.species
        return tensors

    def load_state_tensors(self, tensors: dict[str, Any]) -> None:
        net = {k[4:]: v for k, v in tensors.items() if k.startswith("net.")}
        old = "classifier.weight" not in net  # saved before animal crops: whole photos, as it was fitted
        self.net.load_state_dict(net, strict=not old)
        self.net.has_classifier = not old
        self.net.to(self.device).eval()
        self.locator = None
        if old:
            self.params.animal_crop = "whole"
        self.crop_mode = _fitted_crop(self.params.animal_crop, self.stats.get("animal_crop"))
        fitted = self.stats.get("features")
        self.feature_mode = self.params.features if self.params.features != "auto" else (
            fitted if fitted in FEATURES[1:] else "unit")  # files from before: unit-length features
        if not old and self.crop_mode in ("cam", "cam_day"):
            loc = {k[4:]: v for k, v in tensors.items() if k.startswith("loc.")}
            if loc:
                self.locator = EmbeddingNet(self.params.projection_dim).to(self.device)
                self.locator.load_state_dict(loc, strict=False)
                self.locator.has_classifier = True
                self.locator.eval()
            else:
                self.locator = self.net
        name = self.stats.get("scorer")
        if name not in SCORERS:  # a file from before the stats named it: its tensors say which scorer it is
            name = "ocsvm" if "ocsvm.0.params" in tensors else "mahalanobis" if "maha.means" in tensors else "knn"
        self.scorer_name = name
        self.scorer = scorer_from_tensors(name, tensors, list(self.stats.get("species", [])))

    @property
    def models(self) -> dict[str, Any]:
        """The per-species one-class SVMs (ocsvm scorer only; empty otherwise)."""
        return dict(getattr(self.scorer, "models", {}) or {})


def _load_variants(variants: dict[str, list[CropSpec]], size: int, pad: float, ctx: RunContext
                   ) -> tuple[dict[str, np.ndarray], list[int], list[DataError]]:
    """Crops of each option's specs (same order, one file read once where the options agree), the indices of
    the specs kept (unreadable files are left out of every option) and the problems."""
    names = list(variants)
    first = variants[names[0]]
    crops, kept, problems = load_crops(first, size, pad, progress=ctx.progress, check=ctx.check)
    out = {names[0]: crops}
    for name in names[1:]:
        specs = variants[name]
        differ = [j for j, k in enumerate(kept) if (specs[k].box, specs[k].meta.get("pad")) != (first[k].box, first[k].meta.get("pad"))]
        other = crops.copy()
        if differ:
            part, part_kept, _ = load_crops([specs[kept[j]] for j in differ], size, pad, check=ctx.check)
            for jj, pk in enumerate(part_kept):
                other[differ[pk]] = part[jj]
        out[name] = other
    return out, kept, problems


def _fallback(cands: list[tuple[str, str, str, str]], seen: dict[tuple[str, str], np.ndarray]) -> int:
    """Index of the fixed defaults (FALLBACK) among the candidates, else the first candidate (no validation possible)."""
    crop, feat, scorer = FALLBACK
    colours = {c[2] for c in cands}
    rgb = seen.get((crop, "rgb"))
    colour = next(iter(colours)) if len(colours) == 1 else ("gray" if rgb is not None and _ir_fraction(rgb) >= 0.1 else "rgb")
    return cands.index((crop, feat, colour, scorer)) if (crop, feat, colour, scorer) in cands else 0


def _fitted_crop(asked: str, stats_crop: Any) -> str:
    """The crop a loaded model was fitted with: the one asked, or (auto) the one its stats name."""
    if asked != "auto":
        return asked
    return stats_crop if stats_crop in ANIMAL_CROPS[1:] else "whole"


def _to_gray(crops: np.ndarray) -> np.ndarray:
    """RGB uint8 crops as grey replicated in 3 channels (how night infrared shots look)."""
    g = (crops.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).round().clip(0, 255).astype(np.uint8)
    return np.repeat(g[..., None], 3, axis=-1)


def _ir_fraction(crops: np.ndarray) -> float:
    """Fraction of crops that are (near) grey: night infrared shots stored as RGB."""
    return float(np.mean([is_infrared(c) for c in crops])) if len(crops) else 0.0


def _item_of(specs: Sequence[CropSpec], err: DataError) -> int:
    for s in specs:
        if str(err.path) == str(s.path):
            return s.item_index
    return specs[0].item_index
