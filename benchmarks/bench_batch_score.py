"""Batch scoring benchmark: `score` in process vs on a local Ray with 1 and 2 workers (folder -> Parquet,
PatchCore, 256 px), and tile throughput on a large synthetic SAR scene. Prints one JSON object on stdout.

    python benchmarks/bench_batch_score.py                          # 80 screw images, 10,000 x 10,000 scene
    python benchmarks/bench_batch_score.py --modes process ray1 --scene-size 0   # no scene

Every mode scores the same folder into a fresh output folder with the same model file. Reported per mode:
`wall_seconds` (the whole `score_batch` call: Ray start-up excluded, actor start-up and model loading
included), `startup_seconds` (until the first batch started on a worker), `steady_items_per_second` (items
over the time from then on: what a longer job or more nodes would see), `compute_ms_per_item` (time inside
the scorer, summed over workers) and `gap_ms_per_item` (time a worker sat between two of its batches).
`ray_overhead_ms_per_item` = the gaps on one Ray worker minus the in-process gaps (both with `--threads` torch
threads per worker): what Ray adds per item once the actors run.
Needs the `scale` extra (ray[data], pyarrow) and the real data (../shared/data) with the MobileNetV2 weights.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ANOMALY_GUI_DATA", REPO.parent / "shared" / "data"))
WEIGHTS = DATA.parent / "weights"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def make_patchcore(path: Path, image_size: int, n_train: int) -> None:
    from anomaly_gui.core.formats.base import DatasetItem
    from anomaly_gui.engines.base import get_engine

    train = sorted((DATA / "mvtec_screw" / "train" / "good").glob("*.png"))[:n_train]
    eng = get_engine("patchcore")(device="cpu", image_size=image_size, coreset_ratio=0.1, batch_size=8)
    eng.fit([DatasetItem(path=str(p)) for p in train])
    eng.save(path)


def timed_job(source: Path, model: Path, out: Path, **kwargs: object) -> dict:
    """Run one `score_batch`, timing the first and last batch summaries."""
    from anomaly_gui.batch import score_batch

    batches: list[tuple[int, float, float, int]] = []  # worker pid, call start, call end, units

    def seen(s: dict) -> None:
        for pid in sorted(set(int(p) for p in s["worker_pid"])):
            rows = [k for k, p in enumerate(s["worker_pid"]) if int(p) == pid]
            batches.append((pid, float(s["t_start"][rows[0]]), float(s["t_end"][rows[0]]), len(rows)))

    t0 = time.time()
    summary = score_batch(source, model, out, on_summary=seen, **kwargs)  # type: ignore[arg-type]
    wall = time.time() - t0
    n = summary["units"]
    first = min(b[1] for b in batches)
    busy = sum(b[2] - b[1] for b in batches)
    gaps = 0.0  # time a worker spent between two of its batches: what Ray adds per batch
    for pid in {b[0] for b in batches}:
        mine = sorted(b for b in batches if b[0] == pid)
        gaps += sum(max(0.0, b[1] - a[2]) for a, b in zip(mine, mine[1:]))
    steady = n / (wall - (first - t0))
    return {"units": n, "results": summary["results"], "errors": summary["errors"], "wall_seconds": round(wall, 2),
            "startup_seconds": round(first - t0, 2), "items_per_second": round(n / wall, 3),
            "steady_items_per_second": round(steady, 3), "workers_seen": len({b[0] for b in batches}),
            "compute_ms_per_item": round(1000 * busy / n, 1), "gap_ms_per_item": round(1000 * gaps / n, 1),
            "batches": len(batches)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--modes", nargs="*", default=["process", "ray1", "ray2"], help="process, ray1, ray2")
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--train", type=int, default=10, help="normal images the PatchCore bank is built from")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per worker (in process too)")
    ap.add_argument("--scene-size", type=int, default=10_000, help="scene side for the tile benchmark (0: skip)")
    ap.add_argument("--scene-modes", nargs="*", default=["process", "ray2"])
    ap.add_argument("--tile", type=int, default=800)
    args = ap.parse_args()
    os.environ.setdefault("ANOMALY_GUI_WEIGHTS", str(WEIGHTS))
    os.environ.setdefault("ANOMALY_GUI_OFFLINE", "1")
    import torch

    torch.set_num_threads(args.threads)
    from anomaly_gui.batch.on_ray import connect

    result: dict = {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()[0], "threads": args.threads}
    with tempfile.TemporaryDirectory(prefix="bench_batch-") as tmp:
        tmpd = Path(tmp)
        folder = tmpd / "images"  # links to 80 real screw images (60 train + 20 test), never copies
        folder.mkdir()
        screw = DATA / "mvtec_screw"
        for p in sorted(screw.glob("t*/*/*.png")):
            (folder / f"{p.parent.parent.name}_{p.parent.name}_{p.name}").symlink_to(p)
        model = tmpd / "patchcore.agm"
        make_patchcore(model, args.image_size, args.train)
        common = dict(threshold=1e9, batch_size=args.batch_size, save_maps=False, torch_threads=args.threads)
        started = False
        images: dict = {}
        for mode in args.modes:
            ray = None if mode == "process" else "local"
            if ray and not started:
                t0 = time.perf_counter()
                connect("local", num_cpus=os.cpu_count())
                started = True
                result["ray_init_seconds"] = round(time.perf_counter() - t0, 2)
            workers = int(mode[3:]) if mode.startswith("ray") else 1
            print(f"images: {mode}", file=sys.stderr, flush=True)
            images[mode] = timed_job(folder, model, tmpd / f"out_{mode}", ray=ray, workers=workers,
                                     device="cpu", **common)
        result["images"] = {"engine": "patchcore", "image_size": args.image_size, "n_images": len(list(folder.iterdir())),
                            **images}
        if "process" in images and "ray1" in images:
            # per item: Ray's gaps between batches on its worker, minus the in-process loop's own gaps
            result["images"]["ray_overhead_ms_per_item"] = round(images["ray1"]["gap_ms_per_item"]
                                                                 - images["process"]["gap_ms_per_item"], 1)
        if args.scene_size:
            from bench_detection import make_model

            from anomaly_gui.core.tiling import synthetic_scene, tile_grid
            from anomaly_gui.engines.base import Engine

            scene_dir = tmpd / "scene"
            scene_dir.mkdir()
            t0 = time.perf_counter()
            synthetic_scene(scene_dir / "scene.tif", size=args.scene_size, n_ships=300)
            det = tmpd / "retinanet.agm"
            make_model(det, 1, 512)
            eng = Engine.load(det, device="cpu")
            eng.params.tile = args.tile
            eng.save(det)
            torch.set_num_threads(args.threads)
            n_tiles = len(tile_grid(args.scene_size, args.scene_size, args.tile, max(32, args.tile // 6)))
            scenes: dict = {"scene_size": args.scene_size, "tile": args.tile, "n_tiles": n_tiles,
                            "prepare_seconds": round(time.perf_counter() - t0, 1)}
            for mode in args.scene_modes:
                ray = None if mode == "process" else "local"
                if ray and not started:
                    connect("local", num_cpus=os.cpu_count())
                    started = True
                workers = int(mode[3:]) if mode.startswith("ray") else 1
                print(f"scene: {mode}", file=sys.stderr, flush=True)
                r = timed_job(scene_dir, det, tmpd / f"scene_{mode}", ray=ray, workers=workers, device="cpu",
                              threshold=0.5, batch_size=4, torch_threads=args.threads)
                r["tiles_per_second"] = round(n_tiles / r["wall_seconds"], 3)
                scenes[mode] = r
            result["scene"] = scenes
        if started:
            import ray as ray_mod

            ray_mod.shutdown()
    result["load_average_at_end"] = os.getloadavg()[0]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
