"""PatchCore side by side with anomalib 2.7, in one process, timings interleaved round by round.

Same MobileNetV2 backbone (features.6 + features.13), 256x256, same data and coreset ratio. Reports AUROC,
fit/coreset time, model-only throughput at batch 1 and 32 (tensors already decoded), folder -> scores
(decode included), and the ratios. Ours and anomalib's runs alternate (A B A B ...) and each figure is the
median over the rounds, so a machine shared with other work slows both sides alike.

    python benchmarks/bench_patchcore_vs_anomalib.py [--device cpu] [--coreset 0.1] [--rounds 3]
        [--before-src DIR]     # also time folder -> scores of an older checkout's code (DIR/anomaly_gui)

Without anomalib 2.7 installed, only our side is reported and `anomalib` holds the reason.
Needs ../shared/data/mvtec_screw and ../shared/weights/mobilenet_v2-b0353104.pth (or --data/--weights).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BEFORE_SCRIPT = """
import json, sys, time
from anomaly_gui.core.formats import import_dataset
from anomaly_gui.engines.base import Engine
eng = Engine.load(sys.argv[1], device="cpu")
test = [it for it in import_dataset(sys.argv[2]).items if it.split == "test"]
eng.score(test[:1])
t = time.perf_counter(); eng.score(test); print(json.dumps({"seconds": time.perf_counter() - t}))
"""


def interleave(sides: dict[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Seconds per call of each side, the sides alternating within every round."""
    out: dict[str, list[float]] = {k: [] for k in sides}
    for _ in range(rounds):
        for name, fn in sides.items():
            t = time.perf_counter()
            fn()
            out[name].append(time.perf_counter() - t)
    return out


#: our PatchCore with the settings anomalib's has (as in bench_auroc_vs_anomalib.py)
EQUAL_SETTINGS = {"border": "zero", "normalize": False, "bank_augment": "none", "neighbourhood": 3}


def batched(fn: Callable, x, batch: int) -> Callable[[], None]:
    def run() -> None:
        for i in range(0, len(x), batch):
            fn(x[i : i + batch])

    return run


