"""Fit time of a video engine on a training set the size of all of UCSD Ped2 (16 clips, about 2,550 frames),
made from the shared training clips repeated as separate clips (full Ped2 is not in ../shared/data).
Measures what the CPU does per epoch (windows/s, seconds per epoch) and how many epochs early stopping
runs, so the fit time on the real set can be read off. Prints one JSON object.

    python benchmarks/bench_video_fit.py [--engine future_frame] [--frames 2550] [--epochs 2] [--threads 1]
        [--param KEY=VALUE ...]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ANOMALY_GUI_DATA", REPO.parent / "shared" / "data")) / "ucsd_ped2"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", default="future_frame")
    ap.add_argument("--frames", type=int, default=2550, help="training frames (Ped2: 16 clips, about 2,550)")
    ap.add_argument("--epochs", type=int, default=2, help="epochs to time (the JSON extrapolates to the default)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from anomaly_gui.cli.evaluate import parse_params
    from anomaly_gui.engines.base import RunContext, get_engine
    from anomaly_gui.evaluation.video import read_split

    train = read_split(args.data, "train")
    items, k = [], 0
    while len(items) < args.frames:  # the shared clips again and again, each copy its own clip
        items += [dataclasses.replace(it, group=f"{it.group}_copy{k}") for it in train][: args.frames - len(items)]
        k += 1
    cls = get_engine(args.engine)
    params = {**parse_params(args.param, cls.Params), "epochs": args.epochs}
    eng = cls(params=params, device="cpu")
    epoch_times: list[float] = []
    last = [time.perf_counter()]

    def log(entry: dict) -> None:
        now = time.perf_counter()
        epoch_times.append(now - last[0])
        last[0] = now
        print(json.dumps(entry), file=sys.stderr, flush=True)

    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    last[0] = t0
    eng.fit(items, RunContext(log=log))
    fit = time.perf_counter() - t0
    per_epoch = sum(epoch_times[1:]) / max(len(epoch_times) - 1, 1) if len(epoch_times) > 1 else epoch_times[0]
    from anomaly_gui.engines.video_common.training import epochs_for

    dflt = cls.Params()
    default_epochs = epochs_for(eng.stats["n_train_windows"], int(dflt.epochs), int(getattr(dflt, "max_windows", 0)))
    print(json.dumps({
        "engine": args.engine, "n_frames": len(items), "n_clips": k, "threads": args.threads,
        "params": params, "n_train_windows": eng.stats["n_train_windows"], "n_val_windows": eng.stats["n_val_windows"],
        "fit_seconds": round(fit, 1), "seconds_per_epoch": round(per_epoch, 1),
        "windows_per_second": round(eng.stats["n_train_windows"] / per_epoch, 1),
        "calibrate_seconds": round(fit - eng.stats["train_seconds"], 1),
        "default_epochs_here": default_epochs,  # the engine's epochs under its max_windows, for this many windows
        "n_models": eng.stats.get("n_models", 1),  # a seed ensemble trains its members one after another
        "fit_seconds_with_defaults_estimated": round(
            fit - sum(epoch_times) + default_epochs * per_epoch * eng.stats.get("n_models", 1), 1),
        "load_average_before_after": [round(load_before, 1), round(os.getloadavg()[0], 1)],
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
