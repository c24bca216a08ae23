"""PatchCore against anomalib 2.7's, stage by stage, on an MVTec-style folder (issue 13: ELPV solar cells).

Fits on every image of `train/good` (as a user of either library would) and reports the image AUROC on
`test/`. Each --config swaps stages; the defaults are anomalib's own pipeline:

- ``prep``: ``anomalib`` (its `read_image`: PIL RGB -> float; torchvision `Resize(size, antialias=True)`, as
  `Patchcore.configure_pre_processor` builds it) | ``ours`` (the engine's loader: OpenCV area resize);
- ``size`` (256), ``crop`` (224; 0 = none: anomalib 2.7's default pre-processor has no crop, the paper's does);
- ``features``: ``anomalib`` (its `PatchcoreModel`: torchvision MobileNetV2 through its feature extractor,
  AvgPool2d(3, 1, 1), bilinear resize, concatenation) | ``ours`` (the engine's `Embedder`);
- ``border``: ``zero`` | ``reflect`` (ours only), ``layers`` (``features.6,features.13``), ``neighbourhood``
  (3: the pooling window); ``intensity``: ``none`` | ``stretch`` (the engine's per-image grey-level stretch);
- ``coreset``: ``anomalib`` (its k-center greedy on its SparseRandomProjection(eps=0.9), distances by the
  matmul identity instead of `linalg.norm`: ~6x faster, same picks up to rounding, see ``--check``) |
  ``greedy`` (ours, exact, 128-d Gaussian projection) | ``chunked`` (ours, the engine default: greedy in
  chunks of 8192); ``ratio`` (0.1); ``subsample`` (0 = none: random fraction of the training patches kept
  before the coreset, for quick diagnostics only);
- ``score``: ``anomalib`` (its nearest-neighbour search and `compute_anomaly_score`, raw distances) |
  ``raw`` (ours, reweighted, raw distances) | ``normalized`` (ours: border profile + score scale, the default)
  | ``max`` (ours normalised, plain maximum); ``num_neighbors`` (9); ``top`` (0 = off: with ours, the image
  score is the mean of the `top` largest patch distances instead, evidence along a long thin crack).

Needs anomalib only for the ``anomalib`` stages (run with its interpreter, e.g. /work/venv_al/bin/python);
nothing is downloaded. Embeddings and coreset picks are cached under --cache.

    OMP_NUM_THREADS=1 python benchmarks/compare_patchcore_anomalib.py --data /work/elpv/sets/val \\
        --config '{}' --config '{"prep": "ours", "features": "ours"}' [--scores OUT.json] [--check]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from anomaly_gui.core.metrics import auroc  # noqa: E402

DEFAULTS: dict[str, Any] = {"prep": "anomalib", "size": 256, "crop": 224, "features": "anomalib", "border": "zero",
                            "layers": "features.6,features.13", "neighbourhood": 3, "intensity": "none",
                            "coreset": "anomalib", "ratio": 0.1, "subsample": 0.0, "score": "anomalib",
                            "num_neighbors": 9, "top": 0, "seed": 0}
EMBED_KEYS = ("prep", "size", "crop", "features", "border", "layers", "neighbourhood", "intensity")
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def embed_key(cfg: dict, paths: list[str]) -> str:
    """Cache key of the embeddings: the feature stages (those added later only when not at their default)."""
    keys = [k for k in EMBED_KEYS if k not in ("neighbourhood", "intensity") or cfg[k] != DEFAULTS[k]]
    return _key({k: cfg[k] for k in keys} | {"paths": paths})


def _key(d: dict) -> str:
    return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def load_image01(path: str, cfg: dict) -> torch.Tensor:
    """(3, S, S) float in [0, 1] after the resize, crop and intensity step of `cfg` (before the ImageNet
    normalisation). ``intensity``: ``none`` | ``stretch`` (per image, 1 % / 99 % grey quantiles to 0 / 1)."""
    x = _load_image01(path, cfg)
    if cfg["intensity"] == "stretch":  # the engine's `intensity=stretch`
        from anomaly_gui.engines.patchcore.model import stretch_intensity

        return stretch_intensity(x[None])[0]
    if cfg["intensity"] != "none":
        raise ValueError(f"intensity {cfg['intensity']!r}")
    return x


def _load_image01(path: str, cfg: dict) -> torch.Tensor:
    size, crop = int(cfg["size"]), int(cfg["crop"])
    if cfg["prep"] == "anomalib":
        from anomalib.data.utils import read_image
        from torchvision.transforms.v2 import CenterCrop, Compose, Resize

        steps = [Resize((size, size), antialias=True)] + ([CenterCrop((crop, crop))] if crop else [])
        return Compose(steps)(read_image(path, as_tensor=True))
    if cfg["prep"] == "ours":
        from anomaly_gui.engines.image_data import load_image

        arr, _ = load_image(path, size, 3)
        x = torch.from_numpy(np.array(arr)).permute(2, 0, 1).float() / 255
        if crop:
            o = (size - crop) // 2
            x = x[:, o:o + crop, o:o + crop]
        return x
    raise ValueError(f"prep {cfg['prep']!r}")


def torchvision_backbone(weights: Path) -> torch.nn.Module:
    import torchvision

    net = torchvision.models.mobilenet_v2()
    net.load_state_dict(torch.load(weights, weights_only=True))
    return net.eval()


def anomalib_model(cfg: dict, weights: Path):
    from anomalib.models.image.patchcore.torch_model import PatchcoreModel

    return PatchcoreModel(layers=cfg["layers"].split(","), backbone=torchvision_backbone(weights), pre_trained=False,
                          num_neighbors=int(cfg["num_neighbors"])).eval()


def our_engine(cfg: dict, weights: Path, normalize: bool = True, chunk: int = 8192):
    from anomaly_gui.engines.base import get_engine

    size, crop = int(cfg["size"]), int(cfg["crop"])
    eng = get_engine("patchcore")(device="cpu", weights=str(weights), image_size=size, border=cfg["border"],
                                  layers=cfg["layers"], center_crop=(crop / size if crop else 1.0),
                                  coreset_ratio=float(cfg["ratio"]), coreset_chunk=chunk, normalize=normalize,
                                  neighbourhood=int(cfg["neighbourhood"]), intensity="none",  # done at loading
                                  num_neighbors=int(cfg["num_neighbors"]), seed=int(cfg["seed"]),
                                  score_mode="max" if cfg["score"] == "max" else "reweighted")
    eng.model = eng._build()
    return eng


@torch.no_grad()
def embed_all(paths: list[str], cfg: dict, weights: Path, batch: int = 16) -> torch.Tensor:
    """(N, D, h, w) fp32 patch embeddings of `paths` under the feature stages of `cfg`."""
    if cfg["features"] == "anomalib":
        model = anomalib_model(cfg, weights)
        k = int(cfg["neighbourhood"])
        model.feature_pooler = torch.nn.AvgPool2d(k, 1, k // 2) if k > 1 else torch.nn.Identity()

        def run(x: torch.Tensor) -> torch.Tensor:
            feats = model.feature_extractor((x - MEAN) / STD)
            feats = {k: model.feature_pooler(v) for k, v in feats.items()}
            return model.generate_embedding(feats)
    elif cfg["features"] == "ours":
        eng = our_engine(cfg, weights)
        run = eng.model.embed  # the engine normalises [0, 1] input itself
    else:
        raise ValueError(f"features {cfg['features']!r}")
    out = []
    for i in range(0, len(paths), batch):
        out.append(run(torch.stack([load_image01(p, cfg) for p in paths[i:i + batch]])).float())
    return torch.cat(out)


def anomalib_greedy(x: torch.Tensor, n: int, seed: int, exact_norm: bool = False) -> torch.Tensor:
    """anomalib's KCenterGreedy.select_coreset_idxs (its projection, start, loop), distances by the matmul
    identity unless `exact_norm` (its own linalg.norm: the reference for --check)."""
    from anomalib.models.components.dimensionality_reduction import SparseRandomProjection

    torch.manual_seed(seed)
    np.random.seed(seed)  # its sample_without_replacement draws from numpy's global state
    proj = SparseRandomProjection(eps=0.9)
    proj.fit(x)
    z = proj.transform(x).float()
    sq = (z * z).sum(1)
    idx = torch.randint(high=z.shape[0], size=(1,)).squeeze()
    picked = [int(idx)]
    min_d = None
    for _ in range(n - 1):
        if exact_norm:
            d = torch.linalg.norm(z - z[idx], ord=2, dim=1)
        else:
            d = (sq + sq[idx] - 2.0 * (z @ z[idx])).clamp_min(0).sqrt()
        min_d = d if min_d is None else torch.minimum(min_d, d)
        idx = torch.argmax(min_d)
        min_d[idx] = 0.0
        picked.append(int(idx))
        if len(picked) % 2000 == 0:
            print(f"greedy {len(picked)}/{n} picks, {_rss_mb()} MB", file=sys.stderr, flush=True)
    return torch.tensor(picked)


def _rss_mb() -> int:
    try:
        return int(Path("/proc/self/status").read_text().split("VmRSS:")[1].split()[0]) // 1024
    except (OSError, IndexError, ValueError):  # not Linux
        return -1


def coreset_indices(feats: torch.Tensor, cfg: dict, cache: Path, ekey: str) -> tuple[torch.Tensor, float]:
    """Indices of the memory bank rows in `feats` (P, D), cached; seconds spent (0 when cached)."""
    from anomaly_gui.engines.patchcore.model import chunked_coreset, random_projection

    ckey = _key({"e": ekey, **{k: cfg[k] for k in ("coreset", "ratio", "subsample", "seed")}})
    f = cache / f"coreset_{ckey}.pt"
    if f.exists():
        return torch.load(f, weights_only=True), 0.0
    t = time.perf_counter()
    g = torch.Generator().manual_seed(int(cfg["seed"]))
    rows = torch.arange(feats.shape[0])
    if float(cfg["subsample"]) > 0:
        keep = int(feats.shape[0] * float(cfg["subsample"]))
        rows = torch.randperm(feats.shape[0], generator=g)[:keep].sort().values
    x = feats.index_select(0, rows)
    if cfg["coreset"] == "anomalib":
        n = int(x.shape[0] * float(cfg["ratio"]))  # anomalib rounds down
        local = anomalib_greedy(x, n, int(cfg["seed"]))
    else:
        n = max(1, int(round(x.shape[0] * float(cfg["ratio"]))))
        proj = random_projection(x.shape[1], 128, x.device, int(cfg["seed"]))
        chunk = {"greedy": 0, "chunked": 8192}[cfg["coreset"]]
        local = chunked_coreset(x, n, proj, seed=int(cfg["seed"]), chunk_size=chunk)
    idx = rows.index_select(0, local)
    torch.save(idx, f)
    return idx, time.perf_counter() - t


def cached_embeddings(paths: list[str], cfg: dict, weights: Path, cache: Path, tag: str) -> torch.Tensor:
    ekey = embed_key(cfg, paths)
    f = cache / f"emb_{tag}_{ekey}.pt"
    if f.exists():
        return torch.load(f, weights_only=True)
    e = embed_all(paths, cfg, weights)
    torch.save(e, f)
    return e


@torch.no_grad()
def run_config(cfg: dict, train: list[str], test: list[str], labels: list[int], weights: Path,
               cache: Path) -> dict:
    t0 = time.perf_counter()
    etr = cached_embeddings(train, cfg, weights, cache, "train")
    ete = cached_embeddings(test, cfg, weights, cache, "test")
    n, d, h, w = etr.shape
    feats = etr.permute(0, 2, 3, 1).reshape(-1, d).contiguous()
    ekey = embed_key(cfg, train)
    idx, coreset_s = coreset_indices(feats, cfg, cache, ekey)
    bank = feats.index_select(0, idx)
    if cfg["score"] == "anomalib":
        model = anomalib_model(cfg, weights)
        model.memory_bank = bank
        scores = []
        for i in range(0, len(ete), 16):
            flat = model.reshape_embedding(ete[i:i + 16])
            ps, loc = model.nearest_neighbors(embedding=flat, n_neighbors=1)
            k = ete[i:i + 16].shape[0]
            scores.append(model.compute_anomaly_score(ps.reshape(k, -1), loc.reshape(k, -1), flat))
        s = torch.cat(scores)
    else:
        import anomaly_gui.engines.patchcore as pc

        eng = our_engine(cfg, weights, normalize=cfg["score"] in ("normalized", "max"))
        original = pc.chunked_coreset
        pc.chunked_coreset = lambda *a, **k: idx  # the bank chosen above, whatever the method
        try:
            image_ids = torch.arange(n).repeat_interleave(h * w)
            eng.fit_embeddings(feats, image_ids, torch.ones_like(image_ids, dtype=torch.bool), (h, w), n)
        finally:
            pc.chunked_coreset = original
        side = int(cfg["crop"]) or int(cfg["size"])
        parts = []
        for i in range(0, len(ete), 16):
            if int(cfg["top"]) > 0:  # mean of the largest normalised patch distances
                patch = eng.model._patch_distances(ete[i:i + 16])[1].flatten(1)
                parts.append(patch.topk(int(cfg["top"]), 1).values.mean(1))
            else:
                parts.append(eng.model.score_embeddings(ete[i:i + 16], (side, side))[0])
        s = torch.cat(parts)
    return {"config": {k: v for k, v in cfg.items() if DEFAULTS.get(k) != v},
            "image_auroc": round(auroc(labels, s.tolist()), 4),
            "bank": list(bank.shape), "n_patches": int(feats.shape[0]), "grid": [h, w],
            "coreset_seconds": round(coreset_s, 1), "seconds": round(time.perf_counter() - t0, 1),
            "load": round(os.getloadavg()[0], 1), "scores": [round(float(v), 6) for v in s]}


def check(train: list[str], weights: Path, cache: Path) -> dict:
    """Our embedding vs anomalib's on identical tensors; the fast greedy vs anomalib's own norm loop."""
    cfg = dict(DEFAULTS)
    a = embed_all(train[:8], cfg, weights)
    b = embed_all(train[:8], cfg | {"features": "ours"}, weights)
    x = cached_embeddings(train, cfg, weights, cache, "train")
    x = x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])[:20000]
    fast, ref = anomalib_greedy(x, 400, 0), anomalib_greedy(x, 400, 0, exact_norm=True)
    return {"embedding_max_abs_diff": float((a - b).abs().max()), "embedding_max_abs": float(a.abs().max()),
            "greedy_same_picks": int((fast == ref).sum()), "greedy_picks": 400}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--weights", type=Path, default=REPO.parent / "shared" / "weights" / "mobilenet_v2-b0353104.pth")
    ap.add_argument("--config", action="append", default=[], help="JSON object over DEFAULTS (anomalib's pipeline)")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/compare_patchcore_anomalib"))
    ap.add_argument("--scores", type=Path, default=None, help="write per-image scores of every config here (JSON)")
    ap.add_argument("--check", action="store_true", help="compare the embeddings and the greedy loops first")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if not args.weights.exists():
        raise SystemExit(f"weights not found: {args.weights}")
    args.cache.mkdir(parents=True, exist_ok=True)
    train = sorted(str(p) for p in (args.data / "train" / "good").iterdir())
    test, labels = [], []
    for sub in sorted((args.data / "test").iterdir()):
        files = sorted(str(p) for p in sub.iterdir())
        test += files
        labels += [int(sub.name != "good")] * len(files)
    if args.check:
        print(json.dumps({"check": check(train, args.weights, args.cache)}), flush=True)
    results = []
    for raw in args.config or ["{}"]:
        cfg = DEFAULTS | json.loads(raw)
        unknown = set(cfg) - set(DEFAULTS)
        if unknown:
            raise SystemExit(f"unknown config keys: {sorted(unknown)}")
        r = run_config(cfg, train, test, labels, args.weights, args.cache)
        results.append(r)
        print(json.dumps({k: v for k, v in r.items() if k != "scores"}), flush=True)
    if args.scores:
        args.scores.write_text(json.dumps({"test": test, "labels": labels, "runs": results}))


if __name__ == "__main__":
    main()
