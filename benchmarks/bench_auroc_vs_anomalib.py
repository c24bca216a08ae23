"""Image AUROC of our PatchCore and anomalib 2.7's on identical inputs, over repeated folds, with a paired CI.

The 20 screw test images alone cannot read a difference of 0.005 (one good/defect pair moves the AUROC by
0.01). Here every normal image of the shared MVTec screw (70) and leather (8) sets is used in turn for
training and testing: K folds over the normal images, each fold training both implementations on the same
training images and scoring the same test images (that fold's held-out normals + all defect images).
Both get the same decoded tensors (`load_all`, 256 px, RGB), the same MobileNetV2 weights and layers
(features.6 + features.13), the same coreset ratio (0.1) and 9 reweighting neighbours; ours runs with the
settings anomalib has (`EQUAL_SETTINGS`: the CNN's zero padding at the edges, no score normalisation, no
augmented bank). `--defaults` adds ours with the app's defaults (reflect border, normalisation) for reference.
`--train-on-fold` swaps the roles: train on one fold, test on the rest.

Reported per dataset and over all folds:
- the mean per-fold AUROC of each implementation and the paired difference (ours - anomalib) with a 95 %
  bootstrap interval (defect images resampled jointly across folds, normals within their fold);
- where a difference comes from, variant by variant on the same folds:
  * `full_bank`: no coreset on either side (the whole training patch set as bank): embedding + scoring only;
  * `full_bank_anomalib_pooling`: the same, with our 3x3 feature pooling counting the zero border padding
    as anomalib's does (we average only the cells inside the image): if the scores then agree, the pooling
    is the whole embedding difference;
  * `ours_seeds`: our coreset with other seeds (and `anomalib_seeds` for anomalib with --anomalib-seeds),
    the AUROC spread that coreset randomness alone gives;
  * per-image Spearman correlation of the two implementations' scores.

    python benchmarks/bench_auroc_vs_anomalib.py [--folds 5] [--leather-folds 2] [--seeds 3]
        [--anomalib-seeds 1] [--bootstrap 2000] [--datasets mvtec_screw,mvtec_leather] [--train-on-fold] [--defaults]

Slow part: anomalib's exact greedy coreset (about 150 s per screw fold on a quiet 2-core machine).
Needs anomalib 2.7, ../shared/data and ../shared/weights/mobilenet_v2-b0353104.pth.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def folds_of(n: int, k: int, seed: int = 0) -> list[np.ndarray]:
    """k disjoint test index sets covering range(n) (a seeded shuffle cut into k nearly equal parts)."""
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(order, k)]


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    from anomaly_gui.core.metrics import auroc as _auroc

    return float(_auroc(labels.tolist(), scores.tolist()))


def paired_bootstrap(folds: list[dict], n_boot: int, seed: int = 0) -> dict:
    """Mean-over-folds AUROC of 'ours' and 'anomalib' and their difference, with 95 % bootstrap intervals.

    Each fold holds 'good' (indices of its held-out normals), 'defect' (indices of the defect images, the same
    in every fold of a dataset) and per-image scores. A resample draws the defect images once per dataset
    (they are shared by the folds) and the normals within each fold."""
    rng = np.random.default_rng(seed)
    diffs, ours_m, theirs_m = [], [], []
    by_ds: dict[str, list[dict]] = {}
    for f in folds:
        by_ds.setdefault(f["dataset"], []).append(f)
    for _ in range(n_boot):
        o_all, a_all = [], []
        for ds_folds in by_ds.values():
            n_def = len(ds_folds[0]["defect_ours"])
            d_idx = rng.integers(0, n_def, n_def)
            for f in ds_folds:
                g_idx = rng.integers(0, len(f["good_ours"]), len(f["good_ours"]))
                labels = np.r_[np.zeros(len(g_idx)), np.ones(len(d_idx))]
                o_all.append(auroc(labels, np.r_[f["good_ours"][g_idx], f["defect_ours"][d_idx]]))
                a_all.append(auroc(labels, np.r_[f["good_anomalib"][g_idx], f["defect_anomalib"][d_idx]]))
        ours_m.append(np.mean(o_all))
        theirs_m.append(np.mean(a_all))
        diffs.append(np.mean(o_all) - np.mean(a_all))

    def ci(v: list[float]) -> list[float]:
        return [round(float(np.percentile(v, 2.5)), 4), round(float(np.percentile(v, 97.5)), 4)]

    return {"difference_ci95": ci(diffs), "ours_ci95": ci(ours_m), "anomalib_ci95": ci(theirs_m)}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


class Anomalib:
    """anomalib 2.7's PatchcoreModel on our tensors: one embedding pass per fold, coreset per seed."""

    def __init__(self, weights: Path) -> None:
        import torch
        import torchvision
        from anomalib.models.image.patchcore.torch_model import PatchcoreModel

        backbone = torchvision.models.mobilenet_v2()
        backbone.load_state_dict(torch.load(weights, weights_only=True))
        self.model = PatchcoreModel(layers=["features.6", "features.13"], backbone=backbone, pre_trained=False,
                                    num_neighbors=9)
        self.mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        self.std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        self.store = None

    def embed_train(self, x) -> None:
        import torch

        m = self.model.train()
        m.embedding_store.clear()
        with torch.no_grad():
            for i in range(0, len(x), 16):
                m((x[i : i + 16] - self.mean) / self.std)
        self.store = torch.vstack(list(m.embedding_store))
        m.embedding_store.clear()

    def set_bank(self, ratio: float, seed: int) -> float:
        """Coreset of the stored training embedding (ratio 1: all of it); returns the seconds it took."""
        import torch

        t = time.perf_counter()
        if ratio >= 1.0:
            self.model.memory_bank = self.store.clone()
        else:
            torch.manual_seed(seed)
            self.model.embedding_store.append(self.store)
            stderr, sys.stderr = sys.stderr, open(os.devnull, "w")  # a tqdm bar per coreset step
            try:
                self.model.subsample_embedding(ratio)
            finally:
                sys.stderr.close()
                sys.stderr = stderr
        return time.perf_counter() - t

    def score(self, x) -> np.ndarray:
        import torch

        self.model.eval()
        with torch.no_grad():
            return torch.cat([self.model((x[i : i + 1] - self.mean) / self.std).pred_score.flatten()
                              for i in range(len(x))]).numpy()


