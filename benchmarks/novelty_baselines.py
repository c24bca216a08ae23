"""Untrained-backbone novelty baselines and engine-like variants on cached features (run from the project root).

    python benchmarks/novelty_baselines.py [--splits 5] [--cache /tmp/novelty_cache]

The issue's reference is "the same ImageNet MobileNetV2 with no training": global average-pooled features
of the whole photo (1280-d, as the network gives them) and
- `base ocsvm`: one scikit-learn OneClassSVM per species (its defaults: RBF, gamma='scale', nu=0.5);
  novelty = minus the largest decision value over the species;
- `base knn`: Euclidean distance to the nearest training photo (any species);
- `base maha`: Mahalanobis distance to the nearest species mean under one shared Ledoit-Wolf covariance
  of the within-species residuals.
Next to them, the engine's own pipeline as variants: crop (`whole` / `cam` animal crop), colour (`rgb`,
`gray`, `auto` = the engine's rule), flip averaging, unit-length features, and the engine's scorers
(`knn` with calibrated per-species scales, `knn-raw` without scales, `maha`, `ocsvm`).

Two figures per row, on the splits of `benchmarks/novelty_shared.py` (same train / test photos):
- `val`: leave-one-species-out pseudo-novelty AUROC on the *training photos* of each split
  (`engines.embedding.validation.pseudo_novelty_auroc`): what a default may be chosen on;
- `test`: novelty AUROC of the split's test photos (known species' held-out photos vs unseen species): reported,
  never used to choose.
Features are cached per photo in `--cache` (outside the repo), so reruns take seconds.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import random
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout this script belongs to

from anomaly_gui.core.crops import CropSpec, crop_specs, load_crops  # noqa: E402 (after the path line)
from anomaly_gui.core.formats.base import DatasetItem  # noqa: E402
from anomaly_gui.core.metrics import auroc  # noqa: E402
from anomaly_gui.engines.embedding.animal_crop import CAM_PAD  # noqa: E402
from anomaly_gui.engines.embedding.scoring import make_scorer  # noqa: E402
from anomaly_gui.engines.embedding.validation import pseudo_novelty_auroc  # noqa: E402

DATA = Path(os.environ.get("ANOMALY_GUI_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
Split = tuple[list[DatasetItem], list[DatasetItem], list[int]]  # train, test, novel flags of test


# -- the splits of novelty_shared.py ---------------------------------------------------------------
def camera_trap_split(seed: int) -> Split:
    from anomaly_gui.evaluation.embedding import load_species_dataset, split_known_novel

    return split_known_novel(load_species_dataset(DATA / "camera_traps")[0], seed=seed)


def serengeti_split(split: int) -> Split:
    src = DATA / "serengeti_guide"
    species = sorted(d.name for d in src.iterdir() if d.is_dir())
    unseen = set(species[2::3]) if split == 0 else set(random.Random(split).sample(species, len(species[2::3])))
    train, test, novel = [], [], []
    for s in species:
        for photo in sorted((src / s).glob("*.jpg")):
            it = DatasetItem(str(photo), label=s)
            if s in unseen or photo.stem == "3":
                test.append(it)
                novel.append(int(s in unseen))
            else:
                train.append(it)
    return train, test, novel


EASY_KNOWN = ("cheetah", "leopard", "lion-female", "lion-male", "serval", "caracal", "wildcat")  # "Cat"
EASY_NOVEL = ("guinea-fowl", "kori-bustard", "ostrich", "secretary-bird", "other-bird", "vulture")  # "Bird"
#: the cats-vs-dogs proxy (decision 0032): dog-like carnivores of the Serengeti set (canids and hyaenids)
DOG_NOVEL = ("jackal", "bat-eared-fox", "hyena-spotted", "hyena-striped", "aardwolf")  # "Dog"


def easy_layout(dest: Path, novel: str = "Bird") -> tuple[Path, Path]:
    """The cats-vs-dogs-like easy check from Serengeti photos, laid out as a user would (symlinks):
    `train/Cat/` (photos 1-2 of the 7 cat species), `test/Cat/` (their photo 3), `test/Bird/` (all 18 photos
    of the 6 bird species; `novel="Dog"`: `test/Dog/`, all 15 photos of 5 dog-like carnivores, the harder
    cats-vs-dogs proxy). File names keep their species word (`leopard_1.jpg`), as sorted photos do."""
    src = DATA / "serengeti_guide"
    for group, names in (("Cat", EASY_KNOWN), (novel, DOG_NOVEL if novel == "Dog" else EASY_NOVEL)):
        for name in names:
            for photo in sorted((src / name).glob("*.jpg")):
                side = "train" if group == "Cat" and photo.stem != "3" else "test"
                (dest / side / group).mkdir(parents=True, exist_ok=True)
                (dest / side / group / f"{name}_{photo.name}").symlink_to(photo)
    return dest / "train", dest / "test"


def easy_split(novel: str = "Bird") -> Split:
    from anomaly_gui.evaluation.embedding import load_species_dataset

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        train, test = easy_layout(Path(tmp), novel)
        tr, reader = load_species_dataset(train)
        te = load_species_dataset(test, fmt=reader)[0]
        resolve = {str(p): str(p.resolve()) for p in Path(tmp).rglob("*.jpg")}
    for it in tr + te:
        it.path = resolve[it.path]
    return tr, te, [int(it.label != "cat") for it in te]


# -- cached features -----------------------------------------------------------------------------
class Features:
    """Raw pooled MobileNetV2 features (and of the mirror image) per crop spec, cached on disk."""

    def __init__(self, cache: Path):
        import torch

        from anomaly_gui.engines.base import get_engine
        from anomaly_gui.engines.embedding.network import find_mobilenet_weights

        self.torch = torch
        self.cache = cache
        cache.mkdir(parents=True, exist_ok=True)
        self.eng = get_engine("simclr_ocsvm")(device="cpu", flip_average=False, animal_crop="cam")  # boxes for every photo
        self.eng.net.load_imagenet(find_mobilenet_weights())
        self.eng.net.eval()
        self.mem: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.loaded: set[str] = set()

    def specs(self, items: Sequence[DatasetItem], crop: str) -> list[CropSpec]:
        """The engine's crop specs: data boxes; photos without one whole or cropped by the locator.
        `plain` = the whole photo even when the data has boxes (the untrained baseline)."""
        from anomaly_gui.engines.base import RunContext

        if crop == "plain":
            return [CropSpec(it.path, None, it.label, i) for i, it in enumerate(items)]
        base = crop_specs(items, min_score=self.eng.params.min_box_score)
        if crop == "whole":
            return base
        f = self.cache / "cam_boxes.json"
        boxes = json.loads(f.read_text()) if f.exists() else {}
        todo = [s for s in base if s.box is None and s.path not in boxes]
        if todo:
            self.eng.locator = self.eng.net
            found = self.eng._specs([DatasetItem(s.path, label=s.label) for s in todo], RunContext())
            self.eng.locator = None
            boxes.update({s.path: [float(v) for v in s.box] if s.box else None for s in found})
            f.write_text(json.dumps(boxes))
        day = (lambda path: not is_ir(path)) if crop == "camday" else (lambda path: True)  # camday: IR photos stay whole
        return [replace(s, box=tuple(boxes[s.path]), meta={"cam_box": True, "pad": CAM_PAD})
                if s.box is None and boxes[s.path] and day(s.path) else s for s in base]

    def embed(self, specs: Sequence[CropSpec], colour: str) -> tuple[np.ndarray, np.ndarray]:
        """(raw, raw of mirror) features (n, 1280) of the specs' crops at 224 px in the colour asked."""
        keys = [f"{s.path}|{s.box}|{s.meta.get('pad', '')}|{colour}" for s in specs]  # the crop as the engine pads it
        todo = [k for k, key in enumerate(keys) if key not in self.mem]
        disk = self.cache / f"feat_{colour}.npz"
        if todo and disk.exists() and colour not in self.loaded:
            self.loaded.add(colour)
            z = np.load(disk, allow_pickle=False)
            self.mem.update({str(k): (a, b) for k, a, b in zip(z["keys"], z["raw"], z["flip"])})
            todo = [k for k, key in enumerate(keys) if key not in self.mem]
        if todo:
            crops, kept, problems = load_crops([specs[k] for k in todo], 224, self.eng.params.pad)
            assert not problems, problems
            crops = convert_colour(crops, colour)
            with self.torch.no_grad():
                for j in range(0, len(crops), 32):
                    x = self.torch.from_numpy(crops[j:j + 32]).permute(0, 3, 1, 2).float() / 255.0
                    h, _ = self.eng.net(x)
                    hf, _ = self.eng.net(x.flip(3))
                    for r in range(len(x)):
                        self.mem[keys[todo[j + r]]] = (h[r].numpy(), hf[r].numpy())
            self.save()
        return np.stack([self.mem[k][0] for k in keys]), np.stack([self.mem[k][1] for k in keys])

    def save(self) -> None:
        by_colour: dict[str, list[str]] = {}
        for k in self.mem:
            by_colour.setdefault(k.rsplit("|", 1)[1], []).append(k)
        for colour, keys in by_colour.items():
            np.savez(self.cache / f"feat_{colour}.npz", keys=np.array(keys), raw=np.stack([self.mem[k][0] for k in keys]),
                     flip=np.stack([self.mem[k][1] for k in keys]))


