"""Nested leave-one-species-out check of the novelty engine's per-fit choice (run from the project root).

    python benchmarks/novelty_nested.py [--splits 5] [--cache /tmp/novelty_cache]

The engine's `auto` settings choose crop / features / colour / scorer per fit by leave-one-species-out
validation on the training species (`engines/embedding/selection.py`). Choosing on those folds and reporting
them would be optimistic, so this measures the whole procedure with an outer loop, on the *training photos*
of the splits of `novelty_shared.py` only (no test photo is read):
- outer fold: one training species is the novel one; one photo of every third other species (with 2+ photos) is
  held out as normal; the rest is the fitting set;
- the procedure runs on the fitting set alone (its own inner leave-one-species-out folds, as `engine.fit` does),
  the chosen candidate is fitted there and scores the outer fold's normal vs novel photos (AUROC).
A second outer protocol replays the *test* design inside the Serengeti training photos (`pooled unseen`: a third
of the training species unseen, their photos pooled as novel; one photo of every other species normal; 10 draws
per split): leave-one-species-out folds score one novel species at a time, the held-out tests pool several.
Printed: per candidate its plain leave-one-species-out mean (`loso`, what the inner choice sees) and its outer
figures as a fixed setting (`nested`, `one label`: every known photo under one label, the one-species fallback's
case, and `pooled unseen`), then the procedure's outer figures (`auto`), and paired differences. `EXTRA` rows
(the `animal` features, decision 0028) are measured as fixed settings and as a rule variant, not engine candidates. Features come from the
cache of `novelty_baselines.py` (the engine's crops and embeddings; seconds once warm).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from novelty_baselines import Features, _features, camera_trap_split, serengeti_split  # noqa: E402

from anomaly_gui.core.formats.camtrap import species_key  # noqa: E402
from anomaly_gui.core.metrics import auroc  # noqa: E402
from anomaly_gui.engines.embedding.engine import AUTO_CANDIDATES, FALLBACK  # noqa: E402
from anomaly_gui.engines.embedding.scoring import make_scorer  # noqa: E402
from anomaly_gui.engines.embedding.selection import choose_from_folds  # noqa: E402
from anomaly_gui.engines.embedding.validation import pseudo_novelty_folds  # noqa: E402

CROP = {"whole": "whole", "cam_day": "camday"}  # engine name -> novelty_baselines crop name
#: measured as fixed settings next to the engine's candidates (not candidates of the engine; decision 0028)
EXTRA = (("cam_day", "animal", "knn"),)
ANIMAL_FIRST = "auto with animal features first (tried, not adopted)"
#: the procedure with its rule's settings (min_gain, noise_factor); `auto` is the engine's (selection.py)
RULES = {"auto": (0.01, 1.0), "auto, half the noise": (0.01, 0.5), "auto, best validation (no noise rule)": (0.0, 0.0),
         ANIMAL_FIRST: (0.01, 1.0)}


def candidates(feats: Features, train) -> dict[str, tuple[np.ndarray, object]]:
    """name -> (embeddings of the training photos, scorer factory): EXTRA, then the engine's candidates in its order."""
    out = {}
    for crop, feat, sc in EXTRA + AUTO_CANDIDATES:
        for colour in ("rgb", "gray"):
            specs = feats.specs(train, CROP[crop])
            emb = animal_features(feats, specs, colour) if feat == "animal" else _features(feats, specs, colour, flip=feat == "unit", norm=feat == "unit")
            out[f"{crop} {feat} {colour} | {sc}"] = (emb, lambda sc=sc, raw=feat == "raw": make_scorer(sc, raw=raw))
    return out


def animal_features(feats: Features, specs, colour: str) -> np.ndarray:
    """The engine's `animal` features (`features.animal_scores`, flip-averaged) from the cached pooled features."""
    import torch

    from anomaly_gui.engines.embedding.features import animal_scores

    net = feats.eng.net
    raw, mirror = (torch.from_numpy(np.asarray(a, np.float32)) for a in feats.embed(specs, colour))
    with torch.no_grad():
        a = animal_scores(raw, net.classifier.weight, net.classifier.bias) + animal_scores(mirror, net.classifier.weight, net.classifier.bias)
    return torch.nn.functional.normalize(a, dim=1).numpy()


def outer_folds(labels: list[str], max_folds: int = 12, seed: int = 0):
    names = sorted(set(labels))
    rng = np.random.default_rng(seed)
    for k, novel in enumerate(names[i] for i in sorted(rng.permutation(len(names))[:max_folds])):
        multi = [s for s in names if s != novel and labels.count(s) >= 2]
        held_species = [s for j, s in enumerate(multi) if j % 3 == k % 3] or multi[:1]
        normal, fit = [], []
        for s in names:
            if s == novel:
                continue
            rows = [i for i, lab in enumerate(labels) if lab == s]
            if s in held_species:
                pick = rows[k % len(rows)]
                normal.append(pick)
                fit += [r for r in rows if r != pick]
            else:
                fit += rows
        yield fit, normal, [i for i, lab in enumerate(labels) if lab == novel]


