"""Product-image engines: image AUROC on MVTec screw per engine, fit seconds, scoring images/s (batch 1 and
batched, model-only and folder-to-verdicts), slider post-processing latency at 1024x1024, peak memory.

    python benchmarks/bench_image.py [--device cpu|cuda|auto] [--engines patchcore,selfsimilarity,autoencoder]
        [--image-size 256] [--data ../shared/data/mvtec_screw] [--quick]

Prints one JSON object (machine and versions included). Needs the shared data and MobileNetV2 weights.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]

ENGINE_PARAMS: dict[str, dict[str, Any]] = {
    "patchcore": {"coreset_ratio": 0.1},
    "selfsimilarity": {},
    "autoencoder": {"epochs": 30, "patch_size": 128, "color": "gray"},
}
QUICK: dict[str, dict[str, Any]] = {"autoencoder": {"epochs": 3}, "patchcore": {"coreset_ratio": 0.02}}


def peak_host_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def median_ms(fn, repeat: int = 30) -> float:
    fn()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts) * 1000)


def slider_latency() -> dict[str, float]:
    """Post-processing at 1024x1024 as a slider moves: threshold + min area (+ overlay), region list, verdicts."""
    import cv2

    from anomaly_gui.core import postprocess as pp

    rng = np.random.default_rng(0)
    raw = cv2.GaussianBlur(rng.random((1024, 1024)).astype(np.float32), (0, 0), 8)
    img = (rng.random((1024, 1024, 3)) * 255).astype(np.uint8)
    t = float(np.quantile(raw, 0.99))
    maps = [cv2.GaussianBlur(rng.random((256, 256)).astype(np.float32), (0, 0), 4) for _ in range(500)]
    cache = pp.VerdictCache(maps, [(1024, 1024)] * len(maps))
    crit = cache.critical(400.0)
    tq = float(np.quantile(cache.max_scores, 0.5))
    return {
        "mask_1024_ms": median_ms(lambda: pp.threshold_mask(raw, t, 400.0)),
        "mask_overlay_1024_ms": median_ms(lambda: pp.overlay(img, pp.threshold_mask(raw, t, 400.0))),
        "regions_1024_ms": median_ms(lambda: pp.postprocess(raw, t, 400.0)),
        "verdicts_500_items_ms": median_ms(lambda: cache.verdicts(tq, 400.0), 10),
        "verdicts_500_items_from_critical_ms": median_ms(lambda: pp.verdicts_from_critical(crit, tq)),
    }


def bench_engine(name: str, params: dict[str, Any], train, test, device: str, image_size: int) -> dict[str, Any]:
    import torch

    from anomaly_gui.core import postprocess as pp
    from anomaly_gui.core.metrics import auroc
    from anomaly_gui.engines.base import get_engine
    from anomaly_gui.engines.image_data import load_all

    eng = get_engine(name)(device=device, image_size=image_size, **params)
    cuda = eng.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    eng.fit(train)
    if cuda:
        torch.cuda.synchronize()
    fit_s = time.perf_counter() - t0
    # folder to verdicts: decoding, resizing, model, post-processing at image size
    t1 = time.perf_counter()
    results = eng.score(test)
    scores = [r.score for r in results]
    labels = [int(bool(it.is_anomalous)) for it in test]
    thr = float(np.median(scores))
    for r in results:
        pp.postprocess(r.map, thr, 100.0, r.image_size, with_regions=False)
    folder_s = time.perf_counter() - t1
    out: dict[str, Any] = {
        "image_auroc": auroc(labels, scores), "fit_seconds": round(fit_s, 2),
        "folder_to_verdicts_images_per_s": round(len(test) / folder_s, 2), "params": params,
        "stats": {k: v for k, v in eng.stats.items() if k in ("bank_size", "coreset_seconds", "n_words", "epochs")},
    }
    # model only: tensors already on the device
    x = load_all(test, eng.input_size(), eng.channels()).float().div(255).to(eng.device)
    reps = max(1, 64 // len(x)) if cuda else 1
    xx = torch.cat([x] * reps)
    for bs in (1, min(len(xx), 64 if cuda else 16)):
        eng.score_tensor(xx[:bs])  # warm-up
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        for i in range(0, len(xx), bs):
            eng.score_tensor(xx[i:i + bs])
        if cuda:
            torch.cuda.synchronize()
        out[f"model_images_per_s_batch{bs}"] = round(len(xx) / (time.perf_counter() - t), 2)
    if cuda and name == "patchcore":  # the same with bf16
        eng16 = get_engine(name)(device=device, image_size=image_size, precision="bf16", **params)
        eng16.fit(train)
        s16 = [r.score for r in eng16.score(test)]
        out["bf16_image_auroc"] = auroc(labels, s16)
        t = time.perf_counter()
        for i in range(0, len(xx), 64):
            eng16.score_tensor(xx[i:i + 64])
        torch.cuda.synchronize()
        out["bf16_model_images_per_s_batch64"] = round(len(xx) / (time.perf_counter() - t), 2)
    if cuda:
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    out["peak_host_mb"] = round(peak_host_mb(), 1)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--engines", default="patchcore,selfsimilarity,autoencoder")
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "mvtec_screw")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    ap.add_argument("--quick", action="store_true", help="fewer epochs / smaller coreset (smoke run)")
    args = ap.parse_args()

    import torch
    import torchvision

    from anomaly_gui.core.formats.base import import_dataset

    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("ANOMALY_GUI_OFFLINE", "1")
    items = import_dataset(args.data).items
    train = [i for i in items if i.split == "train" and not i.is_anomalous]
    test = [i for i in items if i.split == "test"]
    result: dict[str, Any] = {
        "benchmark": "image", "data": str(args.data), "n_train": len(train), "n_test": len(test),
        "image_size": args.image_size,
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "torchvision": torchvision.__version__, "cuda": torch.cuda.is_available(),
                    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                    "load_average": os.getloadavg()[0]},
        "slider": slider_latency(), "engines": {},
    }
    for name in [e.strip() for e in args.engines.split(",") if e.strip()]:
        params = {**ENGINE_PARAMS.get(name, {}), **(QUICK.get(name, {}) if args.quick else {})}
        print(f"benchmarking {name} ...", file=sys.stderr)
        result["engines"][name] = bench_engine(name, params, train, test, args.device, args.image_size)
        result["engines"][name]["device"] = args.device
    result["peak_host_mb"] = round(peak_host_mb(), 1)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
