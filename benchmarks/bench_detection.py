"""Detection benchmark: tiled inference on a large synthetic SAR scene (bounded memory) and, optionally,
mAP per engine on a held-back part of the real HRSID chips. Prints one JSON object on stdout.

    python benchmarks/bench_detection.py                      # 10,000 x 10,000 scene, RetinaNet
    python benchmarks/bench_detection.py --size 4000 --train-epochs 20 --engines retinanet yolo

The scene (uint16, gamma speckle, bright ships) is written by a child process and read window by window;
inference runs in a fresh child process so its peak resident memory (ru_maxrss) is its own: the figure to
compare with the scene's size. The model is a RetinaNet trained briefly on HRSID chips (or `--model`).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ANOMALY_GUI_DATA", REPO.parent / "shared" / "data"))
WEIGHTS = DATA.parent / "weights" / "mobilenet_v2-b0353104.pth"


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def infer(model: Path, scene: Path, tile: int, threads: int) -> dict:
    """Child process: load the model, run tiled detection over the scene, report memory and speed."""
    import numpy as np
    import torch

    if threads > 0:
        torch.set_num_threads(threads)

    from anomaly_gui.core.formats.base import DatasetItem
    from anomaly_gui.core.tiling import Scene, tile_grid
    from anomaly_gui.engines.base import Engine, RunContext

    eng = Engine.load(model, device="cpu")
    eng.params.tile = tile
    eng.fitted = True
    eng.predict_arrays([np.zeros((tile, tile, 3), np.uint8)])  # warm-up at tile size
    base_rss, base_peak = _rss_mb(), _peak_mb()
    sc = Scene(scene)
    n_tiles = len(tile_grid(sc.width, sc.height, tile, max(32, tile // 6)))
    shown = [-1]

    def progress(done: int, total: int, msg: str) -> None:
        pct = int(100 * done / max(total, 1))
        if pct // 10 != shown[0]:
            shown[0] = pct // 10
            print(f"  tiled inference: {pct:3d}%  {msg}", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    boxes = eng.score([DatasetItem(path=str(scene))], RunContext(progress=progress))[0].boxes
    seconds = time.perf_counter() - t0
    return {"tiles": n_tiles, "seconds": round(seconds, 2), "tiles_per_second": round(n_tiles / seconds, 3),
            "megapixels_per_second": round(sc.width * sc.height / 1e6 / seconds, 3), "n_boxes": len(boxes or []),
            "baseline_rss_mb": round(base_rss, 1), "peak_rss_mb": round(max(_peak_mb(), base_peak), 1),
            "peak_increase_mb": round(_peak_mb() - base_rss, 1), "memory_mapped": sc.memory_mapped}


def make_model(path: Path, epochs: int, scale: float) -> None:
    """A RetinaNet trained briefly on HRSID chips (a real model; its quality does not matter for timing)."""
    import torch

    from anomaly_gui.core.formats.base import import_dataset
    from anomaly_gui.engines.base import get_engine

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    items = [it for it in import_dataset(DATA / "hrsid_ships").items if it.annotations][:8]
    eng = get_engine("retinanet")(device="cpu", epochs=epochs, scale=scale,
                                  backbone_weights=str(WEIGHTS) if WEIGHTS.is_file() else "", pretrained=WEIGHTS.is_file())
    eng.fit(items)
    eng.save(path)


def evaluate(engine: str, epochs: int, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "anomaly_gui", "evaluate", str(DATA / "hrsid_ships"), "--engine", engine, "--json",
           "--param", f"epochs={epochs}", *extra]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=10_000, help="scene width = height (pixels)")
    ap.add_argument("--ships", type=int, default=300)
    ap.add_argument("--tile", type=int, default=800)
    ap.add_argument("--model", type=Path, default=None, help="an .agm detection model (default: train a small RetinaNet)")
    ap.add_argument("--model-epochs", type=int, default=2)
    ap.add_argument("--scale", type=float, default=0.0, help="RetinaNet input scale of the timing model (0: auto)")
    ap.add_argument("--train-epochs", type=int, default=0, help="also report mAP per engine on HRSID (0: skip)")
    ap.add_argument("--engines", nargs="*", default=["retinanet", "yolo"])
    ap.add_argument("--threads", type=int, default=0, help="torch threads for inference (0: torch's default)")
    ap.add_argument("--_infer", nargs=3, metavar=("MODEL", "SCENE", "TILE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._infer:
        print(json.dumps(infer(Path(args._infer[0]), Path(args._infer[1]), int(args._infer[2]), args.threads)))
        return
    result: dict = {"scene_size": args.size, "tile": args.tile}
    with tempfile.TemporaryDirectory(prefix="bench_detection-") as tmp:
        scene = Path(tmp) / "scene.tif"
        t0 = time.perf_counter()
        code = ("import sys; from anomaly_gui.core.tiling import synthetic_scene; "
                f"synthetic_scene(sys.argv[1], size={args.size}, n_ships={args.ships})")
        subprocess.run([sys.executable, "-c", code, str(scene)], check=True)
        result["scene_mb"] = round(scene.stat().st_size / 2**20, 1)
        result["scene_write_seconds"] = round(time.perf_counter() - t0, 2)
        model = args.model
        if model is None:
            model = Path(tmp) / "retinanet.agm"
            make_model(model, args.model_epochs, args.scale)
        print(f"scene {args.size}x{args.size} ({result['scene_mb']} MB) written; running tiled inference",
              file=sys.stderr, flush=True)
        result["model"] = str(model)
        out = subprocess.run([sys.executable, __file__, "--_infer", str(model), str(scene), str(args.tile),
                              "--threads", str(args.threads)],
                             stdout=subprocess.PIPE, text=True, check=True)
        result["tiled"] = json.loads(out.stdout)
    if args.train_epochs > 0:
        extra = {"retinanet": ["--param", f"backbone_weights={WEIGHTS}"] if WEIGHTS.is_file() else []}
        result["map_hrsid"] = {e: evaluate(e, args.train_epochs, ["--device", "cpu", *extra.get(e, [])]) for e in args.engines}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
