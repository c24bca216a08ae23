"""Choose the video engines' defaults on TRAINING clips only (issues 12, 13): no test clip is read.

Protocol: fit the engine on all training clips but the last `--held-out` (default 1); every held-back training
clip gets synthetic anomalies: a stretch near its start played 3x faster (every walker moves like a cyclist:
a motion anomaly with real appearance), a patch of the frame itself moving fast across the middle third, and
a dark static blob in the last sixth. Each candidate scoring setting is measured by the frame AUC of the RAW
frame errors (the deployable figure: no statistic of the scored clip), pooled over the held-back clips, so
with `--held-out 2` it also measures whether one threshold fits clips with different crowds. The network is
run once per pixel error; the other settings are only post-processing. `--curve` adds epochs-to-quality: the
held-back AUC with the engine's defaults after every epoch.

    python benchmarks/choose_video_defaults.py [--engine future_frame] [--epochs 15] [--held-out 2] [--curve]
        [--param width=48 ...] [--data DIR] [--threads 1] [--save M.agm | --load M.agm]

Prints one JSON object: the candidates with their AUC and the best one.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ANOMALY_GUI_DATA", REPO.parent / "shared" / "data")) / "ucsd_ped2"

CANDIDATES = {
    "pixel_error": ["abs", "squared"],
    "pixel_norm": ["divide", "none"],
    "frame_error": ["sum", "max_box"],
    "score_box": [0, 8, 16],
    "smooth": [0.0, 3.0],
}


def speed_up(frames: np.ndarray, start: int, n: int, factor: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """The clip with frames start..start+factor*n played `factor` times faster (every walker moves like a
    cyclist; the clip stays continuous, only shorter), and the labels of the sped-up frames."""
    fast = frames[start : start + factor * n : factor]
    out = np.concatenate([frames[:start], fast, frames[start + factor * len(fast):]])
    y = np.zeros(len(out), bool)
    y[start : start + len(fast)] = True
    return out, y


def synthetic_anomalies(frames: np.ndarray, seed: int = 0, skip: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(frames with anomalies, per-frame labels): with `skip`, a stretch near the start played 3x faster
    (`speed_up`); a fast-moving patch in the middle third, a dark blob in the last sixth; the rest is the clip
    as recorded (normal)."""
    rng = np.random.default_rng(seed)
    y0 = np.zeros(len(frames), bool)
    if skip and len(frames) >= 90:
        frames, y0 = speed_up(frames, len(frames) // 10, len(frames) // 10)
    out = frames.copy()
    t, h, w = frames.shape
    y = y0.copy()
    ph, pw = max(4, h // 6), max(4, w // 12)
    src_y, src_x = int(rng.integers(0, h - ph)), int(rng.integers(0, w - pw))
    a, b = t // 3, 2 * t // 3
    row = int(rng.integers(0, h - ph))
    for k, f in enumerate(range(a, b)):
        x = int((k * max(2, w // 24)) % (w - pw))
        out[f, row:row + ph, x:x + pw] = frames[f, src_y:src_y + ph, src_x:src_x + pw]
        y[f] = True
    c = t - t // 6
    by, bx = int(rng.integers(0, h - ph)), int(rng.integers(0, w - pw))
    out[c:, by:by + ph, bx:bx + pw] = np.minimum(out[c:, by:by + ph, bx:bx + pw], 20)
    y[c:] = True
    return out, y


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", default="stacked_ae")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="training parameter")
    ap.add_argument("--save", type=Path, default=None, help="write the fitted model here")
    ap.add_argument("--load", type=Path, default=None, help="rescore a model saved with --save (no fit)")
    ap.add_argument("--curve", action="store_true",
                    help="epochs-to-quality: after every epoch, the held-back clip's raw frame AUC with the engine's defaults")
    ap.add_argument("--held-out", type=int, default=1,
                    help="training clips held back (the last ones); with 2+ their raw errors are pooled, which also "
                         "measures whether one threshold fits clips with different crowds")
    ap.add_argument("--no-skip", action="store_true", help="leave out the sped-up stretch (issue 12's protocol)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from anomaly_gui.core.metrics import auroc
    from anomaly_gui.core.video_io import clips_from_items
    from anomaly_gui.engines.base import RunContext, get_engine
    from anomaly_gui.evaluation.video import read_split

    train = read_split(args.data, "train")
    clips = clips_from_items(train)
    n_held = int(args.held_out)
    if len(clips) < n_held + 1:
        print(f"{args.data}: need at least {n_held + 1} training clips ({n_held} held back)", file=sys.stderr)
        return 2
    held, fitted = clips[-n_held:], clips[:-n_held]
    fit_items = [it for c in fitted for it in c.items]
    from anomaly_gui.cli.evaluate import parse_params

    cls = get_engine(args.engine)
    params = {"epochs": args.epochs, **parse_params(args.param, cls.Params)}
    curve: list[dict] = []

    def held_out_clips(e) -> tuple[list[np.ndarray], np.ndarray]:
        """Every held-back clip with its own synthetic anomalies (seed = its position); labels pooled."""
        made = [synthetic_anomalies(f, seed=k, skip=not args.no_skip) for k, f in enumerate(e._load(held, RunContext()))]
        return [f for f, _ in made], np.concatenate([y for _, y in made]).astype(int)

    def pooled_errors(e, raws) -> np.ndarray:
        return np.concatenate([e._errors_and_maps(r)[0] for r in raws])  # raw errors, no statistic of a clip

    if args.load:
        from anomaly_gui.engines.base import Engine

        eng = Engine.load(args.load, device=args.device)
    else:
        eng = cls(params=params, device=args.device)
        held_frames, held_labels = held_out_clips(eng)
        fit_frames_ = eng._load(fitted, RunContext()) if args.curve else []

        def log(entry: dict) -> None:
            if args.curve and "epoch" in entry:  # the module is in eval mode between epochs
                eng._calibrate(fit_frames_, RunContext())
                entry["held_out_auc_raw"] = auroc(held_labels, pooled_errors(eng, [eng._clip_raw(f) for f in held_frames]))
                curve.append(entry)
            print(json.dumps(entry), file=sys.stderr, flush=True)

        eng.fit(fit_items, RunContext(log=log))
    if args.save:
        eng.save(args.save)
    frames, labels = held_out_clips(eng)
    fit_frames = eng._load(fitted, RunContext())
    base = eng.params
    raw, pixel_mean = {}, {}
    for pe in CANDIDATES["pixel_error"]:  # the network runs once per pixel error; the rest is post-processing
        eng.params = dataclasses.replace(base, pixel_error=pe)
        eng._calibrate(fit_frames, RunContext())  # the mean training error per pixel, in this error's units
        raw[pe], pixel_mean[pe] = [eng._clip_raw(f) for f in frames], eng.pixel_mean
    rows = []
    for values in itertools.product(*CANDIDATES.values()):
        setting = dict(zip(CANDIDATES, values))
        if setting["frame_error"] == "sum" and setting["score_box"]:
            continue  # score_box only matters for max_box
        eng.params = dataclasses.replace(base, **setting)
        eng.pixel_mean = pixel_mean[setting["pixel_error"]]
        rows.append({**setting, "frame_auc_raw": auroc(labels, pooled_errors(eng, raw[setting["pixel_error"]]))})
    eng.params = base
    rows.sort(key=lambda r: -(r["frame_auc_raw"] or 0))
    print(json.dumps({"engine": args.engine, "epochs": args.epochs, "params": args.param, "curve": curve, "stats": {
                      k: eng.stats.get(k) for k in ("best_epoch", "epochs_run", "fit_seconds", "val_loss_history")}, "fit_clips": [c.name for c in fitted],
                      "held_back_clips": [c.name for c in held], "n_frames": int(len(labels)), "n_synthetic_anomalous": int(labels.sum()),
                      "best": rows[0], "candidates": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
