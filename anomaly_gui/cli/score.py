"""`anomaly-gui score INPUT --model MODEL --out OUT_DIR`: batch scoring into Parquet, in process or on Ray."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "score", help="score a folder, manifest, video or large scene with a model file into Parquet shards "
        "(in this process, or on a local or remote Ray cluster); reruns resume",
        description="INPUT: a folder of images, a .txt/.csv manifest of paths, a video file or folder of frames "
        "(video models), or a large scene (detectors tile it). Output: OUT_DIR/results/*.parquet (path, score, "
        "verdict, regions, boxes, frame index, map path), errors/*.parquet, job.json, summary.json.")
    p.add_argument("input", type=Path, help="folder, manifest (.txt/.csv), video file, frame folder or scene")
    p.add_argument("--model", type=Path, required=True,
                   help="model file (.agm), a file from `export-model` (.onnx: ONNX Runtime, .xml: OpenVINO; image "
                        "engines, CPU), or a project file (.agproj) with --run: that run's model and settings")
    p.add_argument("--run", type=int, default=None, help="with a project as --model: the run id")
    p.add_argument("--out", type=Path, required=True, help="output folder (a rerun into it skips what is written)")
    p.add_argument("--threshold", type=float, default=None, help="decision threshold (default: the model's / run's)")
    p.add_argument("--min-area", type=float, default=None, help="minimum defect area in image pixels (default: the model's / run's)")
    p.add_argument("--ray", default=None, metavar="auto|local|ADDRESS",
                   help="score on Ray: 'local' (this machine), 'auto' (the cluster this node belongs to) or a cluster "
                        "address (ray://HOST:10001); without it, in this process")
    p.add_argument("--workers", type=int, default=1, help="Ray workers, each holding one loaded model (default 1)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per Ray worker (default 0: CPU)")
    p.add_argument("--batch-size", type=int, default=8, help="items per batch and per Parquet shard (default 8)")
    p.add_argument("--maps", choices=("auto", "on", "off"), default="auto",
                   help="write raw score maps (float16 .npy): auto = on up to 5000 items")
    p.add_argument("--frames-per-unit", type=int, default=256, help="video: frames per work unit (default 256)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(func=run)


def _model_and_settings(args: argparse.Namespace) -> tuple[Path, float | None, float | None]:
    from anomaly_gui.core.errors import DataError

    if args.model.suffix.lower() != ".agproj":
        if args.run is not None:
            raise ValueError("--run goes with a project file (.agproj) as --model")
        return args.model, args.threshold, args.min_area
    from anomaly_gui.cli.report import open_existing
    from anomaly_gui.pipeline import model_path

    if args.run is None:
        raise ValueError("a project as --model needs --run ID")
    with open_existing(args.model) as proj:
        run = proj.run(args.run)
        path = model_path(proj, run.id)
        if not path.is_file():
            raise DataError(path, f"run {run.id} has no model file")
        thr = args.threshold if args.threshold is not None else run.threshold
        area = args.min_area if args.min_area is not None else run.min_area
    return path, thr, area


def run(args: argparse.Namespace) -> int:
    from anomaly_gui.batch import score_batch
    from anomaly_gui.batch.progress import Progress

    model, threshold, min_area = _model_and_settings(args)
    tty = sys.stderr.isatty()

    def report(p: Progress) -> None:
        print(("\r" if tty else "") + p.line() + ("" if tty else "\n"), end="", file=sys.stderr, flush=True)

    summary = score_batch(args.input, model, args.out, threshold=threshold, min_area=min_area, ray=args.ray,
                          workers=args.workers, gpus_per_worker=args.gpus_per_worker, batch_size=args.batch_size,
                          save_maps={"auto": None, "on": True, "off": False}[args.maps], device=args.device,
                          frames_per_unit=args.frames_per_unit, report=report)
    if tty:
        print(file=sys.stderr)
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{summary['results']} results, {summary['anomalies']} anomalous, {summary['errors']} unreadable "
              f"({summary['scored_now']} scored now at {summary['items_per_second']} items/s, {summary['skipped']} "
              f"already written) -> {summary['out_dir']}")
    return 0
