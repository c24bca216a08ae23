"""Wildlife embeddings: contrastive CNN encoder + one-class SVM per species (Task.EMBEDDING).

Two registered variants that differ by their default loss: SimCLR NT-Xent and the original
triplet-margin design (anchor, positive = augmentation, negative = another image).
"""
from __future__ import annotations

from dataclasses import dataclass

from anomaly_gui.engines.base import param, register_engine
from anomaly_gui.engines.embedding.engine import LOSSES, EmbeddingEngine, EmbeddingParams


@register_engine
class SimCLROneClass(EmbeddingEngine):
    name = "simclr_ocsvm"
    title = "SimCLR embeddings + one-class SVM per species"
    description = "Contrastive (NT-Xent) MobileNetV2 embeddings of animal crops; an animal outside its species' one-class SVM, or of a species no model knows, is an anomaly."


@dataclass
class TripletParams(EmbeddingParams):
    loss: str = param("triplet", "Contrastive loss: SimCLR NT-Xent or triplet margin (positive = augmentation)", choices=list(LOSSES))


@register_engine
class TripletOneClass(EmbeddingEngine):
    name = "triplet_ocsvm"
    title = "Triplet embeddings + one-class SVM per species"
    description = "The original design: triplet-margin MobileNetV2 embeddings (positive = augmentation, negative = another image) and a one-class SVM per species."
    Params = TripletParams


__all__ = ["EmbeddingEngine", "EmbeddingParams", "SimCLROneClass", "TripletOneClass"]