def ours_scores(train_items, x_test, ratio: float, seed: int, weights: Path, anomalib_pooling: bool = False,
                settings: dict | None = None) -> np.ndarray:
    """Our engine fitted as a user would; `anomalib_pooling`: the 3x3 average pooling counts the zero padding
    at the border (torch's AvgPool2d default, which anomalib uses) instead of averaging the cells inside."""
    import torch
    import torch.nn.functional as F

    from anomaly_gui.engines import get_engine
    from anomaly_gui.engines.patch_common import memory as pc_model  # Embedder pools with its `embed`

    original = pc_model.embed
    if anomalib_pooling:
        def embed(features, layers, neighbourhood=3, include_pad=False):  # anomalib: AvgPool2d(3, 1, 1), padding counted
            first = features[layers[0]]
            parts = [F.interpolate(F.avg_pool2d(features[n], 3, 1, 1), size=first.shape[-2:], mode="bilinear",
                                   align_corners=False) if n != layers[0] else F.avg_pool2d(first, 3, 1, 1)
                     for n in layers]
            return torch.cat(parts, 1)

        pc_model.embed = embed
    try:
        return _fit_score(get_engine, train_items, x_test, ratio, seed, weights, settings)
    finally:
        pc_model.embed = original


#: the settings anomalib's PatchCore has: the CNN's own zero padding at the image edges, raw distances
EQUAL_SETTINGS = {"border": "zero", "normalize": False, "bank_augment": "none", "neighbourhood": 3}


def _fit_score(get_engine, train_items, x_test, ratio: float, seed: int, weights: Path,
               settings: dict | None = None) -> np.ndarray:
    params = {"weights": str(weights), "image_size": 256, "coreset_ratio": ratio, "seed": seed, "num_neighbors": 9,
              **_known(get_engine("patchcore"), EQUAL_SETTINGS if settings is None else settings)}
    eng = get_engine("patchcore")(device="cpu", **params)
    eng.fit(train_items)
    return eng.score_tensor(x_test)[0].numpy()


