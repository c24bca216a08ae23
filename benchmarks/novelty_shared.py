"""Novelty AUROC of the embedding engines on the shared camera-trap photos (run from the project root).

    python benchmarks/novelty_shared.py --engine simclr_ocsvm [--param key=value ...] [--splits 5]

Two measurements, each through `anomaly-gui evaluate ... --json` (so the figures are the CLI's):
- `camera_traps`: the evaluator's own protocol on ../shared/data/camera_traps (species with 2+ photos
  known, 30 % of their photos held out as normal; every other species novel).
- `serengeti`: ../shared/data/serengeti_guide laid out as a user would (`train/<species>/`,
  `test/<species>/`; symlinks in a temporary folder): every third species (sorted names, from the
  third) is unseen; known species train on photos 1-2 and test on photo 3; unseen species test on all 3.
- `easy` (once): a cats-vs-dogs-like check, `train/Cat/` (7 Serengeti cat species, photos 1-2), `test/Cat/`
  (photo 3) vs `test/Bird/` (6 bird species), as `anomaly-gui evaluate train --test test` reads it;
- `catdog` (once, also with `--only catdog`): the same `train/Cat/`, `test/Cat/` vs `test/Dog/` (5 dog-like
  carnivores: jackal, bat-eared fox, spotted and striped hyena, aardwolf), the issue's cats-vs-dogs layout.
With `--splits N`, N splits of each: split 0 is the one above; split s > 0 draws the 18 unseen Serengeti
species at random (seed s) and holds out other camera-trap photos (`--param seed=s`); mean +- sd printed.
Nothing here was tuned on the test photos: defaults were chosen by pseudo-novelty validation on the
training species (see docs/decisions/0012-*.md, 0019, 0024).
With `--baselines` (default on) each split also prints the issue's untrained references on the same train /
test photos (`novelty_baselines.py`: ImageNet MobileNetV2 global features of the whole photo + one
scikit-learn OneClassSVM per species; Euclidean 1-NN distance; Mahalanobis to the nearest species mean),
so the engine's figure always sits next to what its untrained backbone gives.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
from pathlib import Path

from evaluate_cli import evaluate  # the benchmarks' one `anomaly-gui evaluate` runner
from novelty_baselines import BASELINES, baseline_aurocs, camera_trap_split, easy_layout, easy_split, serengeti_split

DATA = Path(os.environ.get("ANOMALY_GUI_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


def serengeti_layout(dest: Path, split: int = 0) -> tuple[Path, Path]:
    src = DATA / "serengeti_guide"
    species = sorted(d.name for d in src.iterdir() if d.is_dir())
    unseen = set(species[2::3]) if split == 0 else set(random.Random(split).sample(species, len(species[2::3])))
    for s in species:
        for photo in sorted((src / s).glob("*.jpg")):
            side = "test" if s in unseen or photo.stem == "3" else "train"
            (dest / side / s).mkdir(parents=True, exist_ok=True)
            (dest / side / s / photo.name).symlink_to(photo)
    return dest / "train", dest / "test"



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", default="simclr_ocsvm")
    ap.add_argument("--param", action="append", default=[])
    ap.add_argument("--only", choices=["camera_traps", "serengeti", "easy", "catdog"], default=None)
    ap.add_argument("--splits", type=int, default=1, help="species / hold-out splits of each set (mean +- sd)")
    ap.add_argument("--baselines", action=argparse.BooleanOptionalAction, default=True,
                    help="also the untrained-backbone references on the same splits")
    args = ap.parse_args()
    keys = ("novelty_auroc", "pseudo_novelty_auroc", "encoder", "colour", "animal_crop", "cam_boxes", "fit_seconds",
            "n_train", "n_test", "n_novel", "train_reader", "test_reader", "scorer")
    figures: dict[str, list[float]] = {}
    for split in range(args.splits):
        if args.only in (None, "camera_traps"):
            res = evaluate(DATA / "camera_traps", None, args.engine, args.param + ([f"seed={split}"] if split else []))
            print("camera_traps", split, json.dumps({**{k: res.get(k) for k in keys}, "chosen": _chosen(res)}), flush=True)
            figures.setdefault("camera_traps engine", []).append(res["novelty_auroc"])
            if args.baselines:
                _baselines("camera_traps", camera_trap_split(split), figures)
        if args.only in (None, "serengeti"):
            with tempfile.TemporaryDirectory() as tmp:
                train, test = serengeti_layout(Path(tmp), split)
                res = evaluate(train, test, args.engine, args.param)
            print("serengeti", split, json.dumps({**{k: res.get(k) for k in keys}, "chosen": _chosen(res)}), flush=True)
            figures.setdefault("serengeti engine", []).append(res["novelty_auroc"])
            if args.baselines:
                _baselines("serengeti", serengeti_split(split), figures)
    if args.only in (None, "easy"):  # one fixed layout: the easy case the animal crop must not hurt
        with tempfile.TemporaryDirectory() as tmp:
            train, test = easy_layout(Path(tmp))
            res = evaluate(train, test, args.engine, args.param)
        print("easy", 0, json.dumps({**{k: res.get(k) for k in keys}, "chosen": _chosen(res)}), flush=True)
        if args.baselines:
            _baselines("easy", easy_split(), figures)
    if args.only in (None, "catdog"):  # the cats-vs-dogs layout, with dog-like Serengeti carnivores
        with tempfile.TemporaryDirectory() as tmp:
            train, test = easy_layout(Path(tmp), "Dog")
            res = evaluate(train, test, args.engine, args.param)
        print("catdog", 0, json.dumps({**{k: res.get(k) for k in keys}, "chosen": _chosen(res)}), flush=True)
        if args.baselines:
            _baselines("catdog", easy_split("Dog"), figures)
    for name, vals in figures.items():
        if len(vals) > 1:
            print(f"{name}: novelty AUROC {statistics.mean(vals):.3f} +- {statistics.stdev(vals):.3f} over {len(vals)} splits", flush=True)


def _chosen(res: dict) -> str | None:
    """The setting the engine chose per fit (scorer / crop / features = auto), with its reason."""
    sel = res.get("selection") or {}
    return f"{sel.get('chosen')} ({sel.get('reason')})" if sel else None


def _baselines(name: str, split, figures: dict[str, list[float]]) -> None:
    """The untrained references on the split's own train / test photos (the evaluator's split functions)."""
    vals = baseline_aurocs(split)
    print(name, "untrained", json.dumps({k: round(v, 4) for k, v in vals.items()}), flush=True)
    for k in BASELINES:
        figures.setdefault(f"{name} {k}", []).append(vals[k])


if __name__ == "__main__":
    main()
