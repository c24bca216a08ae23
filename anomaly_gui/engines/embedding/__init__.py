"""Wildlife novelty (Task.EMBEDDING): ImageNet MobileNetV2 embeddings, per-species scorer (k-NN distance by
default, Mahalanobis or one-class SVM), contrastive fine-tuning kept only when it validates.

Two registered variants that differ by their fine-tuning loss: SimCLR NT-Xent and the original
triplet-margin design (anchor, positive = augmentation, negative = another image). The names keep
`_ocsvm` for saved projects and scripts; the scorer is a parameter.
"""
from __future__ import annotations

from dataclasses import dataclass

from anomaly_gui.engines.base import param, register_engine
from anomaly_gui.engines.embedding.engine import LOSSES, EmbeddingEngine, EmbeddingParams


@register_engine
class SimCLROneClass(EmbeddingEngine):
    name = "simclr_ocsvm"
    title = "Animal embeddings + per-species novelty (SimCLR fine-tuning when it helps)"
    description = ("ImageNet MobileNetV2 embeddings of animal crops, NT-Xent fine-tuning kept only when pseudo-novelty validation "
                   "improves; an animal far from its species (k-NN, Mahalanobis or one-class SVM), or of a species no model knows, is an anomaly.")


@dataclass
class TripletParams(EmbeddingParams):
    loss: str = param("triplet", "Contrastive loss: SimCLR NT-Xent or triplet margin (positive = augmentation)", choices=list(LOSSES))


@register_engine
class TripletOneClass(EmbeddingEngine):
    name = "triplet_ocsvm"
    title = "Animal embeddings + per-species novelty (triplet fine-tuning when it helps)"
    description = ("The original design's triplet-margin fine-tuning (positive = augmentation, negative = another species), kept only "
                   "when pseudo-novelty validation improves; per-species k-NN, Mahalanobis or one-class SVM scores.")
    Params = TripletParams


__all__ = ["EmbeddingEngine", "EmbeddingParams", "SimCLROneClass", "TripletOneClass"]
