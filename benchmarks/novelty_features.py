"""Richer pretrained features for the novelty engine, measured on training photos only (run from the project root).

    OMP_NUM_THREADS=1 python benchmarks/novelty_features.py [--splits 5] [--cache /tmp/novelty_feat_cache]

Same protocol as `novelty_nested.py` (the splits of `novelty_shared.py`, their *training photos* only; no test
photo is read): per feature recipe and scorer, the plain leave-one-species-out mean (`loso`) and the outer figure
of the nested folds as a fixed setting (`nested`). Recipes combine, from one ImageNet MobileNetV2 pass per crop
(and its mirror image):
- the layer(s) pooled: the last 1280-d map (the engine's features) and mid-level block outputs (96-d block 13,
  160-d block 16, 320-d block 17);
- the pooling (average, max, generalised mean p=3), each layer's vector made unit length before concatenation;
- power normalisation (signed square root before unit length, Hellinger-like);
- the input: the square 224-px crop (the engine's), or the crop resized keeping its aspect (short side 224).
Pooled statistics are cached per crop in `--cache` (outside the repo): reruns take seconds.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from novelty_baselines import Features, camera_trap_split, convert_colour, serengeti_split  # noqa: E402
from novelty_nested import outer_folds  # noqa: E402

from anomaly_gui.core.crops import CropSpec, load_crop, resize_rgb  # noqa: E402
from anomaly_gui.core.formats.camtrap import species_key  # noqa: E402
from anomaly_gui.core.metrics import auroc  # noqa: E402
from anomaly_gui.engines.embedding.scoring import make_scorer  # noqa: E402
from anomaly_gui.engines.embedding.validation import pseudo_novelty_folds  # noqa: E402

LAYERS = {13: "b13", 16: "b16", 17: "b17", 18: "last"}
INPUTS = ("sq224", "ar224")


class Pooled:
    """Per crop spec, colour and input: {stat name: (vector, mirror's vector)}; cached on disk."""

    def __init__(self, cache: Path):
        import torch

        self.torch = torch
        self.feats = Features(Path("/tmp/novelty_cache"))  # crop specs (cached activation-map boxes)
        self.net = self.feats.eng.net
        self.cache = cache
        cache.mkdir(parents=True, exist_ok=True)
        self.mem: dict[str, dict[str, np.ndarray]] = {}
        f = cache / "pooled.npz"
        if f.exists():
            z = np.load(f, allow_pickle=False)
            for name in z.files:
                key, stat = name.rsplit("##", 1)
                self.mem.setdefault(key, {})[stat] = z[name]
        self.dirty = False

    def save(self) -> None:
        if self.dirty:
            np.savez(self.cache / "pooled.npz", **{f"{k}##{s}": v for k, d in self.mem.items() for s, v in d.items()})
            self.dirty = False

    def get(self, specs: Sequence[CropSpec], colour: str, inp: str) -> list[dict[str, np.ndarray]]:
        keys = [f"{s.path}|{s.box}|{s.meta.get('pad', '')}|{colour}|{inp}" for s in specs]
        for s, key in zip(specs, keys):
            if key not in self.mem or "avg_pre" not in self.mem[key]:
                self.mem[key] = self._compute(s, colour, inp)
                self.dirty = True
        return [self.mem[k] for k in keys]

    def _compute(self, s: CropSpec, colour: str, inp: str) -> dict[str, np.ndarray]:
        torch = self.torch
        pad = float(s.meta.get("pad", 0.1))
        if inp == "sq224":
            arr = load_crop(s, pad=pad, size=224)
        else:
            big = load_crop(s, pad=pad, size=448)  # decoded at >= 448 px across, then aspect kept
            h, w = big.shape[:2]
            f = 224.0 / min(h, w)
            arr = resize_rgb(big, max(32, round(w * f)), max(32, round(h * f)))
        arr = convert_colour(arr[None], colour)[0]
        x = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None].float() / 255.0
        out: dict[str, np.ndarray] = {}
        with torch.no_grad():
            for tag, xx in (("", x), ("f", x.flip(3))):
                h = (xx - self.net.mean) / self.net.std
                for i, block in enumerate(self.net.backbone):
                    if i == 18:  # the last 1x1 conv + BN before its ReLU6
                        pre = block[1](block[0](h))
                        out[f"{tag}avg_pre"] = pre.mean((2, 3))[0].numpy()
                    h = block(h)
                    if i in LAYERS:
                        name = LAYERS[i]
                        out[f"{tag}avg_{name}"] = h.mean((2, 3))[0].numpy()
                        out[f"{tag}max_{name}"] = h.amax((2, 3))[0].numpy()
                        out[f"{tag}gem_{name}"] = h.clamp_min(1e-6).pow(3).mean((2, 3)).pow(1 / 3)[0].numpy()
        return out


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True).clip(1e-12)


