"""Score fusion and pooled-unseen selection for the novelty engine, on training photos only (run from the project root).

    OMP_NUM_THREADS=1 python benchmarks/novelty_fusion.py [--splits 5] [--cache /tmp/novelty_cache] [--inner-draws 6]

The outer protocols are those of `novelty_nested.py` (no test photo is read): `nested` (one training species novel
per outer fold, 20 camera-trap + 60 Serengeti folds) and `pooled unseen` (a third of the Serengeti training species
unseen and pooled, 50 draws). Measured, each against the engine's `auto` (0025) on the same folds (paired
difference, standard error, folds better / worse):
- fixed fusions (`FusedScorer` below): several scorers / crops / colours of the engine's candidates, each part's
  distance standardised by the training photos' distances to their nearest other known species (no refit needed,
  any scorer), averaged;
- selection rules: `auto` choosing on inner pooled-unseen draws of the fitting photos instead of (or with) its
  leave-one-species-out folds, and `auto` with the fusions as extra candidates.
Features come from the cache of `novelty_baselines.py` (seconds once warm).
"""
from __future__ import annotations

import argparse
import functools
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from novelty_baselines import Features, _features, camera_trap_split, serengeti_split  # noqa: E402
from novelty_nested import CROP, outer_folds, pooled_draws  # noqa: E402

from anomaly_gui.core.formats.camtrap import species_key  # noqa: E402
from anomaly_gui.core.metrics import auroc  # noqa: E402
from anomaly_gui.engines.embedding.engine import AUTO_CANDIDATES  # noqa: E402
from anomaly_gui.engines.embedding.scoring import make_scorer  # noqa: E402
from anomaly_gui.engines.embedding.selection import choose_from_folds  # noqa: E402
from anomaly_gui.engines.embedding.validation import pseudo_novelty_folds  # noqa: E402

_EPS = 1e-9


class FusedScorer:
    """Fusion of the scorers made by `factories` (each part reads `emb[:, cols]` when `cols` are given). Each part's
    distance is standardised by the mean and standard deviation (at least a tenth of the mean) of the training
    photos' distances to their nearest *other* known species (no refit; any scorer, the one-class SVM's negative
    values too); the fused distance is the mean of the standardised ones (0 = as far as another known species
    typically is). With one species the reference is that species' own training distances."""

    name = "fusion"

    def __init__(self, factories: Sequence[Callable[[], Any]], cols: Sequence[slice | None] | None = None):
        self.factories = list(factories)
        self.cols = list(cols) if cols is not None else [None] * len(self.factories)
        self.parts: list[Any] = []
        self.ref = np.zeros((0, 2))  # per part: (mean, sd) of the reference distances

    def _view(self, emb: np.ndarray, j: int) -> np.ndarray:
        return emb if self.cols[j] is None else emb[:, self.cols[j]]

    def fit(self, emb: np.ndarray, labels: Sequence[str]) -> "FusedScorer":
        labels = list(labels)
        self.parts = [make().fit(self._view(emb, j), labels) for j, make in enumerate(self.factories)]
        species = self.parts[0].species
        own = np.array([species.index(lab) for lab in labels])
        ref = []
        for j, part in enumerate(self.parts):
            d = np.array(part.distances(self._view(emb, j)), np.float64)
            if len(species) > 1:
                d[np.arange(len(labels)), own] = np.inf
                vals = d.min(1)
            else:
                vals = d[:, 0]
            vals = vals[np.isfinite(vals)]
            mean = float(vals.mean()) if len(vals) else 0.0
            sd = float(vals.std()) if len(vals) > 1 else 0.0
            ref.append((mean, max(sd, 0.1 * abs(mean), _EPS)))
        self.ref = np.array(ref, np.float64)
        return self

    @property
    def species(self) -> list[str]:
        return self.parts[0].species if self.parts else []

    def part_z(self, emb: np.ndarray) -> np.ndarray:
        """(parts, n, species) standardised distances."""
        return np.stack([(np.asarray(p.distances(self._view(emb, j)), np.float64) - self.ref[j, 0]) / self.ref[j, 1]
                         for j, p in enumerate(self.parts)])

    def distances(self, emb: np.ndarray) -> np.ndarray:
        if not self.parts:
            return np.zeros((len(emb), 0))
        return self.part_z(emb).mean(0)


