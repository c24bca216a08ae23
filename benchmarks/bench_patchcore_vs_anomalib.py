"""PatchCore side by side with anomalib 2.7: same MobileNetV2 backbone (features.6 + features.13), 256x256,
same data and coreset ratio; AUROC, fit/coreset time and model-only throughput of both, and their ratio.

    python benchmarks/bench_patchcore_vs_anomalib.py [--device cpu|cuda] [--coreset 0.1]
        [--anomalib-python /path/to/venv/bin/python]

anomalib runs in the interpreter given (an environment with `pip install anomalib==2.7.0`; default: this
one); without anomalib there, only our side is reported and `anomalib` holds the reason.
Needs ../shared/data/mvtec_screw and ../shared/weights/mobilenet_v2-b0353104.pth (or --data/--weights).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def time_model_only(engine, x, batch: int) -> float:
    """Images/s of the model alone on tensors already on the device (no decoding, no post-processing)."""
    import torch

    from anomaly_gui.engines.base import RunContext

    ctx = RunContext()
    engine._score_safe(x[:batch], ctx)  # warm-up (cuDNN autotune, allocator)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for i in range(0, len(x), batch):
        engine._score_safe(x[i : i + batch], ctx)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
    return len(x) / (time.perf_counter() - t)


def ours(data: Path, weights: Path, device: str, coreset: float, batch: int) -> dict:
    import torch

    from anomaly_gui.core.formats import import_dataset
    from anomaly_gui.core.metrics import auroc
    from anomaly_gui.engines import get_engine
    from anomaly_gui.engines.image_data import load_all

    items = import_dataset(data).items
    train = [it for it in items if it.split == "train"]
    test = [it for it in items if it.split == "test"]
    eng = get_engine("patchcore")(device=device, weights=str(weights), coreset_ratio=coreset, image_size=256,
                                  batch_size=batch)
    t0 = time.perf_counter()
    eng.fit(train)
    fit_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    results = eng.score(test)
    folder_ips = len(test) / (time.perf_counter() - t1)
    labels = [int(bool(it.is_anomalous)) for it in test]
    x = (load_all(test, 256, 3).float() / 255.0).to(eng.device)
    return {
        "implementation": "anomaly_gui patchcore",
        "device": str(eng.device),
        "n_train": len(train), "n_test": len(test),
        "memory_bank": [eng.stats["bank_size"], eng.stats["feature_dim"]],
        "fit_seconds": round(fit_s, 3),
        "coreset_seconds": eng.stats["coreset_seconds"],
        "image_auroc": round(auroc(labels, [r.score for r in results]), 4),
        "model_images_per_second_batch1": round(time_model_only(eng, x, 1), 2),
        f"model_images_per_second_batch{batch}": round(time_model_only(eng, x, batch), 2),
        "folder_to_scores_images_per_second": round(folder_ips, 2),
        "torch_threads": torch.get_num_threads(),
    }


def theirs(python: str, data: Path, weights: Path, device: str, coreset: float, batch: int) -> dict:
    cmd = [python, str(REPO / "benchmarks" / "anomalib_side.py"), "--data", str(data), "--weights", str(weights),
           "--device", device, "--coreset", str(coreset), "--batch", str(batch)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()][-1:] or [f"exit {proc.returncode}"]
        return {"error": tail[0]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "mvtec_screw")
    ap.add_argument("--weights", type=Path, default=REPO.parent / "shared" / "weights" / "mobilenet_v2-b0353104.pth")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--coreset", type=float, default=0.1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--anomalib-python", default=sys.executable)
    args = ap.parse_args()
    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    a = ours(args.data, args.weights, device, args.coreset, args.batch)
    b = theirs(args.anomalib_python, args.data, args.weights, device, args.coreset, args.batch)
    out = {"ours": a, "anomalib": b}
    if "error" not in b:
        key = f"model_images_per_second_batch{args.batch}"
        out["ratio"] = {
            "model_throughput_batch1": round(a["model_images_per_second_batch1"] / b["model_images_per_second_batch1"], 2),
            f"model_throughput_batch{args.batch}": round(a[key] / b[key], 2),
            "coreset_speedup": round(b["coreset_seconds"] / max(a["coreset_seconds"], 1e-6), 1),
            "auroc_difference": round(a["image_auroc"] - b["image_auroc"], 4),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
