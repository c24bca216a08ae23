"""Choose an embedding + scorer per fit by pseudo-novelty validation on the training species alone.

Each candidate is a way to score (the photos' embeddings under one crop / colour, and a scorer factory).
Every candidate is validated on the same leave-one-species-out folds (`validation.pseudo_novelty_folds`),
so two candidates are compared fold by fold. The rule is a one-standard-error rule: the candidates are
listed in the order ties are settled (the engine lists its validated default first, then the untrained
baselines, then the rest), and the first one whose mean fold AUROC is within the noise of the best one's is
chosen (noise: the standard error of the paired fold differences, at least `min_gain`). Gains smaller than the
fold noise therefore never move the choice away from an earlier candidate. With no fold, the first one is chosen.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from anomaly_gui.engines.embedding.validation import ScorerFactory, pseudo_novelty_folds

MIN_GAIN = 0.01  # a gain below this never counts, however steady across folds


@dataclass
class Candidate:
    name: str  # e.g. "whole | knn"
    emb: np.ndarray  # embeddings of the training crops under this candidate's crop / colour
    make: ScorerFactory


def choose(cands: Sequence[Candidate], labels: Sequence[str], groups: Sequence[str] | None = None, seed: int = 0,
           min_gain: float = MIN_GAIN) -> tuple[int, dict[str, Any]]:
    """(index of the chosen candidate, a record: chosen, reason, per-candidate mean / sd / folds)."""
    folds = [pseudo_novelty_folds(c.emb, labels, c.make, seed=seed, groups=groups) for c in cands]
    return choose_from_folds([c.name for c in cands], folds, min_gain)


def choose_from_folds(names: Sequence[str], folds: Sequence[Sequence[float]], min_gain: float = MIN_GAIN,
                      noise_factor: float = 1.0) -> tuple[int, dict[str, Any]]:
    """The rule of the module doc on per-candidate fold AUROCs (same folds in the same order; NaN = no figure);
    the noise is `noise_factor` standard errors (at least `min_gain`)."""
    arr = [np.asarray(f, float) for f in folds]
    table = {n: _summary(f) for n, f in zip(names, arr)}
    means = [float(np.nanmean(f)) if len(f) and not np.isnan(f).all() else -math.inf for f in arr]
    if not arr or max(means) == -math.inf:
        return 0, {"chosen": names[0], "reason": "no validation fold (fewer than two species, or no species with a "
                   "photo to hold out): the simplest candidate", "candidates": table}
    best = int(np.argmax(means))
    n = int((~np.isnan(arr[best])).sum())
    for i in range(len(names)):
        if means[i] == -math.inf:
            continue
        d = arr[best] - arr[i]
        d = d[~np.isnan(d)]
        noise = max(noise_factor * float(np.std(d, ddof=1) / math.sqrt(len(d))) if len(d) > 1 else 0.0, min_gain)
        if i == best or (len(d) and float(np.mean(d)) <= noise):
            why = ("best validation" if i == best else
                   f"within the fold noise ({noise:.3f}) of the best, {names[best]} ({means[best]:.3f}): the simpler option kept")
            return i, {"chosen": names[i], "reason": f"{why}; {n} leave-one-species-out folds", "candidates": table}
    return best, {"chosen": names[best], "reason": f"best validation; {n} folds", "candidates": table}


def _summary(f: np.ndarray) -> dict[str, Any]:
    ok = f[~np.isnan(f)]
    return {"auroc": round(float(ok.mean()), 4) if len(ok) else None,
            "sd": round(float(ok.std(ddof=1)), 4) if len(ok) > 1 else None, "folds": int(len(ok)),
            "fold_aurocs": [None if np.isnan(v) else round(float(v), 4) for v in f]}