def recipe(parts: Sequence[tuple[str, float]], power: bool = False, flip: bool = True) -> Callable[[list[dict]], np.ndarray]:
    """Embedding from pooled stats: each (stat, weight) part made unit length (after a signed square root when
    `power`), weighted, concatenated, unit length; averaged with the mirror's when `flip`."""
    def one(d: dict, tag: str) -> np.ndarray:
        vecs = []
        for stat, w in parts:
            v = d[tag + stat].astype(np.float64)
            if power:
                v = np.sign(v) * np.sqrt(np.abs(v))
            vecs.append(w * unit(v))
        return unit(np.concatenate(vecs))

    def make(rows: list[dict]) -> np.ndarray:
        e = np.stack([one(d, "") for d in rows])
        if flip:
            e = unit(e + np.stack([one(d, "f") for d in rows]))
        return e.astype(np.float32)
    return make


_HEAD: list = []


def with_logits(rows: list[dict]) -> list[dict]:
    """Adds the ImageNet logits of the pooled last features (`logit`, `flogit`) to each row."""
    w, b = _HEAD
    out = []
    for d in rows:
        e = dict(d)
        for tag in ("", "f"):
            z = d[tag + "avg_last"] @ w.T + b
            e[tag + "logit"] = z
            e[tag + "clogit"] = z - z.mean()
            e[tag + "alogit"] = z[:398] - z[:398].mean()
            for t in (1, 2, 4):
                q = np.exp((z - z.max()) / t)
                e[f"{tag}sqp{t}"] = np.sqrt(q / q.sum())
        out.append(e)
    return out


