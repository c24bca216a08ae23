"""Scoring speed of the image engines in torch, ONNX Runtime and OpenVINO on the CPU (exported files).

For each engine (PatchCore by default; --engines adds selfsimilarity, autoencoder), one model is fitted on the
MVTec screw training images (app defaults, 256 px), exported with `engines.deploy.export_model` to ONNX and
OpenVINO IR, and timed on the same decoded test tensors (32 images: the 20 test images, repeated):

- `torch`: the engine's own scoring with its pure-torch path (PatchCore: runtime=torch, faiss kNN);
- `app`: the engine's own scoring as the app runs it (PatchCore: ONNX Runtime embedder + faiss kNN);
- `onnxruntime`, `openvino`: the exported file (`ExportedScorer`, what `anomaly-gui score --model X.onnx` runs);

model-only at batch 1 and 32 (images/s, median of interleaved rounds), the largest score difference of each
exported file from the engine, and folder -> scores (decode included) for the app and the exported files.

    python benchmarks/bench_export_runtimes.py [--engines patchcore,selfsimilarity,autoencoder] [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_patchcore_vs_anomalib import batched, interleave  # noqa: E402  (timing helpers, one copy)

#: short fits: speed does not depend on how well the model was trained
FIT = {"patchcore": {}, "selfsimilarity": {}, "autoencoder": {"epochs": 1}}


def bench_engine(name: str, train, test, weights: Path, rounds: int, batches: list[int]) -> dict:
    import torch

    from anomaly_gui.engines import get_engine
    from anomaly_gui.engines.deploy import ExportedEngine, ExportedScorer, export_model
    from anomaly_gui.engines.image_data import load_all

    eng = get_engine(name)(device="cpu", weights=str(weights), image_size=256, **FIT[name]) if name != "autoencoder" \
        else get_engine(name)(device="cpu", image_size=256, **FIT[name])
    t0 = time.perf_counter()
    eng.fit(train)
    res: dict = {"fit_seconds": round(time.perf_counter() - t0, 2), "params": {"image_size": 256, **FIT[name]}}
    d = Path(tempfile.mkdtemp())
    files = {"onnxruntime": export_model(eng, d / "m.onnx", "onnx")}
    try:
        files["openvino"] = export_model(eng, d / "m.xml", "openvino")
    except ValueError as exc:  # openvino not installed
        res["openvino_error"] = str(exc)
    scorers = {k: ExportedScorer(p) for k, p in files.items()}
    x = load_all(test, 256, eng.channels()).float() / 255.0
    x = torch.cat([x, x])[:32]
    ref = eng.score_tensor(x)[0]
    res["max_score_difference"] = {k: float((s.score_tensor(x)[0] - ref).abs().max()) for k, s in scorers.items()}
    res["max_score"] = float(ref.abs().max())

    def app(t):
        return eng.score_tensor(t)

    def pure_torch(t):
        if name != "patchcore":
            return eng.score_tensor(t)
        rt, eng.model.runtime = eng.model.runtime, "torch"
        try:
            return eng.score_tensor(t)
        finally:
            eng.model.runtime = rt

    for b in batches:
        sides = {"torch": batched(pure_torch, x, b)}
        if name == "patchcore":
            sides["app"] = batched(app, x, b)
        sides.update({k: batched(s.score_tensor, x, b) for k, s in scorers.items()})
        with torch.inference_mode():
            for fn in sides.values():
                fn()  # warm-up (first call exports / compiles)
            times = interleave(sides, rounds)
        res[f"images_per_second_batch{b}"] = {k: round(len(x) / statistics.median(v), 2) for k, v in times.items()}
        res[f"speedup_vs_torch_batch{b}"] = {k: round(statistics.median(t / o for t, o in zip(times["torch"], v)), 2)
                                             for k, v in times.items() if k != "torch"}
    # folder -> scores, decode included (what `anomaly-gui score` runs in process)
    engines = {"app": eng, **{k: ExportedEngine(p) for k, p in files.items()}}
    for e in engines.values():
        e.score(test[:2])
    times = interleave({k: (lambda e=e: e.score(test)) for k, e in engines.items()}, rounds)
    res["folder_to_scores_images_per_second"] = {k: round(len(test) / statistics.median(v), 2) for k, v in times.items()}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "mvtec_screw")
    ap.add_argument("--weights", type=Path, default=REPO.parent / "shared" / "weights" / "mobilenet_v2-b0353104.pth")
    ap.add_argument("--device", default="cpu", help="cpu only (exported files run on the CPU)")
    ap.add_argument("--engines", default="patchcore")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batches", default="1,32")
    args = ap.parse_args()
    import torch

    from anomaly_gui.core.formats import import_dataset

    items = import_dataset(args.data).items
    train = [it for it in items if it.split == "train"]
    test = [it for it in items if it.split == "test"]
    out: dict = {"machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                             "load_average_start": [round(v, 2) for v in os.getloadavg()]},
                 "n_train": len(train), "n_test": len(test), "engines": {}}
    for name in [e for e in args.engines.split(",") if e]:
        out["engines"][name] = bench_engine(name, train, test, args.weights, args.rounds,
                                            [int(b) for b in args.batches.split(",")])
        print(json.dumps({name: out["engines"][name]}), file=sys.stderr, flush=True)
    out["machine"]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
