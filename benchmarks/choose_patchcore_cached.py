"""Choose PatchCore settings on training images only, with cached patch embeddings (cheap repeated experiments).

The same validation as `choose_image_defaults.py` (k folds over `train/good`, synthetic defects on copies of
each held-out image, image AUROC of clean vs defective copies; the real test split is never read), but every
image is embedded once per *feature setting* (image size, layers, pooling, border, resize method, crop) and
the embeddings are cached on disk, so scoring variants (image score, kNN reweighting, coreset ratio,
test-time rotation, rotated memory bank) cost only the coreset and the nearest-neighbour search.

    python benchmarks/choose_patchcore_cached.py --data ../shared/data/mvtec_screw \\
        --config '{}' --config '{"image_size": 448}' --config '{"image_score": "top4"}' [--json out.jsonl]

Each --config is a JSON object: PatchCore engine parameters over the engine's defaults, plus these keys of
this script:
- ``image_score``: ``engine`` (the engine's own score_mode), ``topK`` (mean of the K largest normalised
  patch distances), or ``max``;
- ``tta``: ``none`` | ``rot90_image`` (each test image and its 90/180/270-degree rotations are scored, the
  image score is the smallest: the part in its most familiar orientation) | ``rot90_patch`` (each patch's
  distance is its smallest over the rotations, taken back to the image's own frame);
- ``resize``: how the image is shrunk to the input size: ``area`` (the engine: OpenCV INTER_AREA),
  ``torch_aa`` (torchvision's bilinear with antialias, anomalib's default), ``torch_noaa`` (bilinear, no
  antialias), ``pil`` (PIL bilinear, which is antialiased);
- ``crop``: centre crop keeping this fraction of each side after the resize (anomalib's 224/256 = 0.875).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from anomaly_gui.core.metrics import auroc  # noqa: E402
from anomaly_gui.core.synthetic_defects import KINDS  # noqa: E402

SCRIPT_KEYS = {"image_score": "engine", "tta": "none", "resize": "area", "crop": 1.0}
FEATURE_KEYS = ("backbone", "layers", "image_size", "border", "border_pad", "neighbourhood", "intensity")


def load_resized(path: str, size: int, method: str, crop: float) -> torch.Tensor:
    """(3, S, S) float in [0, 1]: the image resized to `size` by `method`, then centre-cropped to `crop`."""
    import cv2
    from PIL import Image

    from anomaly_gui.core.imageio import read_image, to_rgb8
    from anomaly_gui.engines.image_data import load_image

    if method == "area":
        arr, _ = load_image(path, size, 3)
        x = torch.from_numpy(np.array(arr)).permute(2, 0, 1).float() / 255
    elif method == "pil":
        im = Image.fromarray(to_rgb8(read_image(path))).resize((size, size), Image.BILINEAR)
        x = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float() / 255
    elif method in ("torch_aa", "torch_noaa"):
        raw = torch.from_numpy(to_rgb8(read_image(path))).permute(2, 0, 1).float()[None] / 255
        x = torch.nn.functional.interpolate(raw, size=(size, size), mode="bilinear", align_corners=False,
                                            antialias=method == "torch_aa")[0]
    else:
        raise ValueError(method)
    del cv2
    if crop < 1.0:
        c = int(round(size * crop))
        o = (size - c) // 2
        x = x[:, o:o + c, o:o + c]
    return x


class EmbeddingCache:
    """Patch embeddings (D, h, w) fp16 of each image path and rotation, per feature setting, in /tmp."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.mem: dict[str, torch.Tensor] = {}

    def get(self, engine, fkey: dict, path: str, rot: int) -> torch.Tensor:
        key = hashlib.sha1(json.dumps([fkey, path, rot], sort_keys=True).encode()).hexdigest()[:20]
        if fkey != getattr(self, "fkey", None):  # one feature setting in memory at a time
            self.mem, self.fkey = {}, dict(fkey)
        if key in self.mem:
            return self.mem[key]
        f = self.root / f"{key}.pt"
        if f.exists():
            e = torch.load(f, weights_only=True)
        else:
            x = load_resized(path, int(fkey["image_size"]), fkey["resize"], float(fkey["crop"]))[None]
            if rot:
                x = torch.rot90(x, rot, dims=(-2, -1))
            e = engine.model.embed(x)[0].half().contiguous()
            torch.save(e, f)
        self.mem[key] = e
        return e


#: keys that change only how an image score is read from the patch distances (no new bank, no new search)
SCORING_KEYS = ("image_score", "tta", "num_neighbors", "score_mode")


def image_scores(model, flat: torch.Tensor, patch: torch.Tensor, idx: torch.Tensor, how: str) -> torch.Tensor:
    """(n,) image scores from embeddings (n, h*w, D), normalised patch distances (n, h*w) and nearest bank rows."""
    if how == "engine":
        s = model._image_scores(flat, patch, idx, None)
    elif how == "max":
        s = patch.max(1).values
    elif how.startswith("top"):
        s = patch.topk(int(how[3:]), dim=1).values.mean(1)
    else:
        raise ValueError(how)
    return s / model.score_scale