def convert_colour(crops: np.ndarray, colour: str) -> np.ndarray:
    """`rgb` as read; `gray` luminance in 3 channels; `graystretch` grey stretched per image (1st-99th
    percentile to 0-255); `rgbstretch` each channel stretched so (white balance + contrast per image)."""
    from anomaly_gui.engines.embedding.engine import _to_gray

    if colour == "rgb":
        return crops
    x = (_to_gray(crops) if colour.startswith("gray") else crops).astype(np.float32)
    if colour.endswith("stretch"):
        axes = (1, 2) if colour == "rgbstretch" else (1, 2, 3)
        lo = np.percentile(x, 1, axis=axes, keepdims=True)
        hi = np.percentile(x, 99, axis=axes, keepdims=True)
        x = (x - lo) / np.maximum(hi - lo, 1.0) * 255.0
    return x.round().clip(0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=None)
def is_ir(path: str) -> bool:
    """A night infrared shot: (near) grey pixels although stored as RGB."""
    from PIL import Image

    im = Image.open(path)
    im.draft("RGB", (256, 256))
    a = np.asarray(im.convert("RGB")).astype(np.int16)
    return float((a.max(2) - a.min(2)).mean()) < 6


def ir_query_auroc(emb: np.ndarray, labels: Sequence[str], ir: Sequence[bool], make: Callable[[], Any],
                   day_only: bool = False) -> float | None:
    """Leave-one-species-out pseudo-novelty on night infrared photos only (training photos of the split):
    each species with an IR photo is held out in turn; its IR photos are the novel ones, one IR photo of each
    other species with 2+ photos is held out of fitting as a normal one, and one model scores both.
    `day_only`: the models see day photos only (species known by day, met at night). Mean AUROC over folds."""
    labels = list(labels)
    names = sorted({labels[i] for i in range(len(labels)) if ir[i]})
    vals = []
    for held in names:
        normal = []
        for s in sorted(set(labels) - {held}):
            rows = [i for i, lab in enumerate(labels) if lab == s]
            irs = [i for i in rows if ir[i]]
            if irs and len(rows) >= 2:
                normal.append(irs[0])
        novel = [i for i in range(len(labels)) if labels[i] == held and ir[i]]
        fit = [i for i in range(len(labels)) if labels[i] != held and i not in normal and not (day_only and ir[i])]
        if not normal or not novel or len({labels[i] for i in fit}) < 1:
            continue
        sc = make().fit(emb[fit], [labels[i] for i in fit])
        a = auroc(np.r_[np.zeros(len(normal)), np.ones(len(novel))], sc.distances(emb[normal + novel]).min(1))
        if a is not None:
            vals.append(a)
    return float(np.mean(vals)) if vals else None


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)


