"""Rescore video models fitted earlier with other SCORING settings, without training again (issue 13).

The model files given (e.g. single `future_frame` models saved by `anomaly_gui evaluate ... --param ensemble=1
--param seed=S --save-model M.agm`) are composed into one seed ensemble (training is deterministic per seed, so
members of seeds s..s+2 are the engine's `ensemble=3 seed=s`), switched to the engine's default scoring plus the
`KEY=VALUE` overrides, recalibrated on the dataset's training clips (the mean error per pixel depends on the
score) and measured on its test clips with the evaluator's own `measure`. Prints one JSON line.

    PYTHONPATH=. python benchmarks/rescore_video_models.py A.agm,B.agm,C.agm [--data DIR] [--by-clip] [motion_score=2 ...]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ANOMALY_GUI_DATA", REPO.parent / "shared" / "data")) / "ucsd_ped2"
SCORING = ("frame_error", "frame_scale", "score_box", "smooth", "smooth_mode", "pixel_error", "motion_score",
           "grad_score", "score_floor", "map_floor", "flow_weight", "flow_box", "flow_width", "flow_height", "score_topk",
           "flip_average", "appearance_weight", "appearance_layers", "appearance_width", "appearance_height",
           "appearance_bank", "appearance_frames", "appearance_stat", "appearance_scale")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", help="comma-separated model files: the members of one ensemble")
    ap.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=f"scoring settings ({', '.join(SCORING)})")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--by-clip", action="store_true", help="also each test clip's own AUC and mean scores")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from anomaly_gui.engines.base import Engine
    from anomaly_gui.evaluation.video import measure, read_split

    paths = args.models.split(",")
    eng = Engine.load(Path(paths[0]), device="cpu")
    for p in paths[1:]:
        eng.extra_members.append((Engine.load(Path(p), device="cpu").module, None))
    d = type(eng).Params()
    scoring = {k: getattr(d, k) for k in SCORING if hasattr(d, k)}
    for spec in args.overrides:
        key, value = spec.split("=", 1)
        if key not in scoring:
            raise SystemExit(f"{spec}: only the scoring settings {', '.join(scoring)} can be changed here")
        kind = type(scoring[key])
        scoring[key] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
    members = {"ensemble": len(paths)} if hasattr(eng.params, "ensemble") else {}  # engines without one: one model
    if len(paths) > 1 and not members:
        raise SystemExit(f"{eng.name} has no seed ensemble: give one model file")
    eng.params = dataclasses.replace(eng.params, **members, **scoring)
    import time

    t0 = time.perf_counter()
    eng.calibrate(read_split(args.data, "train"))
    t1 = time.perf_counter()
    test = read_split(args.data, "test")
    out = measure(eng, test)
    seconds = {"calibrate_s": round(t1 - t0, 1), "score_s": round(time.perf_counter() - t1, 1),
               **{k: round(float(eng.stats[k]), 1) for k in ("appearance_seconds", "speed_seconds") if k in eng.stats}}
    print(json.dumps({"models": [Path(p).stem for p in paths], "scoring": scoring,
                      **{k: out[k] for k in ("frame_auc_raw", "frame_auc", "pixel_auroc", "pixel_auc_ucsd")}, **seconds,
                      **({"by_clip": by_clip(eng, test)} if args.by_clip else {})}))
    return 0


def by_clip(eng, test) -> dict:
    """Per test clip: the AUC of its own frames (the ranking within the clip) and its mean anomalous / normal score."""
    import numpy as np

    from anomaly_gui.core.metrics import auroc
    from anomaly_gui.core.video_io import clips_from_items

    out = {}
    for clip in clips_from_items(test):
        e = eng.score_clip(clip).errors
        y = np.array([bool(it.is_anomalous) for it in clip.items], int)
        both = 0 < y.sum() < len(y)
        out[clip.name] = {"frames": len(y), "anomalous": int(y.sum()),
                          "auc_within": round(float(auroc(y, e)), 4) if both else None,
                          "mean_anomalous": round(float(e[y == 1].mean()), 3) if y.any() else None,
                          "mean_normal": round(float(e[y == 0].mean()), 3) if (y == 0).any() else None}
    return out


if __name__ == "__main__":
    sys.exit(main())