RECIPES: dict[str, tuple[str, Callable]] = {  # name -> (input, embedding)
    "avg last (engine)": ("sq224", recipe([("avg_last", 1.0)])),
    "gem last": ("sq224", recipe([("gem_last", 1.0)])),
    "avg last, sqrt": ("sq224", recipe([("avg_last", 1.0)], power=True)),
    "avg+max last": ("sq224", recipe([("avg_last", 1.0), ("max_last", 1.0)])),
    "avg last+b16": ("sq224", recipe([("avg_last", 1.0), ("avg_b16", 1.0)])),
    "avg last+b16+b13": ("sq224", recipe([("avg_last", 1.0), ("avg_b16", 1.0), ("avg_b13", 1.0)])),
    "avg last+b17": ("sq224", recipe([("avg_last", 1.0), ("avg_b17", 1.0)])),
    "avg last+0.5 b16": ("sq224", recipe([("avg_last", 1.0), ("avg_b16", 0.5)])),
    "avg+max last+b16": ("sq224", recipe([("avg_last", 1.0), ("max_last", 1.0), ("avg_b16", 1.0), ("max_b16", 1.0)])),
    "b17": ("sq224", recipe([("avg_b17", 1.0)])),
    "avg last+2 b17": ("sq224", recipe([("avg_last", 1.0), ("avg_b17", 2.0)])),
    "avg last+0.5 b17": ("sq224", recipe([("avg_last", 1.0), ("avg_b17", 0.5)])),
    "avg last+max b17": ("sq224", recipe([("avg_last", 1.0), ("max_b17", 1.0)])),
    "pre-relu last": ("sq224", recipe([("avg_pre", 1.0)])),
    "pre-relu last+b17": ("sq224", recipe([("avg_pre", 1.0), ("avg_b17", 1.0)])),
    "logits": ("sq224", lambda rows: recipe([("logit", 1.0)])(with_logits(rows))),
    "avg last+logits": ("sq224", lambda rows: recipe([("avg_last", 1.0), ("logit", 1.0)])(with_logits(rows))),
    "avg last+b17+logits": ("sq224", lambda rows: recipe([("avg_last", 1.0), ("avg_b17", 1.0), ("logit", 1.0)])(with_logits(rows))),
    "centred logits": ("sq224", lambda rows: recipe([("clogit", 1.0)])(with_logits(rows))),
    "animal logits": ("sq224", lambda rows: recipe([("alogit", 1.0)])(with_logits(rows))),
    "sqrt prob T1": ("sq224", lambda rows: recipe([("sqp1", 1.0)])(with_logits(rows))),
    "sqrt prob T2": ("sq224", lambda rows: recipe([("sqp2", 1.0)])(with_logits(rows))),
    "sqrt prob T4": ("sq224", lambda rows: recipe([("sqp4", 1.0)])(with_logits(rows))),
    "centred logits+pre-relu": ("sq224", lambda rows: recipe([("clogit", 1.0), ("avg_pre", 1.0)])(with_logits(rows))),
    "ar: logits": ("ar224", lambda rows: recipe([("logit", 1.0)])(with_logits(rows))),
    "ar: avg last+b17": ("ar224", recipe([("avg_last", 1.0), ("avg_b17", 1.0)])),
    "ar: avg last": ("ar224", recipe([("avg_last", 1.0)])),
    "ar: gem last": ("ar224", recipe([("gem_last", 1.0)])),
    "ar: avg last+b16": ("ar224", recipe([("avg_last", 1.0), ("avg_b16", 1.0)])),
}
CROPS = ("whole", "camday")
SCORERS = {"knn": lambda: make_scorer("knn"), "maha": lambda: make_scorer("mahalanobis")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--splits", type=int, default=5)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/novelty_feat_cache"))
    ap.add_argument("--recipes", default="", help="comma-separated recipe names (default: all)")
    ap.add_argument("--colours", default="rgb,gray")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    pooled = Pooled(args.cache)
    _HEAD[:] = [pooled.net.classifier.weight.detach().numpy().astype(np.float64), pooled.net.classifier.bias.detach().numpy().astype(np.float64)]
    names = [n for n in RECIPES if not args.recipes or n in args.recipes.split(",")]
    res: dict[tuple[str, str, str], list[float]] = {}
    for setname, split_of in (("camera_traps", camera_trap_split), ("serengeti", serengeti_split)):
        for split in range(args.splits):
            train = split_of(split)[0]
            labels = [species_key(it.label) for it in train]
            for crop in CROPS:
                specs = pooled.feats.specs(train, crop)
                for colour in args.colours.split(","):
                    for inp in sorted({RECIPES[n][0] for n in names}):
                        pooled.get(specs, colour, inp)
                    pooled.save()
                    for n in names:
                        inp, fn = RECIPES[n]
                        emb = fn(pooled.get(specs, colour, inp))
                        for sname, make in SCORERS.items():
                            key = f"{crop} {colour} | {n} | {sname}"
                            res.setdefault((setname, "loso", key), []).extend(
                                v for v in pseudo_novelty_folds(emb, labels, make) if v == v)
                            for fit, normal, novel in outer_folds(labels):
                                sc = make().fit(emb[fit], [labels[i] for i in fit])
                                a = auroc([0] * len(normal) + [1] * len(novel), sc.distances(emb[normal + novel]).min(1))
                                res.setdefault((setname, "nested", key), []).append(np.nan if a is None else a)
            print(f"# {setname} split {split} done", flush=True)
    keys = list(dict.fromkeys(k[2] for k in res))
    print("| crop colour \\| features \\| scorer | ct loso | ct nested | Ser loso | Ser nested | all loso | all nested |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for key in keys:
        ct_l, ct_n = res[("camera_traps", "loso", key)], res[("camera_traps", "nested", key)]
        se_l, se_n = res[("serengeti", "loso", key)], res[("serengeti", "nested", key)]
        rows.append((np.nanmean(ct_n + se_n), key, [np.nanmean(ct_l), np.nanmean(ct_n), np.nanmean(se_l), np.nanmean(se_n),
                                                     np.nanmean(ct_l + se_l), np.nanmean(ct_n + se_n)]))
    for _, key, vals in sorted(rows, key=lambda r: -r[0]):
        print(f"| {key} | " + " | ".join(f"{v:.3f}" for v in vals) + " |", flush=True)


if __name__ == "__main__":
    main()