def pooled_draws(labels: list[str], draws: int = 10, seed: int = 0):
    """The test protocol of `novelty_shared.py` replayed inside the training photos: a third of the species unseen
    (all their photos novel, pooled), every other species with 2+ photos tests on one photo and fits on the rest."""
    names = sorted(set(labels))
    for r in range(draws):
        rng = np.random.default_rng(seed * 100 + r)
        unseen = set(rng.choice(names, len(names) // 3, replace=False))
        fit, normal, novel = [], [], []
        for s in names:
            rows = [i for i, lab in enumerate(labels) if lab == s]
            if s in unseen:
                novel += rows
            elif len(rows) >= 2:
                k = int(rng.integers(len(rows)))
                normal.append(rows[k])
                fit += [x for j, x in enumerate(rows) if j != k]
            else:
                fit += rows
        yield fit, normal, novel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--splits", type=int, default=5)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/novelty_cache"))
    args = ap.parse_args()
    import torch

    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    feats = Features(args.cache)
    fixed: dict[tuple[str, str, str], list[float]] = {}
    picks: dict[str, dict[str, int]] = {}
    fallback = f"{FALLBACK[0]} {FALLBACK[1]} rgb | {FALLBACK[2]}"
    for setname, split_of in (("camera_traps", camera_trap_split), ("serengeti", serengeti_split)):
        for split in range(args.splits):
            train = split_of(split)[0]
            labels = [species_key(it.label) for it in train]
            cands = candidates(feats, train)
            names = list(cands)
            for n, (emb, make) in cands.items():
                fixed.setdefault((setname, "loso", n), []).extend(v for v in pseudo_novelty_folds(emb, labels, make) if v == v)
            protocols = [("nested", outer_folds(labels))] + ([("pooled", pooled_draws(labels, seed=split))] if setname == "serengeti" else [])
            for protocol, folds in protocols:
                for fit, normal, novel in folds:
                    fit_labels = [labels[i] for i in fit]
                    outer = {}
                    for n, (emb, make) in cands.items():
                        sc = make().fit(emb[fit], fit_labels)
                        outer[n] = auroc([0] * len(normal) + [1] * len(novel), sc.distances(emb[normal + novel]).min(1))
                        fixed.setdefault((setname, protocol, n), []).append(outer[n])
                        if protocol == "nested":  # one label for every known photo (as `train/Cat/` holds several cat species)
                            sc = make().fit(emb[fit], ["known"] * len(fit))
                            fixed.setdefault((setname, "one label", n), []).append(
                                auroc([0] * len(normal) + [1] * len(novel), sc.distances(emb[normal + novel]).min(1)))
                    inner = [pseudo_novelty_folds(cands[n][0][fit], fit_labels, cands[n][1]) for n in names]
                    for rule, (gain, factor) in RULES.items():
                        keep = [j for j, n in enumerate(names) if rule == ANIMAL_FIRST or " animal " not in n]
                        first = names[0] if rule == ANIMAL_FIRST else fallback
                        chosen = (choose_from_folds([names[j] for j in keep], [inner[j] for j in keep], gain, factor)[1]["chosen"]
                                  if any(len(f) for f in inner) else first)
                        fixed.setdefault((setname, protocol, rule), []).append(outer[chosen])
                        picks.setdefault(f"{setname} {protocol} {rule}", {}).setdefault(chosen, 0)
                        picks[f"{setname} {protocol} {rule}"][chosen] += 1
            print(f"# {setname} split {split} done", flush=True)
    sets = ("camera_traps", "serengeti")
    print("| setting | camera_traps loso | camera_traps nested | serengeti loso | serengeti nested | all nested folds | "
          "one label, all folds | serengeti pooled unseen |")
    print("|---|---|---|---|---|---|---|---|")
    for n in list(dict.fromkeys(k[2] for k in fixed if k[2] not in RULES)) + list(RULES):
        cells = []
        for s in sets:
            lo = fixed.get((s, "loso", n))
            cells += [f"{np.mean(lo):.3f}" if lo else "-", f"{np.nanmean(fixed[(s, 'nested', n)]):.3f}"]
        every = fixed[("camera_traps", "nested", n)] + fixed[("serengeti", "nested", n)]
        name = f"**{n}**: chosen per outer fold" if n in RULES else n
        one = fixed.get(("camera_traps", "one label", n), []) + fixed.get(("serengeti", "one label", n), [])
        print(f"| {name} | " + " | ".join(cells) + f" | {np.nanmean(every):.3f} ({len(every)}) | "
              + (f"{np.nanmean(one):.3f}" if one else "-") + f" | {np.nanmean(fixed[('serengeti', 'pooled', n)]):.3f} |")
    for protocol, sets_of in (("nested", sets), ("pooled", ("serengeti",))):
        for a, b in ((ANIMAL_FIRST, "auto"), ("cam_day animal rgb | knn", "cam_day unit rgb | knn"), ("auto", "whole raw rgb | ocsvm")):
            d = np.concatenate([np.array(fixed[(s, protocol, a)], float) - np.array(fixed[(s, protocol, b)], float) for s in sets_of])
            d = d[~np.isnan(d)]
            print(f"{protocol}: paired difference {a} - {b}: {d.mean():+.3f} (standard error {d.std(ddof=1) / np.sqrt(len(d)):.3f}, "
                  f"{int((d > 0).sum())} better, {int((d < 0).sum())} worse)")
    for key, counts in picks.items():
        print(f"picks {key}: {dict(sorted(counts.items(), key=lambda kv: -kv[1]))}")


if __name__ == "__main__":
    main()
