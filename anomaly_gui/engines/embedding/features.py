"""The features a novelty scorer reads, from one pass of the encoder over the crops (and their mirror images).

- `raw`: the pooled 1280-d backbone features as the network gives them (the issue's untrained baselines);
- `unit`: the same, unit length, averaged with the mirror image's (decisions 0012, 0019);
- `animal`: the scores of the 398 ImageNet *animal* classes (the never-trained ImageNet head of the same weights
  file applied to the pooled features), centred per photo (a log-softmax up to a constant), unit length and
  averaged with the mirror image's. A photo is described by which known animals it resembles, not by its
  background texture: leave-one-species-out validation on the training photos preferred it (decision 0028).
"""
from __future__ import annotations

from typing import Any, Callable, Collection

import numpy as np
import torch
import torch.nn.functional as F

from anomaly_gui.engines.embedding.animal_crop import ANIMAL_CLASSES

KINDS = ("unit", "animal", "raw")


def animal_scores(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """(n, 1280) pooled features -> (n, 398) unit-length, per-photo centred ImageNet animal-class logits."""
    z = h @ weight[:ANIMAL_CLASSES].T + bias[:ANIMAL_CLASSES]
    return F.normalize(z - z.mean(1, keepdim=True), dim=1)


@torch.no_grad()
def embed_kinds(net: Any, crops: np.ndarray, kinds: Collection[str], device: Any, flip: bool = True,
                project: bool = False, check: Callable[[], None] | None = None, batch: int = 64) -> dict[str, np.ndarray]:
    """{kind: (n, d) float32} for the `kinds` asked, of (n, h, w, 3) uint8 crops; one forward pass (two with `flip`)
    per batch serves every kind. `project`: `unit` reads the projection head's output instead of the pooled
    features (the engine's `embed_space=projection`); `raw` too; `animal` always reads the pooled features."""
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown feature kind(s) {sorted(unknown)}; known: {', '.join(KINDS)}")
    net.eval()
    out: dict[str, list[np.ndarray]] = {k: [] for k in kinds}
    w, b = net.classifier.weight, net.classifier.bias
    for i in range(0, len(crops), batch):
        if check is not None:
            check()
        x = torch.from_numpy(crops[i:i + batch]).permute(0, 3, 1, 2).to(device).float() / 255.0
        h, z = net(x)
        hf, zf = net(x.flip(3)) if flip and ("unit" in kinds or "animal" in kinds) else (None, None)
        if "raw" in kinds:
            out["raw"].append((z if project else h).cpu().numpy())
        if "unit" in kinds:
            e, ef = (z, zf) if project else (h, hf)
            e = F.normalize(e, dim=1) + F.normalize(ef, dim=1) if ef is not None else e
            out["unit"].append(F.normalize(e, dim=1).cpu().numpy())
        if "animal" in kinds:
            a = animal_scores(h, w, b)
            a = a + animal_scores(hf, w, b) if hf is not None else a
            out["animal"].append(F.normalize(a, dim=1).cpu().numpy())
    return {k: np.concatenate(v, 0).astype(np.float32) if v else np.zeros((0, 1), np.float32) for k, v in out.items()}