def anomalib_model(weights: Path, device: str):
    import torch
    import torchvision
    from anomalib.models.image.patchcore.torch_model import PatchcoreModel

    backbone = torchvision.models.mobilenet_v2()
    backbone.load_state_dict(torch.load(weights, weights_only=True))
    return PatchcoreModel(layers=["features.6", "features.13"], backbone=backbone, pre_trained=False).to(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "mvtec_screw")
    ap.add_argument("--weights", type=Path, default=REPO.parent / "shared" / "weights" / "mobilenet_v2-b0353104.pth")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--coreset", type=float, default=0.1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--before-src", type=Path, default=None, help="older checkout whose folder -> scores is timed")
    ap.add_argument("--shared-bank", action="store_true",
                    help="give anomalib our memory bank (same size) instead of fitting it: a quick scoring-speed "
                         "comparison without anomalib's slow coreset; no fit or AUROC comparison")
    args = ap.parse_args()
    import torch

    from anomaly_gui.core.formats import import_dataset
    from anomaly_gui.core.metrics import auroc
    from anomaly_gui.engines import get_engine
    from anomaly_gui.engines.image_data import load_all

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    items = import_dataset(args.data).items
    train = [it for it in items if it.split == "train"]
    test = [it for it in items if it.split == "test"]
    labels = [int(bool(it.is_anomalous)) for it in test]
    x = (load_all(test, 256, 3).float() / 255.0).to(device)
    mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1)
    xn = (x - mean) / std  # anomalib's model takes normalised input
    machine = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
               "load_average_start": list(os.getloadavg())}

    # the algorithm anomalib has (the CNN's zero padding at the edges, raw distances, no augmented bank): the app's
    # default reflect border mirrors 16 px more on each side (+27 % pixels at 256 px), another algorithm
    eng = get_engine("patchcore")(device=device, weights=str(args.weights), coreset_ratio=args.coreset,
                                  image_size=256, batch_size=args.batch, **EQUAL_SETTINGS)
    t0 = time.perf_counter()
    eng.fit(train)
    ours: dict = {"implementation": "anomaly_gui patchcore", "device": str(eng.device), "n_train": len(train),
                  "n_test": len(test), "settings": EQUAL_SETTINGS, "memory_bank": [eng.stats["bank_size"], eng.stats["feature_dim"]],
                  "fit_seconds": round(time.perf_counter() - t0, 3), "coreset_seconds": eng.stats["coreset_seconds"],
                  "runtime": "onnxruntime" if eng.model.uses_onnxruntime() else "torch",
                  "knn": "faiss " + eng.params.knn_index if eng.model.bank_index() is not None else "torch"}
    ours_score = lambda b: eng._score_safe(b, _ctx())[0]  # noqa: E731
    ours["image_auroc"] = round(auroc(labels, torch.cat([ours_score(x[i:i + 1]) for i in range(len(x))]).tolist()), 4)

    theirs: dict = {}
    model = None
    try:
        import anomalib

        model = anomalib_model(args.weights, device)
        t0 = time.perf_counter()
        model.train()
        if args.shared_bank:
            model.memory_bank = eng.model.memory_bank.clone()
        with torch.no_grad():
            xtr = (load_all(train, 256, 3).float() / 255.0).to(device)
            for i in range(0, 0 if args.shared_bank else len(xtr), args.batch):
                model((xtr[i : i + args.batch] - mean) / std)
        t1 = time.perf_counter()
        stderr, sys.stderr = sys.stderr, open(os.devnull, "w")  # anomalib draws a tqdm bar per coreset step
        try:
            if not args.shared_bank:
                model.subsample_embedding(args.coreset)
        finally:
            sys.stderr.close()
            sys.stderr = stderr
        t2 = time.perf_counter()
        model.eval()
        their_score = lambda b: model(b).pred_score.flatten()  # noqa: E731
        with torch.no_grad():
            s = torch.cat([their_score(xn[i : i + 1]) for i in range(len(xn))])
        theirs = {"implementation": f"anomalib {anomalib.__version__} PatchcoreModel",
                  "memory_bank": list(model.memory_bank.shape), "image_auroc": round(auroc(labels, s.tolist()), 4)}
        if args.shared_bank:
            theirs["memory_bank_from"] = "ours (--shared-bank)"
        else:
            theirs.update(fit_seconds=round(t2 - t0, 3), coreset_seconds=round(t2 - t1, 3))
    except Exception as exc:  # anomalib missing or incompatible: our side only
        theirs = {"error": f"{type(exc).__name__}: {exc}"}
        model = None

    def ours_torch_score(t):  # the same model with the torch runtime: what ONNX Runtime buys
        rt, eng.model.runtime = eng.model.runtime, "torch"
        try:
            return ours_score(t)
        finally:
            eng.model.runtime = rt

    ratio: dict = {}
    for b in (1, args.batch):
        sides: dict[str, Callable[[], object]] = {"ours": batched(ours_score, x, b),
                                                  "ours_torch": batched(ours_torch_score, x, b)}
        if model is not None:
            sides["anomalib"] = batched(lambda t: model(t).pred_score, xn, b)
        with torch.inference_mode():
            for fn in sides.values():
                fn()  # warm-up
            times = interleave(sides, args.rounds)
        ours[f"model_images_per_second_batch{b}"] = round(len(x) / statistics.median(times["ours"]), 2)
        ours[f"model_images_per_second_batch{b}_torch_runtime"] = round(len(x) / statistics.median(times["ours_torch"]), 2)
        ratio[f"onnxruntime_vs_torch_batch{b}"] = round(
            statistics.median(t / o for t, o in zip(times["ours_torch"], times["ours"])), 2)
        if model is not None:
            theirs[f"model_images_per_second_batch{b}"] = round(len(x) / statistics.median(times["anomalib"]), 2)
            ratio[f"model_throughput_batch{b}"] = round(
                statistics.median(a / o for a, o in zip(times["anomalib"], times["ours"])), 2)

    # folder -> scores (decode included): ours now, interleaved with the older checkout's code when given
    folder_sides: dict[str, Callable[[], object]] = {"ours": lambda: eng.score(test)}
    before: dict = {}
    if args.before_src:
        model_file = Path(tempfile.mkdtemp()) / "patchcore.agmodel"
        eng.save(model_file)
        env = dict(os.environ, PYTHONPATH=str(args.before_src))

        def run_before() -> float:
            proc = subprocess.run([sys.executable, "-c", BEFORE_SCRIPT, str(model_file), str(args.data)],
                                  capture_output=True, text=True, env=env, cwd=str(args.before_src))
            if proc.returncode:
                raise RuntimeError(proc.stderr.strip().splitlines()[-1])
            return json.loads(proc.stdout.strip().splitlines()[-1])["seconds"]

        folder_sides["before"] = lambda: before.setdefault("seconds", []).append(run_before())
    eng.score(test[:1])
    ft = interleave(folder_sides, args.rounds)
    ours["folder_to_scores_images_per_second"] = round(len(test) / statistics.median(ft["ours"]), 2)
    if before:
        b_secs = before["seconds"]
        before = {"src": str(args.before_src),
                  "folder_to_scores_images_per_second": round(len(test) / statistics.median(b_secs), 2)}
        ratio["folder_to_scores_vs_before"] = round(
            statistics.median(b / o for b, o in zip(b_secs, ft["ours"])), 2)
    if model is not None and not args.shared_bank:
        ratio["fit_speedup"] = round(theirs["fit_seconds"] / max(ours["fit_seconds"], 1e-6), 1)
        ratio["coreset_speedup"] = round(theirs["coreset_seconds"] / max(ours["coreset_seconds"], 1e-6), 1)
    if model is not None and not args.shared_bank:
        ratio["auroc_difference"] = round(ours["image_auroc"] - theirs["image_auroc"], 4)
    elif model is not None:  # anomalib pools and resizes features its own way: our bank does not fit its embedding
        theirs["image_auroc_note"] = "not comparable with --shared-bank (different embedding)"
    machine["load_average_end"] = list(os.getloadavg())
    print(json.dumps({"machine": machine, "ours": ours, "anomalib": theirs, "before": before or None,
                      "ratio": ratio, "rounds": args.rounds}))


def _ctx():
    from anomaly_gui.engines.base import RunContext

    return RunContext()


if __name__ == "__main__":
    main()
