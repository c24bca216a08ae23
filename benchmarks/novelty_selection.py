"""How the novelty engine's crop / flip / colour defaults were chosen: pseudo-novelty on training species only.

    python benchmarks/novelty_selection.py [--splits 5]

For each variant (photos without boxes embedded whole or cropped by the activation-map animal locator
with 1 or 2 zoom steps; flip averaging off/on; RGB or grey) it prints the leave-one-species-out
pseudo-novelty AUROC (`engines.embedding.validation.pseudo_novelty_auroc`, k-NN scorer) computed on:
- `serengeti`: the *training* photos (1-2) of the known species of each split of
  `benchmarks/novelty_shared.py` (split s: the same unseen species); unseen species and photo 3 are never read;
- `camera_traps`: the species with 2+ photos (the evaluator's known species: jaguar, cougar, deer, wolf),
  each held out in turn; the other (novel) species are never read.
Each fold (one held-out species) is one pseudo-novelty experiment: the default is the variant with the best
mean over all folds, each counting once (5 x 12 Serengeti folds, 4 camera-trap folds); no test photo is used.
Since decision 0024, `benchmarks/novelty_baselines.py` gives the same leave-one-species-out figures on each
split's training photos next to the untrained baselines, the night-photo validation and the `cam_day` crop.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout this script belongs to

from anomaly_gui.core.crops import load_crops  # noqa: E402 (after the path line)
from anomaly_gui.core.formats.base import DatasetItem, import_dataset
from anomaly_gui.core.formats.camtrap import species_key
from anomaly_gui.engines.base import RunContext, get_engine
from anomaly_gui.engines.embedding.engine import _to_gray
from anomaly_gui.engines.embedding.network import find_mobilenet_weights
from anomaly_gui.engines.embedding.scoring import KNNScorer
from anomaly_gui.engines.embedding.validation import pseudo_novelty_auroc

DATA = Path(os.environ.get("ANOMALY_GUI_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
CROPS = (("whole", 1), ("cam", 1), ("cam", 2))


def serengeti_train_items(split: int) -> list[DatasetItem]:
    """Training photos (1-2) of the known species of `novelty_shared.serengeti_layout(split)`."""
    src = DATA / "serengeti_guide"
    species = sorted(d.name for d in src.iterdir() if d.is_dir())
    unseen = set(species[2::3]) if split == 0 else set(random.Random(split).sample(species, len(species[2::3])))
    return [DatasetItem(str(p), label=s) for s in species if s not in unseen for p in sorted((src / s).glob("*.jpg")) if p.stem != "3"]


def embeddings(items: list[DatasetItem], crop: str, steps: int) -> dict[str, np.ndarray]:
    """Per colour ('rgb', 'gray'): (plain, flip-averaged) unit embeddings of the items' crops."""
    eng = get_engine("simclr_ocsvm")(device="cpu", animal_crop=crop, cam_steps=steps, flip_average=False)
    eng.net.load_imagenet(find_mobilenet_weights())
    eng.net.eval()
    eng.locator = eng.net if crop == "cam" else None
    specs = eng._specs(items, RunContext())
    crops, kept, problems = load_crops(specs, eng.params.image_size, eng.params.pad)
    assert not problems, problems
    out = {}
    for colour in ("rgb", "gray"):
        arr = crops if colour == "rgb" else _to_gray(crops)
        e = eng.embed_array(arr)
        f = eng.embed_array(np.ascontiguousarray(arr[:, :, ::-1]))
        both = e + f
        out[colour] = e
        out[colour + "+flip"] = both / np.linalg.norm(both, axis=1, keepdims=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--splits", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    ct = [it for it in import_dataset(DATA / "camera_traps").items if it.label in ("jaguar", "cougar", "deer", "wolf")]
    sets = {f"serengeti{s}": serengeti_train_items(s) for s in range(args.splits)}
    sets["camera_traps"] = ct
    union = {it.path: it for items in sets.values() for it in items}  # each photo embedded once per variant
    order = {p: i for i, p in enumerate(union)}
    table: dict[str, dict[str, float]] = {}
    for crop, steps in CROPS:
        t0 = time.perf_counter()
        embs = embeddings(list(union.values()), crop, steps)
        for name, items in sets.items():
            rows = [order[it.path] for it in items]
            labels = [species_key(it.label) for it in items]
            held = sorted(set(labels)) if name == "camera_traps" else None
            for variant, emb in embs.items():
                key = f"{crop}{steps if crop == 'cam' else ''} {variant}"
                table.setdefault(key, {})[name] = pseudo_novelty_auroc(emb[rows], labels, lambda: KNNScorer(1), held_out=held, seed=0)
        print(f"# {crop} {steps}: {time.perf_counter() - t0:.0f} s", flush=True)
    folds = {name: min(12, len({it.label for it in items})) for name, items in sets.items()}  # pseudo_novelty_auroc's folds
    print("| variant | serengeti LOSO (mean ± sd over splits) | camera_traps LOSO | mean over all folds | mean of the two sets |")
    print("|---|---|---|---|---|")
    rows = []
    for key, vals in table.items():
        ser = [v for k, v in vals.items() if k.startswith("serengeti")]
        m, sd = statistics.mean(ser), statistics.stdev(ser) if len(ser) > 1 else 0.0
        pooled = sum(folds[k] * v for k, v in vals.items()) / sum(folds[k] for k in vals)
        rows.append((pooled, key, m, sd, vals["camera_traps"], (m + vals["camera_traps"]) / 2))
    for pooled, key, m, sd, c, both in sorted(rows, reverse=True):
        print(f"| {key} | {m:.3f} ± {sd:.3f} | {c:.3f} | {pooled:.3f} | {both:.3f} |", flush=True)


if __name__ == "__main__":
    main()
