"""Choose product-image engine settings on training images only: k-fold over the normal `train/good` images,
synthetic defects (`core.synthetic_defects`) added to each held-out fold, image AUROC of clean vs defective
copies, plus the border false-alarm rate and the fit time. The real test split is never read.

    python benchmarks/choose_image_defaults.py --data ../shared/data/mvtec_screw --engine patchcore \
        --config '{}' --config '{"border": "zero"}' [--folds 3] [--tiles 1] [--json out.jsonl]

Each --config is a JSON object of engine parameters over the engine's defaults. Per config it prints the mean
over folds of
- ``auroc``: held-out normal images vs the same images with synthetic defects (--per-image copies each,
  scratch, cut-paste, blob in turn), and ``auroc_<kind>`` per kind;
- ``border_peak``: the fraction of held-out normal images whose map maximum lies in the outer 1/16 of the
  image (a border false alarm; about 0.23 if the maximum fell anywhere at random);
- ``rot_auroc`` (with --rotated): held-out normal images rotated by a random angle (scored as normal if the
  model knows parts lie in any orientation) vs their defective copies, same rotation;
- ``fit_s``: fit seconds on this machine (note the load).
--tiles N cuts every image into N x N tiles first (a texture with few training images: 4 leather images
give 16 training tiles).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from anomaly_gui.core.imageio import read_image, to_gray8, to_rgb8  # noqa: E402
from anomaly_gui.core.metrics import auroc  # noqa: E402
from anomaly_gui.core.synthetic_defects import KINDS, defect_set  # noqa: E402


def load_images(folder: Path, tiles: int, max_side: int) -> list[np.ndarray]:
    out = []
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"):
            continue
        img = read_image(p)
        img = to_gray8(img) if img.ndim == 2 or img.shape[2] == 1 or _is_gray(img) else to_rgb8(img)
        if max(img.shape[:2]) > max_side * tiles:
            s = max_side * tiles / max(img.shape[:2])
            img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        H, W = img.shape[:2]
        for i in range(tiles):
            for j in range(tiles):
                out.append(np.ascontiguousarray(img[i * H // tiles:(i + 1) * H // tiles, j * W // tiles:(j + 1) * W // tiles]))
    return out


def _is_gray(img: np.ndarray) -> bool:
    return bool(np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2]))


def rotate(img: np.ndarray, angle: float) -> np.ndarray:
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def write(folder: Path, name: str, img: np.ndarray) -> str:
    path = folder / f"{name}.png"
    cv2.imwrite(str(path), img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return str(path)


def border_peak(maps: list[np.ndarray]) -> float:
    hits = 0
    for m in maps:
        H, W = m.shape
        y, x = np.unravel_index(int(np.argmax(m)), m.shape)
        b = max(1, min(H, W) // 16)
        hits += int(y < b or x < b or y >= H - b or x >= W - b)
    return hits / max(1, len(maps))


def run_config(engine_name: str, params: dict, folds: list[dict], rotated: bool) -> dict:
    from anomaly_gui.engines.base import get_engine

    res: dict[str, list[float]] = {"auroc": [], "border_peak": [], "fit_s": [], "rot_auroc": []}
    for f in folds:
        eng = get_engine(engine_name)(device="cpu", **params)
        t = time.perf_counter()
        eng.fit(f["train"])
        res["fit_s"].append(time.perf_counter() - t)
        out = eng.score(f["normal"] + f["defect"])
        s = [o.score for o in out]
        n0 = len(f["normal"])
        labels = [0] * n0 + [1] * len(f["defect"])
        res["auroc"].append(auroc(labels, s))
        for kind in KINDS:
            ks = [x for x, k in zip(s[n0:], f["kinds"]) if k == kind]
            res.setdefault(f"auroc_{kind}", []).append(auroc([0] * n0 + [1] * len(ks), s[:n0] + ks))
        res["border_peak"].append(border_peak([o.map for o in out[:len(f["normal"])]]))
        if rotated:
            out = eng.score(f["rot_normal"] + f["rot_defect"])
            res["rot_auroc"].append(auroc([0] * n0 + [1] * len(f["rot_defect"]), [o.score for o in out]))
    return {k: round(float(np.mean(v)), 4) for k, v in res.items() if v} | {"auroc_folds": [round(a, 3) for a in res["auroc"]]}


def make_folds(images: list[np.ndarray], k: int, tmp: Path, seed: int, rotated: bool, per_image: int = 1) -> list[dict]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    paths = [write(tmp, f"img{i:03d}", im) for i, im in enumerate(images)]
    folds = []
    for j in range(k):
        held = order[j::k]
        train = [paths[i] for i in order if i not in set(held.tolist())]
        d = tmp / f"fold{j}"
        d.mkdir()
        bad = []
        for r in range(per_image):  # each held-out image gets `per_image` defective copies, kinds in turn
            kinds = KINDS[r % len(KINDS):] + KINDS[:r % len(KINDS)]
            bad += defect_set([images[i] for i in held], seed=seed + 100 * r + j, kinds=kinds)
        fold = {"train": train, "normal": [paths[i] for i in held], "kinds": [k for _, _, k in bad],
                "defect": [write(d, f"def{n:03d}", im) for n, (im, _, _) in enumerate(bad)]}
        if rotated:
            angles = rng.uniform(0, 360, len(held))
            fold["rot_normal"] = [write(d, f"rn{n:03d}", rotate(images[i], a)) for n, (i, a) in enumerate(zip(held, angles))]
            fold["rot_defect"] = [write(d, f"rd{n:03d}", rotate(im, a)) for n, ((im, _, _), a) in enumerate(zip(bad, angles))]
            fold["rot_defect"] = fold["rot_defect"][:len(held)]
        folds.append(fold)
    return folds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="an MVTec-AD-layout folder; only train/good is read")
    ap.add_argument("--engine", default="patchcore")
    ap.add_argument("--config", action="append", default=[], help="JSON object of engine parameters (repeatable)")
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--tiles", type=int, default=1)
    ap.add_argument("--max-side", type=int, default=1024, help="images larger than this are shrunk first")
    ap.add_argument("--rotated", action="store_true", help="also score rotated held-out images")
    ap.add_argument("--per-image", type=int, default=3, help="defective copies of each held-out image")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="append one JSON line per config here")
    args = ap.parse_args()
    images = load_images(args.data / "train" / "good", args.tiles, args.max_side)
    with tempfile.TemporaryDirectory(prefix="choose_defaults_") as tmp:
        folds = make_folds(images, args.folds, Path(tmp), args.seed, args.rotated, args.per_image)
        for cfg in args.config or ["{}"]:
            params = json.loads(cfg)
            row = {"data": args.data.name, "engine": args.engine, "params": params, "n_images": len(images),
                   "folds": args.folds, "load": round(os.getloadavg()[0], 2)}
            row |= run_config(args.engine, params, folds, args.rotated)
            print(json.dumps(row), flush=True)
            if args.json:
                with open(args.json, "a") as fh:
                    fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