def search(model, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(flat (n, h*w, D), normalised patch distances (n, h, w), nearest bank rows (n, h*w)) of (n, D, h, w)."""
    from anomaly_gui.engines.patchcore.model import nearest

    n, d, h, w = e.shape
    flat = e.permute(0, 2, 3, 1).reshape(-1, d).float()
    dist, idx = nearest(flat, model.memory_bank, model.bank_sq)
    patch = model.normalise_patches(dist.view(n, h, w))
    return flat.view(n, h * w, d), patch, idx.view(n, h * w)


def fit_fold(params: dict, script: dict, f: dict, cache: EmbeddingCache):
    """A PatchCore engine fitted on the fold's training images from cached embeddings; its feature key."""
    from anomaly_gui.engines.base import get_engine

    aug = params.get("bank_augment", "none")
    if aug not in ("none", "rot90"):
        raise ValueError("bank_augment here: none or rot90")
    eng = get_engine("patchcore")(device="cpu", **params)
    eng.model = eng._build()
    p = eng.params
    fkey = {k: getattr(p, k) for k in FEATURE_KEYS} | {"resize": script["resize"], "crop": script["crop"]}
    rows, ids, first = [], [], []
    grid = (0, 0)
    for i, path in enumerate(f["train"]):
        for r in (range(4) if aug == "rot90" else [0]):
            e = cache.get(eng, fkey, path, r).float()
            grid = tuple(e.shape[-2:])
            rows.append(e.permute(1, 2, 0).reshape(-1, e.shape[0]))
            ids.append(torch.full((rows[-1].shape[0],), i))
            first.append(torch.full((rows[-1].shape[0],), r == 0))
    t = time.perf_counter()
    eng.fit_embeddings(torch.cat(rows), torch.cat(ids), torch.cat(first), grid, len(f["train"]))
    return eng, fkey, time.perf_counter() - t


def run_group(cfgs: list[dict], folds: list[dict], cache: EmbeddingCache) -> list[dict]:
    """Configs that share one memory bank (they differ only in SCORING_KEYS): one fit and search per fold."""
    scripts = [{k: c.get(k, v) for k, v in SCRIPT_KEYS.items()} for c in cfgs]
    params = {k: v for k, v in cfgs[0].items() if k not in SCRIPT_KEYS and k not in SCORING_KEYS}
    n_rot = 4 if any(s["tta"] != "none" for s in scripts) else 1
    res: list[dict[str, list[float]]] = [{"auroc": [], "fit_s": [], "search_ms": []} for _ in cfgs]
    for f in folds:
        eng, fkey, fit_s = fit_fold(params, scripts[0], f, cache)
        test = f["normal"] + f["defect"]
        t = time.perf_counter()
        found = [search(eng.model, torch.stack([cache.get(eng, fkey, q, r).float() for q in test]))
                 for r in range(n_rot)]
        search_ms = 1000 * (time.perf_counter() - t) / len(test) / n_rot
        n0 = len(f["normal"])
        for cfg, script, out in zip(cfgs, scripts, res):
            eng.model.num_neighbors = int(cfg.get("num_neighbors", eng.params.num_neighbors))
            eng.model.score_mode = cfg.get("score_mode", eng.params.score_mode)
            how = script["image_score"]
            rots = range(4) if script["tta"] != "none" else range(1)
            if script["tta"] in ("none", "rot90_image"):
                per_rot = [image_scores(eng.model, fl, pa.flatten(1), ix, how) for fl, pa, ix in
                           (found[r] for r in rots)]
                s = torch.stack(per_rot).min(0).values
            elif script["tta"] == "rot90_patch":
                pm = torch.stack([torch.rot90(found[r][1], -r, dims=(-2, -1)) for r in rots]).min(0).values
                pm = pm.flatten(1) / eng.model.score_scale
                s = pm.max(1).values if how in ("engine", "max") else pm.topk(int(how[3:]), 1).values.mean(1)
            else:
                raise ValueError(script["tta"])
            s = s.tolist()
            out["auroc"].append(auroc([0] * n0 + [1] * (len(test) - n0), s))
            out["fit_s"].append(fit_s)
            out["search_ms"].append(search_ms)
            for kind in KINDS:
                ks = [x for x, k in zip(s[n0:], f["kinds"]) if k == kind]
                out.setdefault(f"auroc_{kind}", []).append(auroc([0] * n0 + [1] * len(ks), s[:n0] + ks))
    return [{k: round(float(np.mean(v)), 4) for k, v in r.items()} | {"auroc_folds": [round(a, 3) for a in r["auroc"]]}
            for r in res]


def main() -> None:
    from choose_image_defaults import load_images, make_folds

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="an MVTec-AD-layout folder; only train/good is read")
    ap.add_argument("--config", action="append", default=[], help="JSON object (repeatable), see the module doc")
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--tiles", type=int, default=1)
    ap.add_argument("--per-image", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/patchcore_cache"))
    ap.add_argument("--json", type=Path, default=None, help="append one JSON line per config here")
    args = ap.parse_args()
    tag = f"{args.data.name}_t{args.tiles}_f{args.folds}_p{args.per_image}_s{args.seed}"
    fold_dir = args.cache / "folds" / tag
    index = fold_dir / "folds.json"
    if index.exists():
        folds = json.loads(index.read_text())
    else:
        fold_dir.mkdir(parents=True, exist_ok=True)
        images = load_images(args.data / "train" / "good", args.tiles, 1024)
        folds = make_folds(images, args.folds, fold_dir, args.seed, False, args.per_image)
        index.write_text(json.dumps(folds))
    cache = EmbeddingCache(args.cache / "emb" / tag)
    groups: dict[str, list[dict]] = {}
    for cfg in args.config or ["{}"]:
        c = json.loads(cfg)
        bank = {k: v for k, v in c.items() if k not in SCORING_KEYS}
        groups.setdefault(json.dumps(bank, sort_keys=True), []).append(c)
    for cfgs in groups.values():
        for c, r in zip(cfgs, run_group(cfgs, folds, cache)):
            row = {"data": args.data.name, "config": c, "folds": args.folds, "load": round(os.getloadavg()[0], 2)}
            row |= r
            print(json.dumps(row), flush=True)
            if args.json:
                with open(args.json, "a") as fh:
                    fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
