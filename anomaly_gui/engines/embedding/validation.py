"""Pseudo-novelty validation on training species alone (leave-species-out).

A held-out *known* species plays the unseen animal: the scorer is fitted on the other species (minus
one photo each, which become the normal test photos) and must rank the held-out species' photos
above those normal ones. The mean AUROC over folds measures how well an encoder + scorer finds
novel animals without ever looking at a real novel species; the engine uses it to decide whether
contrastive fine-tuning is kept and to report a validation figure.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from anomaly_gui.core.metrics import auroc

ScorerFactory = Callable[[], object]


def _species_groups(labels: Sequence[str], groups: Sequence[str] | None, species: str) -> list[list[int]]:
    """Rows of `species`, bunched by group (camera-trap sequence, location...) in order of first row.

    Without `groups` every photo is its own group. A species' normal validation photos are one whole
    group, so burst shots of one sequence never sit on both sides of the check."""
    bunches: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        if lab == species:
            bunches.setdefault(str(i) if groups is None else str(groups[i]), []).append(i)
    return list(bunches.values())


def pseudo_novelty_auroc(emb: np.ndarray, labels: Sequence[str], make: ScorerFactory, held_out: Sequence[str] | None = None,
                         max_folds: int = 12, seed: int = 0, groups: Sequence[str] | None = None) -> float | None:
    """Mean AUROC over folds, each holding out one species (those in `held_out`, else up to
    `max_folds` species chosen by `seed`). None when fewer than two species exist. With `groups`
    (one per row, e.g. `core.splits.group_key` of the photo), the normal photos held out of each
    known species are one whole group."""
    vals = [v for v in pseudo_novelty_folds(emb, labels, make, held_out, max_folds, seed, groups) if v == v]
    return float(np.mean(vals)) if vals else None


def pseudo_novelty_folds(emb: np.ndarray, labels: Sequence[str], make: ScorerFactory, held_out: Sequence[str] | None = None,
                         max_folds: int = 12, seed: int = 0, groups: Sequence[str] | None = None) -> list[float]:
    """The AUROC of each fold of `pseudo_novelty_auroc` (NaN where a fold has none): the same folds for any
    embeddings of the same photos, so two candidates can be compared fold by fold."""
    labels = list(labels)
    names = sorted(set(labels))
    if len(names) < 2:
        return []
    rng = np.random.default_rng(seed)
    folds = list(held_out) if held_out is not None else [names[i] for i in sorted(rng.permutation(len(names))[:max_folds])]
    vals = []
    for k, novel in enumerate(folds):
        known = [s for s in names if s != novel]
        fit_rows, normal_rows = [], []
        for s in known:
            bunches = _species_groups(labels, groups, s)
            if len(bunches) >= 2:
                pick = k % len(bunches)
                normal_rows += bunches[pick]
                fit_rows += [i for j, b in enumerate(bunches) if j != pick for i in b]
            else:
                fit_rows += [i for b in bunches for i in b]
        novel_rows = [i for i, lab in enumerate(labels) if lab == novel]
        if not normal_rows or not novel_rows or not fit_rows:
            continue
        scorer = make()
        scorer.fit(emb[fit_rows], [labels[i] for i in fit_rows])  # type: ignore[attr-defined]
        test = normal_rows + novel_rows
        scores = scorer.distances(emb[test]).min(1)  # type: ignore[attr-defined]
        a = auroc([0] * len(normal_rows) + [1] * len(novel_rows), scores)
        vals.append(float("nan") if a is None else float(a))
    return vals


def held_out_species(labels: Sequence[str], fraction: float = 0.34, seed: int = 0) -> list[str]:
    """Species kept out of fine-tuning to validate it (about a third, at least one, never all)."""
    from anomaly_gui.core.splits import hold_out

    _, held = hold_out(sorted(set(labels)), fraction, seed, group_of=str)  # the project's one split draw
    return sorted(held)


def finetune_split(labels: Sequence[str], seed: int = 0,
                   groups: Sequence[str] | None = None) -> tuple[list[int], list[int], list[int]]:
    """Rows for validating fine-tuning: (tune rows, normal validation rows, pseudo-novel rows).

    About a third of the species are pseudo-novel (never tuned on); of each other species one group
    of photos (one photo without `groups`; only when the species has two or more groups) is kept out
    of tuning as normal validation photos."""
    labels = list(labels)
    novel = set(held_out_species(labels, seed=seed))
    rng = np.random.default_rng(seed + 1)
    tune, normal = [], []
    for s in sorted(set(labels) - novel):
        bunches = _species_groups(labels, groups, s)
        if len(bunches) >= 2:
            pick = int(rng.integers(len(bunches)))
            normal += bunches[pick]
            tune += [i for j, b in enumerate(bunches) if j != pick for i in b]
        else:
            tune += [i for b in bunches for i in b]
    return tune, normal, [i for i, lab in enumerate(labels) if lab in novel]


def split_auroc(emb: np.ndarray, labels: Sequence[str], tune: Sequence[int], normal: Sequence[int], novel: Sequence[int],
                make: ScorerFactory) -> float | None:
    """AUROC of pseudo-novel vs normal validation photos, the scorer fitted on the tuning photos."""
    if not tune or not normal or not novel:
        return None
    scorer = make()
    scorer.fit(emb[list(tune)], [labels[i] for i in tune])  # type: ignore[attr-defined]
    test = list(normal) + list(novel)
    return auroc([0] * len(normal) + [1] * len(novel), scorer.distances(emb[test]).min(1))  # type: ignore[attr-defined]