BASES = AUTO_CANDIDATES + (("cam_day", "unit", "ocsvm"),)
#: fusion name -> parts (crop, features, scorer, colour or None = the fusion's colour)
FUSIONS = {
    "knn+maha": (("cam_day", "unit", "knn"), ("cam_day", "unit", "mahalanobis")),
    "knn+maha+ocsvm": (("cam_day", "unit", "knn"), ("cam_day", "unit", "mahalanobis"), ("cam_day", "unit", "ocsvm")),
    "knn+base ocsvm": (("cam_day", "unit", "knn"), ("whole", "raw", "ocsvm")),
    "crop+whole knn": (("cam_day", "unit", "knn"), ("whole", "unit", "knn")),
    "base knn+ocsvm": (("whole", "raw", "knn"), ("whole", "raw", "ocsvm")),
    "all five": (("cam_day", "unit", "knn"), ("cam_day", "unit", "mahalanobis"), ("whole", "raw", "knn"),
                 ("whole", "raw", "ocsvm"), ("whole", "unit", "knn")),
}
COLOUR_FUSIONS = {"knn rgb+gray": (("cam_day", "unit", "knn", "rgb"), ("cam_day", "unit", "knn", "gray")),
                  "knn+maha rgb+gray": (("cam_day", "unit", "knn", "rgb"), ("cam_day", "unit", "mahalanobis", "rgb"),
                                        ("cam_day", "unit", "knn", "gray"), ("cam_day", "unit", "mahalanobis", "gray"))}


def base_name(crop: str, feat: str, colour: str, sc: str) -> str:
    return f"{crop} {feat} {colour} | {sc}"


def all_candidates(feats: Features, train) -> dict[str, tuple[np.ndarray, object]]:
    """name -> (embeddings, factory): the engine's candidates (its order), the calibrated OCSVM, then the fusions."""
    embs, out = {}, {}
    for crop, feat, sc in BASES:
        for colour in ("rgb", "gray"):
            key = (crop, feat, colour)
            if key not in embs:
                specs = feats.specs(train, CROP[crop])
                embs[key] = _features(feats, specs, colour, flip=feat == "unit", norm=feat == "unit")
            out[base_name(crop, feat, colour, sc)] = (embs[key], functools.partial(make_scorer, sc, raw=feat == "raw"))
    fusions = {f"fusion {n} {c}": tuple(p + (c,) for p in parts) for n, parts in FUSIONS.items() for c in ("rgb", "gray")}
    fusions.update({f"fusion {n}": parts for n, parts in COLOUR_FUSIONS.items()})
    for name, parts in fusions.items():
        blocks, cols, makers, at = [], [], [], 0
        for crop, feat, sc, colour in parts:
            e = embs[(crop, feat, colour)]
            blocks.append(e)
            cols.append(slice(at, at + e.shape[1]))
            at += e.shape[1]
            makers.append(functools.partial(make_scorer, sc, raw=feat == "raw"))
        out[name] = (np.hstack(blocks), functools.partial(FusedScorer, makers, cols))
    return out


def outer_auroc(emb: np.ndarray, make, labels: list[str], fit, normal, novel) -> float:
    sc = make().fit(emb[fit], [labels[i] for i in fit])
    return auroc([0] * len(normal) + [1] * len(novel), sc.distances(emb[normal + novel]).min(1))


def inner_pooled(emb: np.ndarray, make, labels: list[str], draws: int, seed: int) -> list[float]:
    """AUROCs of pooled-unseen draws inside the given photos (the outer protocol, replayed on the fitting set)."""
    vals = []
    for fit, normal, novel in pooled_draws(labels, draws, seed=seed + 7):
        if not fit or not normal or not novel:
            vals.append(float("nan"))
            continue
        a = outer_auroc(emb, make, labels, fit, normal, novel)
        vals.append(float("nan") if a is None else float(a))
    return vals