# -- baseline scorers (the fit / distances protocol of engines.embedding.scoring) -------------------
class BaseOCSVM:
    def fit(self, emb: np.ndarray, labels: Sequence[str]) -> "BaseOCSVM":
        from sklearn.svm import OneClassSVM

        self.names = sorted(set(labels))
        self.models = [OneClassSVM().fit(emb[[i for i, lab in enumerate(labels) if lab == s]]) for s in self.names]
        return self

    def distances(self, emb: np.ndarray) -> np.ndarray:
        return np.stack([-m.decision_function(emb) for m in self.models], 1)


class BaseKNN:
    def fit(self, emb: np.ndarray, labels: Sequence[str]) -> "BaseKNN":
        self.bank = np.asarray(emb, np.float64)
        return self

    def distances(self, emb: np.ndarray) -> np.ndarray:
        d = np.linalg.norm(np.asarray(emb, np.float64)[:, None] - self.bank[None], axis=2)
        return d.min(1, keepdims=True)


class BaseMaha:
    """Ledoit-Wolf shrunk covariance (scikit-learn's shrinkage), inverted through the residuals' SVD
    (Woodbury) instead of a 1280 x 1280 pseudo-inverse: the same distances, 100x faster."""

    def fit(self, emb: np.ndarray, labels: Sequence[str]) -> "BaseMaha":
        from sklearn.covariance import ledoit_wolf_shrinkage

        x = np.asarray(emb, np.float64)
        self.names = sorted(set(labels))
        rows = [[i for i, lab in enumerate(labels) if lab == s] for s in self.names]
        self.means = np.stack([x[r].mean(0) for r in rows])
        resid = np.concatenate([x[r] - x[r].mean(0) for r in rows])
        if len(resid) <= len(rows):
            resid = x - x.mean(0)
        alpha = float(ledoit_wolf_shrinkage(resid, assume_centered=True))
        _, sv, vt = np.linalg.svd(resid, full_matrices=False)
        lam = sv ** 2 / len(resid)  # eigenvalues of the empirical covariance (its other ones are 0)
        mu = float(lam.sum()) / x.shape[1]
        self.basis, self.inv = vt, 1.0 / ((1 - alpha) * lam + alpha * mu)
        self.rest = 1.0 / max(alpha * mu, 1e-12)
        return self

    def distances(self, emb: np.ndarray) -> np.ndarray:
        d = np.asarray(emb, np.float64)[:, None] - self.means[None]  # (n, s, d)
        proj = d @ self.basis.T
        d2 = (proj ** 2 * self.inv).sum(2) + ((d ** 2).sum(2) - (proj ** 2).sum(2)) * self.rest
        return np.sqrt(np.maximum(d2, 0))