def _known(engine_cls, settings: dict) -> dict:
    """The settings this checkout's PatchCore has (older checkouts had no border / normalize options)."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(engine_cls.Params)}
    return {k: v for k, v in settings.items() if k in names}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--datasets", default="mvtec_screw,mvtec_leather")
    ap.add_argument("--weights", type=Path, default=REPO.parent / "shared" / "weights" / "mobilenet_v2-b0353104.pth")
    ap.add_argument("--device", default="cpu", help="cpu only (the comparison is about scores, not speed)")
    ap.add_argument("--folds", type=int, default=5, help="folds over the normal images of screw")
    ap.add_argument("--leather-folds", type=int, default=2, help="folds over the normal images of leather")
    ap.add_argument("--coreset", type=float, default=0.1)
    ap.add_argument("--seeds", type=int, default=3, help="coreset seeds of ours (0..N-1); seed 0 is the headline")
    ap.add_argument("--anomalib-seeds", type=int, default=1, help="coreset seeds of anomalib (slow: ~150 s each)")
    ap.add_argument("--bootstrap", type=int, default=2000)
    ap.add_argument("--max-folds", type=int, default=0, help="run only the first N folds of each dataset (quick look)")
    ap.add_argument("--train-on-fold", action="store_true",
                    help="train on one fold of the normals and test on all the others (+ defects): more test pairs, "
                         "fewer training images, and anomalib's coreset ~16x cheaper")
    ap.add_argument("--defaults", action="store_true",
                    help="also score ours with the app's default settings (border reflect, normalize) on each fold")
    args = ap.parse_args()
    import torch

    from anomaly_gui.core.formats import import_dataset
    from anomaly_gui.engines.image_data import load_all

    t_start = time.perf_counter()
    try:
        import anomalib

        version = anomalib.__version__
    except ImportError as exc:
        print(json.dumps({"error": f"anomalib is not installed ({exc})"}))
        return
    folds: list[dict] = []
    for ds in [d for d in args.datasets.split(",") if d]:
        items = import_dataset(args.data_root / ds).items
        goods = [it for it in items if not it.is_anomalous]
        defects = [it for it in items if it.is_anomalous]
        x_good = load_all(goods, 256, 3).float() / 255.0
        x_def = load_all(defects, 256, 3).float() / 255.0
        k = args.folds if ds == "mvtec_screw" else args.leather_folds
        for fi, test_idx in enumerate(folds_of(len(goods), k)):
            if args.max_folds and fi >= args.max_folds:
                break
            train_idx = np.setdiff1d(np.arange(len(goods)), test_idx)
            if args.train_on_fold:
                train_idx, test_idx = test_idx, train_idx
            train_items = [goods[i] for i in train_idx]
            x_test = torch.cat([x_good[test_idx], x_def])
            n_g = len(test_idx)
            labels = np.r_[np.zeros(n_g), np.ones(len(defects))]
            fold: dict = {"dataset": ds, "fold": fi, "n_train": len(train_idx), "n_test_good": n_g,
                          "n_test_defect": len(defects)}
            ours = {s: ours_scores(train_items, x_test, args.coreset, s, args.weights) for s in range(args.seeds)}
            ours_full = ours_scores(train_items, x_test, 1.0, 0, args.weights)
            ours_pool = ours_scores(train_items, x_test, 1.0, 0, args.weights, anomalib_pooling=True)
            ours_def = ours_scores(train_items, x_test, args.coreset, 0, args.weights, settings={}) if args.defaults else None
            lib = Anomalib(args.weights)
            lib.embed_train(x_good[train_idx])
            theirs, coreset_s = {}, []
            for s in range(args.anomalib_seeds):
                coreset_s.append(lib.set_bank(args.coreset, s))
                theirs[s] = lib.score(x_test)
            lib.set_bank(1.0, 0)
            theirs_full = lib.score(x_test)
            fold.update({
                "good_ours": ours[0][:n_g], "defect_ours": ours[0][n_g:],
                "good_anomalib": theirs[0][:n_g], "defect_anomalib": theirs[0][n_g:],
                "auroc_ours": round(auroc(labels, ours[0]), 4), "auroc_anomalib": round(auroc(labels, theirs[0]), 4),
                "auroc_ours_seeds": [round(auroc(labels, ours[s]), 4) for s in ours],
                "auroc_anomalib_seeds": [round(auroc(labels, theirs[s]), 4) for s in theirs],
                "auroc_ours_full_bank": round(auroc(labels, ours_full), 4),
                "auroc_anomalib_full_bank": round(auroc(labels, theirs_full), 4),
                "spearman_scores": round(spearman(ours[0], theirs[0]), 4),
                "spearman_scores_full_bank": round(spearman(ours_full, theirs_full), 4),
                "auroc_ours_anomalib_pooling_full_bank": round(auroc(labels, ours_pool), 4),
                "max_relative_score_difference_anomalib_pooling_full_bank":
                    round(float(np.max(np.abs(ours_pool - theirs_full) / np.abs(theirs_full).max())), 6),
                "anomalib_coreset_seconds": [round(c, 1) for c in coreset_s],
            })
            if ours_def is not None:
                fold["auroc_ours_app_defaults"] = round(auroc(labels, ours_def), 4)
            folds.append(fold)
            print(json.dumps({k2: (v.tolist() if isinstance(v, np.ndarray) else v) for k2, v in fold.items()}),
                  file=sys.stderr, flush=True)  # with the scores: a summary can be recomputed from the log
    out = summarize(folds, args.bootstrap)
    out.update({"anomalib": version, "settings": {
        "image_size": 256, "backbone": "mobilenet_v2 features.6+features.13", "coreset_ratio": args.coreset,
        "num_neighbors": 9, "folds": {"mvtec_screw": args.folds, "mvtec_leather": args.leather_folds},
        "ours_seeds": args.seeds, "anomalib_seeds": args.anomalib_seeds, "bootstrap": args.bootstrap,
        "train_on_fold": args.train_on_fold, "ours_settings": EQUAL_SETTINGS},
        "seconds": round(time.perf_counter() - t_start, 1),
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "load_average_end": [round(v, 2) for v in os.getloadavg()]}})
    print(json.dumps(out))


def summarize(folds: list[dict], n_boot: int) -> dict:
    """Per dataset and overall: mean per-fold AUROCs, the paired difference and its bootstrap interval,
    and the variants that locate a difference."""

    def block(fs: list[dict]) -> dict:
        mean = lambda key: round(float(np.mean([f[key] for f in fs])), 4)  # noqa: E731
        seeds_o = np.array([f["auroc_ours_seeds"] for f in fs]).mean(0)  # fold-mean AUROC per seed
        seeds_a = np.array([f["auroc_anomalib_seeds"] for f in fs]).mean(0)
        res = {"folds": len(fs), "test_images": sum(f["n_test_good"] + f["n_test_defect"] for f in fs),
               "good_defect_pairs": sum(f["n_test_good"] * f["n_test_defect"] for f in fs),
               "auroc_ours": mean("auroc_ours"), "auroc_anomalib": mean("auroc_anomalib"),
               "auroc_difference": round(mean("auroc_ours") - mean("auroc_anomalib"), 4),
               "full_bank_auroc_ours": mean("auroc_ours_full_bank"),
               "full_bank_auroc_anomalib": mean("auroc_anomalib_full_bank"),
               "full_bank_auroc_difference": round(mean("auroc_ours_full_bank") - mean("auroc_anomalib_full_bank"), 4),
               "ours_seed_aurocs": [round(float(v), 4) for v in seeds_o],
               "anomalib_seed_aurocs": [round(float(v), 4) for v in seeds_a],
               "full_bank_anomalib_pooling_auroc_ours": mean("auroc_ours_anomalib_pooling_full_bank"),
               "full_bank_anomalib_pooling_max_relative_score_difference": max(
                   f["max_relative_score_difference_anomalib_pooling_full_bank"] for f in fs),
               "spearman_scores": mean("spearman_scores"), "spearman_scores_full_bank": mean("spearman_scores_full_bank")}
        if all("auroc_ours_app_defaults" in f for f in fs):
            res["auroc_ours_app_defaults"] = mean("auroc_ours_app_defaults")
        res.update(paired_bootstrap(fs, n_boot))
        return res

    out: dict = {"per_dataset": {}, "folds": [{k: v for k, v in f.items() if not k.startswith(("good_", "defect_"))}
                                              for f in folds]}
    for ds in dict.fromkeys(f["dataset"] for f in folds):
        out["per_dataset"][ds] = block([f for f in folds if f["dataset"] == ds])
    out["all"] = block(folds)
    return out


if __name__ == "__main__":
    main()