def report(res: dict[tuple[str, str], list[float]], picks: dict[str, dict[str, int]]) -> None:
    ref = "auto (loso)"
    print("| setting | nested (80 folds) | nested - auto (se, better/worse) | pooled unseen (50 draws) | pooled - auto (se, better/worse) |")
    print("|---|---|---|---|---|")
    settings = list(dict.fromkeys(k[1] for k in res))
    for n in settings:
        cells = []
        for protocol in ("nested", "pooled"):
            a = np.array(res[(protocol, n)], float)
            d = a - np.array(res[(protocol, ref)], float)
            d = d[~np.isnan(d)]
            se = d.std(ddof=1) / np.sqrt(len(d))
            cells += [f"{np.nanmean(a):.3f}", f"{d.mean():+.3f} ({se:.3f}, {int((d > 0).sum())}/{int((d < 0).sum())})"]
        print(f"| {n} | " + " | ".join(cells) + " |", flush=True)
    for key, counts in picks.items():
        print(f"picks {key}: {dict(sorted(counts.items(), key=lambda kv: -kv[1]))}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--splits", type=int, default=5)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/novelty_cache"))
    ap.add_argument("--inner-draws", type=int, default=6)
    ap.add_argument("--rules", action=argparse.BooleanOptionalAction, default=True,
                    help="also the selection rules (inner folds for every candidate: slow); off: fixed settings and auto only")
    ap.add_argument("--rule-fusions", default="", help="comma-separated fusion names the rules may choose (default: all)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    feats = Features(args.cache)
    res: dict[tuple[str, str], list[float]] = {}
    picks: dict[str, dict[str, int]] = {}
    for setname, split_of in (("camera_traps", camera_trap_split), ("serengeti", serengeti_split)):
        for split in range(args.splits):
            train = split_of(split)[0]
            labels = [species_key(it.label) for it in train]
            cands = all_candidates(feats, train)
            names = list(cands)
            engine = [n for n in names if not n.startswith("fusion") and not n.endswith("unit rgb | ocsvm")
                      and not n.endswith("unit gray | ocsvm")]
            protocols = [("nested", outer_folds(labels))] + ([("pooled", pooled_draws(labels, seed=split))] if setname == "serengeti" else [])
            for protocol, folds in protocols:
                for fit, normal, novel in folds:
                    fl = [labels[i] for i in fit]
                    outer = {n: outer_auroc(e, m, labels, fit, normal, novel) for n, (e, m) in cands.items()}
                    for n, v in outer.items():
                        res.setdefault((protocol, n), []).append(v)
                    wanted = [n for n in names if n in engine or not args.rule_fusions
                              or any(n.startswith(f"fusion {f} ") or n == f"fusion {f}" for f in args.rule_fusions.split(","))]
                    fusions = [n for n in wanted if n not in engine]
                    loso = {n: pseudo_novelty_folds(cands[n][0][fit], fl, cands[n][1]) for n in (wanted if args.rules else engine)}
                    pooled = {n: inner_pooled(cands[n][0][fit], cands[n][1], fl, args.inner_draws, split) for n in wanted} if args.rules else {}
                    rules = {"auto (loso)": (engine, lambda n: loso[n])} if not args.rules else {
                        "auto (loso)": (engine, lambda n: loso[n]),
                        "auto on inner pooled": (engine, lambda n: pooled[n]),
                        "auto on loso + inner pooled": (engine, lambda n: list(loso[n]) + list(pooled[n])),
                        "auto + fusions (loso)": (engine + fusions, lambda n: loso[n]),
                        "auto + fusions on inner pooled": (engine + fusions, lambda n: pooled[n]),
                        "auto + fusions on loso + inner pooled": (engine + fusions, lambda n: list(loso[n]) + list(pooled[n])),
                    }
                    for rule, (pool, folds_of) in rules.items():
                        f = [folds_of(n) for n in pool]
                        chosen = choose_from_folds(pool, f)[1]["chosen"] if any(len(x) for x in f) else pool[0]
                        res.setdefault((protocol, rule), []).append(outer[chosen])
                        key = f"{setname} {protocol} {rule}"
                        picks.setdefault(key, {}).setdefault(chosen, 0)
                        picks[key][chosen] += 1
            print(f"# {setname} split {split} done", flush=True)
            if setname == "serengeti" and split < args.splits - 1:
                report(res, picks)  # a running table (the pooled column: the Serengeti splits so far)
    report(res, picks)


if __name__ == "__main__":
    main()
