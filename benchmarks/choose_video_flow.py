"""Choose `future_frame`'s optical-flow speed term on TRAINING clips only (issue 13, decision 0029): no test clip is read.

The held-back models of `choose_video_scoring.py` (`--model H:M.agm`, fitted by `choose_video_defaults.py --held-out H
--save M.agm`: fit on all training clips but the last H) are scored as the engine's seed ensemble (their dB frame
scores averaged) on every held-back training clip turned into Ped2-like clips with synthetic anomalies. The clips are
made at flow resolution (180x120) and shrunk to the models' 48x32, so both terms see the same clip. Kinds:
`choose_video_scoring.py`'s six (patch speeds scaled to the resolution), and `fastband2` / `fastband3`: the band of
rows where the clip moves most played 2x / 3x faster for a stretch (real walkers at a cyclist's speed: the most
Ped2-like motion anomaly the training clips allow), and `normal`: the held-back clip as it is, for stability.
`--kinds walker` instead makes only motion anomalies at a cyclist's speed (2-3x a walker's; `walker_kinds`): the
first kinds' patches move about 15x a walker's speed at 180x120, which overrated the speed term (decision 0029).

For every candidate (flow weight, box, the row reference's quantile and floor) it reports the pooled frame AUC of
the raw scores and of the per-clip normalised ones (mean over protocols), and two stability figures of the
deployable score on the unmodified held-back clip: the share of its frames above the training 99th percentile (the
engine's default threshold; 0.01 if the clip looked like the training clips) and its mean's shift from the training
mean in training standard deviations. Choice (declared before the run): the best mean of raw and per-clip AUC;
candidates within 0.001 of it are tied, and of those the smallest normal shift wins (the test clips of 0026 moved
whole clips against each other).

    PYTHONPATH=. python benchmarks/choose_video_flow.py --model 1:val_h1_s0.agm --model 1:val_h1_s1.agm \\
        --model 1:val_h1_s2.agm --model 2:val_h2_s0.agm --model 2:val_h2_s1.agm --model 2:val_h2_s2.agm [--out F.json]
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from choose_video_defaults import DATA, synthetic_anomalies  # noqa: E402
from choose_video_scoring import busier, moving_patch, walkway_patch  # noqa: E402

FLOW_SIZE = (180, 120)
MODEL_SIZE = (48, 32)
CANDIDATES = {
    "flow_weight": [0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
    "flow_box": [12, 16],
    "quantile": [0.95, 0.99, 0.999],
    "floor_share": [0.1, 0.25],
}


def fastband(frames: np.ndarray, first: int, last: int, factor: int, far: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The band of a quarter of the rows where the clip moves most (`far`: within the upper half of the frame, away
    from the camera), played `factor` x faster on first..last-1."""
    t, h, _ = frames.shape
    rows = np.abs(np.diff(frames.astype(np.float32), axis=0)).mean(axis=(0, 2))
    bh = h // 4
    band = np.convolve(rows, np.ones(bh), mode="valid")
    row = int(np.argmax(band[: h // 2 - bh + 1] if far else band))
    out, y = frames.copy(), np.zeros(t, bool)
    for k, fi in enumerate(range(first, last)):
        src = first + factor * k
        if src >= t:
            break
        out[fi, row:row + bh] = frames[src, row:row + bh]
        y[fi] = True
    return out, y


def flow_kinds(frames: np.ndarray, seed: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(kind, frames at flow resolution, labels) made from one held-back training clip."""
    t, r = len(frames), frames.shape[2] / MODEL_SIZE[0]  # patch speeds were set in px/frame at 48 px wide
    crowd = busier(frames)
    return [("mixed", *synthetic_anomalies(frames, seed=seed)),
            ("late", *moving_patch(frames, int(0.4 * t), t, 1.5 * r, seed + 100)),
            ("most", *moving_patch(frames, 0, int(0.95 * t), 1.0 * r, seed + 200)),
            ("faint", *moving_patch(frames, int(0.3 * t), int(0.8 * t), 0.5 * r, seed + 300, alpha=0.5)),
            ("busy", *moving_patch(crowd, int(0.6 * len(crowd)), len(crowd), 1.5 * r, seed + 400)),
            ("walkway", *walkway_patch(frames, int(0.4 * t), int(0.8 * t), 1.5 * r, seed + 500)),
            ("fastband2", *fastband(frames, int(0.3 * t), int(0.6 * t), 2)),
            ("fastband3", *fastband(frames, int(0.3 * t), int(0.55 * t), 3)),
            ("normal", frames, np.zeros(t, bool))]


def walker_kinds(frames: np.ndarray, seed: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Motion anomalies at a cyclist's speed, 2-3x a walker's (walkers move about 0.5 px/frame at 180 px wide, a
    third of that far from the camera): the walkers of a band played faster (near and far), and patches crossing at
    1-1.5 px/frame (`--kinds walker`, added after the test clips contradicted the first kinds, decision 0029)."""
    t, r = len(frames), frames.shape[2] / FLOW_SIZE[0]
    return [("fastband2", *fastband(frames, int(0.3 * t), int(0.6 * t), 2)),
            ("fastband3", *fastband(frames, int(0.3 * t), int(0.55 * t), 3)),
            ("fastband2_far", *fastband(frames, int(0.3 * t), int(0.6 * t), 2, far=True)),
            ("walkway_slow", *walkway_patch(frames, int(0.4 * t), int(0.8 * t), 1.0 * r, seed + 500)),
            ("most_slow", *walkway_patch(frames, 0, int(0.95 * t), 1.0 * r, seed + 200)),
            ("late_slow", *moving_patch(frames, int(0.4 * t), t, 1.5 * r, seed + 100)),
            ("normal", frames, np.zeros(t, bool))]


KINDS = {"synthetic": flow_kinds, "walker": walker_kinds}


def shrink(frames: np.ndarray) -> np.ndarray:
    import cv2

    return np.stack([cv2.resize(f, MODEL_SIZE, interpolation=cv2.INTER_AREA) for f in frames])


def predictor_scores(paths: list[str], fit_small: list[np.ndarray], clips_small: list[np.ndarray]):
    """(training frame scores, [clip frame scores]) of the seed ensemble of the models in `paths` (dB averaged)."""
    from anomaly_gui.engines.base import Engine

    tr, cl = [], []
    for p in paths:
        eng = Engine.load(p, device="cpu")
        eng.params.flow_weight = 0.0
        tr.append(np.concatenate([eng._errors_and_maps(eng._clip_raw(f))[0] for f in fit_small]))
        cl.append([eng._errors_and_maps(eng._clip_raw(f))[0] for f in clips_small])
    return np.mean(tr, axis=0), [np.mean([c[i] for c in cl], axis=0) for i in range(len(clips_small))]


def protocol_rows(h: int, paths: list[str], train_flow: list[np.ndarray], train_small: list[np.ndarray],
                  kinds: str = "synthetic") -> list[dict]:
    from anomaly_gui.core.metrics import auroc
    from anomaly_gui.core.metrics.video import per_clip_minmax
    from anomaly_gui.engines.video_common.flow import SpeedModel, box_mean, flow_speeds

    fitted, held = train_flow[:-h], train_flow[-h:]
    clips = [c for k, f in enumerate(held) for c in KINDS[kinds](f, k)]
    pred_tr, pred = predictor_scores(paths, train_small[:-h], [shrink(f) for _, f, _ in clips])
    speeds_tr, speeds = [flow_speeds(f) for f in fitted], [flow_speeds(f) for _, f, _ in clips]
    anomalous = [i for i, c in enumerate(clips) if c[0] != "normal"]
    normal = [i for i, c in enumerate(clips) if c[0] == "normal"]
    rows = []
    for box in CANDIDATES["flow_box"]:
        box_tr, box_cl = [box_mean(s, box) for s in speeds_tr], [box_mean(s, box) for s in speeds]
        for q, fl in itertools.product(CANDIDATES["quantile"], CANDIDATES["floor_share"]):
            model = SpeedModel.from_box_speeds(box_tr, box, q, fl)
            sp_tr = np.concatenate([model.scores_of_box_speeds(b) for b in box_tr])
            sp = [model.scores_of_box_speeds(b) for b in box_cl]
            for w in CANDIDATES["flow_weight"]:
                def fuse(p: np.ndarray, s: np.ndarray) -> np.ndarray:  # the engine's _fuse
                    return (1 - w) * (p - pred_tr.mean()) / pred_tr.std() + w * (s - sp_tr.mean()) / sp_tr.std()

                scores, train = [fuse(p, s) for p, s in zip(pred, sp)], fuse(pred_tr, sp_tr)

                def auc(idx: list[int], norm: bool = False) -> float:
                    return auroc(np.concatenate([clips[i][2] for i in idx]).astype(int),
                                 np.concatenate([per_clip_minmax(scores[i]) if norm else scores[i] for i in idx]))

                nv = np.concatenate([scores[i] for i in normal])
                row = {"held_out": h, "flow_weight": w, "flow_box": box, "quantile": q, "floor_share": fl,
                       "raw": auc(anomalous), "per_clip": auc(anomalous, True),
                       "normal_above_threshold": float((nv > np.quantile(train, 0.99)).mean()),
                       "normal_shift_sd": float((nv.mean() - train.mean()) / train.std())}
                for kind in sorted({c[0] for c in clips} - {"normal"}):
                    row[kind] = auc([i for i, c in enumerate(clips) if c[0] == kind])
                rows.append(row)
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    keys = list(CANDIDATES)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[tuple(r[k] for k in keys)].append(r)
    out = []
    for key, rs in groups.items():
        mean = {m: float(np.mean([r[m] for r in rs])) for m in rs[0] if m not in keys and m != "held_out"}
        out.append({**dict(zip(keys, key)), **mean, "raw_worst": min(r["raw"] for r in rs),
                    "criterion": (mean["raw"] + mean["per_clip"]) / 2})
    best = max(o["criterion"] for o in out)
    return sorted(out, key=lambda o: (o["criterion"] < best - 0.001, o["normal_shift_sd"] if o["criterion"] >= best - 0.001
                                      else -o["criterion"]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, metavar="H:PATH", help="held-back model (H clips held back)")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--out", type=Path, default=None, help="also write every row (per protocol) here")
    ap.add_argument("--kinds", choices=list(KINDS), default="synthetic",
                    help="synthetic: the kinds of 0022/0026 (+ fastband); walker: motion at a cyclist's speed only")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from anomaly_gui.core.video_io import clips_from_items
    from anomaly_gui.engines.video_common.data import load_clip_frames
    from anomaly_gui.evaluation.video import read_split

    by_h: dict[int, list[str]] = defaultdict(list)
    for spec in args.model:
        h, path = spec.split(":", 1)
        by_h[int(h)].append(path)
    clips = clips_from_items(read_split(args.data, "train"))
    train_flow = [load_clip_frames(c, FLOW_SIZE) for c in clips]
    train_small = [load_clip_frames(c, MODEL_SIZE) for c in clips]
    rows = [r for h, paths in sorted(by_h.items()) for r in protocol_rows(h, paths, train_flow, train_small, args.kinds)]
    if args.out:
        args.out.write_text(json.dumps(rows))
    table = summarise(rows)
    print(json.dumps({"chosen": table[0], "prediction_error_alone": next(o for o in table if o["flow_weight"] == 0.0),
                      "speed_alone": next(o for o in table if o["flow_weight"] == 1.0), "top": table[:12]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