class RawKNN:
    """The engine's cosine k-NN without the calibrated per-species scales."""

    def fit(self, emb: np.ndarray, labels: Sequence[str]) -> "RawKNN":
        self.sc = make_scorer("knn").fit(emb, labels)
        self.sc.scales = {s: 1.0 for s in self.sc.scales}
        return self

    def distances(self, emb: np.ndarray) -> np.ndarray:
        return self.sc.distances(emb)


SCORERS: dict[str, Callable[[], Any]] = {
    "base ocsvm": BaseOCSVM, "base knn": BaseKNN, "base maha": BaseMaha, "knn": lambda: make_scorer("knn"),
    "knn-raw": RawKNN, "maha": lambda: make_scorer("mahalanobis"), "ocsvm": lambda: make_scorer("ocsvm"),
}


def item_scores(scorer: Any, emb: np.ndarray, specs: Sequence[CropSpec], n_items: int) -> np.ndarray:
    """Per item: the largest novelty (min over species) of its crops, as the engine scores a photo."""
    d = scorer.distances(emb).min(1)
    out = np.full(n_items, -np.inf)
    for s, v in zip(specs, d):
        out[s.item_index] = max(out[s.item_index], v)
    return out


BASELINES = ("base ocsvm", "base knn", "base maha")
_FEATURES: list[Features] = []


def baseline_aurocs(split: Split, cache: Path = Path("/tmp/novelty_cache")) -> dict[str, float]:
    """Test-side novelty AUROC of the untrained references on one split (features cached in `cache`)."""
    if not _FEATURES:
        _FEATURES.append(Features(cache))
    train, test, novel = split
    feats = _FEATURES[0]
    tr, te = feats.specs(train, "plain"), feats.specs(test, "plain")
    e_tr, e_te = feats.embed(tr, "rgb")[0], feats.embed(te, "rgb")[0]
    labels = [s.label for s in tr]
    return {b: float(auroc(np.array(novel), item_scores(SCORERS[b]().fit(e_tr, labels), e_te, te, len(test)))) for b in BASELINES}


