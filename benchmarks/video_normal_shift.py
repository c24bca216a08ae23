"""How far a video scoring setting lifts NORMAL unseen clips above the training frames (issue 13, decision 0029).

The raw (deployable) frame AUC pools clips, so a setting that raises normal frames of unseen clips against the
training frames moves whole clips against each other, which the AUC of synthetic anomalies inside one held-back clip
does not see. For each held-back protocol (`--model H:PATH`, fitted by `choose_video_defaults.py --held-out H`;
the models of one H are averaged in dB as the engine's seed ensemble) and each setting (`--setting
KEY=VALUE,KEY=VALUE`, applied to the engine's scoring, recalibrated on the fitted clips), it prints the mean of every
unmodified held-back training clip in training standard deviations above the training mean, and its share of
frames above the training 99th percentile (the engine's default threshold; 0.01 if it looked like the training clips).
Training clips only.

    PYTHONPATH=. python benchmarks/video_normal_shift.py --model 1:val_h1_s0.agm --model 1:val_h1_s1.agm \\
        --model 1:val_h1_s2.agm --setting score_floor=0.02 --setting score_floor=0.002 \\
        --setting score_floor=0.02,motion_score=2
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from choose_video_defaults import DATA  # noqa: E402


def parse_setting(spec: str, params) -> dict:
    out = {}
    for part in filter(None, spec.split(",")):
        key, value = part.split("=", 1)
        if not hasattr(params, key):
            raise SystemExit(f"{spec}: {key} is not a parameter of this engine")
        out[key] = type(getattr(params, key))(value)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, metavar="H:PATH")
    ap.add_argument("--setting", action="append", required=True, metavar="KEY=VALUE[,KEY=VALUE]")
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from anomaly_gui.core.video_io import clips_from_items
    from anomaly_gui.engines.base import Engine, RunContext
    from anomaly_gui.evaluation.video import read_split

    clips = clips_from_items(read_split(args.data, "train"))
    by_h: dict[int, list[str]] = defaultdict(list)
    for spec in args.model:
        h, path = spec.split(":", 1)
        by_h[int(h)].append(path)
    for h, paths in sorted(by_h.items()):
        scores: dict[str, list[tuple[list[np.ndarray], list[np.ndarray]]]] = defaultdict(list)
        for path in paths:
            eng = Engine.load(Path(path), device="cpu")
            fit, held = eng._load(clips[:-h], RunContext()), eng._load(clips[-h:], RunContext())
            base = eng.params
            for spec in args.setting:
                eng.params = dataclasses.replace(base, **parse_setting(spec, base))
                eng._calibrate(fit, RunContext())
                scores[spec].append(([eng._errors_and_maps(eng._clip_raw(f))[0] for f in fit],
                                     [eng._errors_and_maps(eng._clip_raw(f))[0] for f in held]))
        for spec, members in scores.items():
            train = np.concatenate([np.mean([m[0][i] for m in members], axis=0) for i in range(len(members[0][0]))])
            held = [np.mean([m[1][i] for m in members], axis=0) for i in range(len(members[0][1]))]
            mu, sd, thr = train.mean(), max(float(train.std()), 1e-12), np.quantile(train, 0.99)
            print(json.dumps({"held_out": h, "setting": spec, "models": len(members),
                              "held_back_clips": [c.name for c in clips[-h:]],
                              "shift_sd": [round(float((e.mean() - mu) / sd), 3) for e in held],
                              "above_threshold": [round(float((e > thr).mean()), 3) for e in held]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