COLOURS = ("rgb", "gray", "graystretch", "rgbstretch")
ENGINE_SCORERS = ("knn", "knn-raw", "maha", "ocsvm")
CROPS = ("whole", "cam", "camday")
MEASURES = ("val", "ir", "irday", "test")


def variants(full: bool, scorers: Sequence[str] = ENGINE_SCORERS, crops: Sequence[str] = CROPS) -> list[tuple[str, str, bool, bool, str]]:
    """(crop, colour, flip, unit length, scorer): the baselines, then the engine-like grid."""
    out = [("plain", "rgb", False, False, b) for b in BASELINES]
    cols = COLOURS if full else ("rgb", "gray")
    return out + [(c, col, flip, True, sc) for c in crops for col in cols for flip in (False, True) for sc in scorers]


def measure(feats: Features, split: Split, variant: tuple[str, str, bool, bool, str], ir_of: dict[str, bool]) -> dict[str, float | None]:
    train, test, novel = split
    crop, colour, flip, norm, sc = variant
    tr_specs, te_specs = feats.specs(train, crop), feats.specs(test, crop)
    e_tr = _features(feats, tr_specs, colour, flip, norm)
    e_te = _features(feats, te_specs, colour, flip, norm)
    labels = [s.label for s in tr_specs]
    ir = [ir_of[s.path] for s in tr_specs]
    make = SCORERS[sc]
    return {"val": pseudo_novelty_auroc(e_tr, labels, make, seed=0),
            "ir": ir_query_auroc(e_tr, labels, ir, make), "irday": ir_query_auroc(e_tr, labels, ir, make, day_only=True),
            "test": auroc(np.array(novel), item_scores(make().fit(e_tr, labels), e_te, te_specs, len(test)))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--splits", type=int, default=5)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/novelty_cache"))
    ap.add_argument("--only", choices=["camera_traps", "serengeti", "easy"], default=None)
    ap.add_argument("--full", action="store_true", help="also per-image stretched colours")
    ap.add_argument("--crops", default=",".join(CROPS), help="crops of the grid (comma-separated)")
    ap.add_argument("--scorers", default=",".join(ENGINE_SCORERS), help="engine scorers of the grid (comma-separated)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    feats = Features(args.cache)
    sets = [n for n in ("camera_traps", "serengeti", "easy") if args.only in (None, n)]
    rows: dict[str, dict[str, list[float]]] = {}
    for name in sets:
        for split_no in range(args.splits):
            done = args.cache / f"rows2_{name}_{split_no}_{int(args.full)}_{args.scorers.replace(',', '-')}_{args.crops.replace(',', '-')}.json"  # a rerun picks up finished splits
            part = json.loads(done.read_text()) if done.exists() else {}
            if not part:
                if name == "easy" and split_no:
                    break
                split = {"camera_traps": camera_trap_split, "serengeti": serengeti_split, "easy": lambda _: easy_split()}[name](split_no)
                ir_of = {it.path: is_ir(it.path) for it in split[0] + split[1]}
                for v in variants(args.full, args.scorers.split(","), args.crops.split(",")):
                    key = f"{v[0]} {v[1]}{'+flip' if v[2] else ''}{' unit' if v[3] else ''} | {v[4]}"
                    part[key] = {m: (np.nan if val is None else float(val)) for m, val in measure(feats, split, v, ir_of).items()}
                done.write_text(json.dumps(part))
            for key, vals in part.items():
                for m, val in vals.items():
                    rows.setdefault(key, {}).setdefault(f"{name} {m}", []).append(np.nan if val is None else val)
            print(f"# {name} split {split_no} done", flush=True)
    cols = [f"{n} {m}" for n in sets for m in MEASURES]
    print("| variant | scorer | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for key in sorted(rows, key=lambda k: -np.nanmean([np.nanmean(rows[k][c]) for c in cols if c.endswith(" val")])):
        v, sc = key.split(" | ")
        print(f"| {v} | {sc} | " + " | ".join(f"{np.nanmean(rows[key][c]):.3f}" for c in cols) + " |", flush=True)


def _features(feats: Features, specs: Sequence[CropSpec], colour: str, flip: bool, norm: bool) -> np.ndarray:
    raw, mirror = feats.embed(specs, colour)
    if not norm:
        return raw
    return unit(unit(raw) + unit(mirror)) if flip else unit(raw)


if __name__ == "__main__":
    main()
