"""Choose the video engines' frame scoring on TRAINING clips only (issue 13): no test clip is read.

Models are fitted by `choose_video_defaults.py --held-out H --save M.agm` (fit on all training clips but the last
H). Every held-back training clip becomes five Ped2-like test clips with synthetic anomalies, which differ in
the share of anomalous frames, as Ped2's test clips do (some are anomalous almost throughout):

- `mixed`: `choose_video_defaults.synthetic_anomalies` (a stretch played 3x faster, a fast patch, a dark blob);
- `late`: a patch of the frame moving across from 40 % of the clip to its end (like Test001/002);
- `most`: a slower patch from the first frame to 95 % of the clip (like Test003, 146 of 150 frames anomalous);
- `faint`: a half-transparent patch moving slowly (0.5 px/frame) through the middle half: a weak anomaly, so
  that the figures are not all at the ceiling;
- `busy`: half the clip with twice its crowd (`busier`), a patch crossing in its last 40 %: pooled with the others,
  it checks that a busy normal frame does not outrank a calm anomalous one (Ped2's test clips differ in crowd,
  the three training clips little; `--kinds mixed,late,most,faint` leaves it out);
- `walkway` (only when asked: `--kinds walkway`): a patch crossing along the band of rows where the clip moves
  most, i.e. where people walk, from 40 % to 80 % of the clip. The other patches start at a random row, often
  where nobody walks, which favours dividing each pixel's error by its training mean; Ped2's cyclists and carts
  ride where people walk.

For every candidate scoring (pixel error, frame error and scale, box, temporal smoothing and its mode) it reports the
pooled frame AUC of the RAW scores (deployable) and of the scores min-max normalised per clip (the papers'
protocol, `core.metrics.video.per_clip_minmax`), averaged over the models given (seeds, protocols).

    python benchmarks/choose_video_scoring.py --model 1:A.agm --model 2:B.agm ... [--threads 1] [--motion]

`--motion` instead measures a motion term fused with the engine's default score (frame sum in dB): the squared
frame difference per pixel divided by its mean on the fitted clips, summed over the frame (or its largest 8x8
box) in dB, added with weight w (issue 13: "a motion term"; no flow network is available offline).

`--ensemble` instead measures seed ensembles with the engine's default scoring: within each held-back protocol H, the
frame scores (dB) of every subset of the models given (seeds) are averaged frame by frame, and each subset's AUC is
set beside those of its single members (mean and worst single model vs the ensemble).

`--terms` instead measures `future_frame`'s extra per-pixel error terms with the engine's default scoring: the
intensity error plus g x the gradient error (|grad x^| against |grad x|) plus m x the motion error (|x^ - last
input frame| against |x - last|), for g, m in `TERM_WEIGHTS`, for every model alone and for the seed ensemble
of all the models of each protocol (their dB scores averaged, as the engine's `ensemble` does).
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from choose_video_defaults import DATA, synthetic_anomalies  # noqa: E402

PIXEL_ERRORS = ["squared", "abs"]  # the network runs once per pixel error; the rest is post-processing
CANDIDATES: dict[str, list] = {
    "frame_scale": ["linear", "log"],
    "frame_error": ["max_box", "sum", "sum_and_box"],
    "score_box": [8, 12, 16],
    "smooth": [0.0, 2.0, 4.0, 8.0],
    "smooth_mode": ["causal", "centred"],
}


def moving_patch(frames: np.ndarray, first: int, last: int, speed: float, seed: int,
                 alpha: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """A person-sized patch of the frame itself (fixed source place) moving across one row at `speed` px/frame
    (model resolution) on frames first..last-1, blended with weight `alpha`; labels True there."""
    rng = np.random.default_rng(seed)
    out = frames.copy()
    t, h, w = frames.shape
    ph, pw = max(4, h // 6), max(4, w // 12)
    sy, sx = int(rng.integers(0, h - ph)), int(rng.integers(0, w - pw))
    row, x0 = int(rng.integers(0, h - ph)), int(rng.integers(0, w - pw))
    y = np.zeros(t, bool)
    for k, f in enumerate(range(first, last)):
        x = int(x0 + k * speed) % (w - pw)
        src = frames[f, sy:sy + ph, sx:sx + pw].astype(np.float32)
        dst = frames[f, row:row + ph, x:x + pw].astype(np.float32)
        out[f, row:row + ph, x:x + pw] = np.clip(alpha * src + (1 - alpha) * dst + 0.5, 0, 255).astype(frames.dtype)
        y[f] = True
    return out, y


def walkway_patch(frames: np.ndarray, first: int, last: int, speed: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`moving_patch` along the band of rows where the clip itself moves most (where people walk), not at a random
    row: an anomaly where normal motion also is, which a per-pixel normalisation cannot single out by place."""
    f = frames.astype(np.float32)
    rows = np.abs(np.diff(f, axis=0)).mean(axis=(0, 2))
    t, h, w = frames.shape
    ph, pw = max(4, h // 6), max(4, w // 12)
    band = np.convolve(rows, np.ones(ph), mode="valid")  # motion of every band of ph rows
    row = int(np.argmax(band))
    rng = np.random.default_rng(seed)
    out = frames.copy()
    sy, sx = int(rng.integers(0, h - ph)), int(rng.integers(0, w - pw))
    x0 = int(rng.integers(0, w - pw))
    y = np.zeros(t, bool)
    for k, fi in enumerate(range(first, last)):
        x = int(x0 + k * speed) % (w - pw)
        out[fi, row:row + ph, x:x + pw] = frames[fi, sy:sy + ph, sx:sx + pw]
        y[fi] = True
    return out, y


def busier(frames: np.ndarray) -> np.ndarray:
    """Half the clip with twice its crowd: frame t composited (darker pixel wins) with frame t + T/2. The camera
    is static, so the background stays; the walkers of both moments walk as usual: a NORMAL clip, busier than
    any training clip, with no cut."""
    k = len(frames) // 2
    return np.minimum(frames[: len(frames) - k], frames[k:])


def ped2_like_clips(frames: np.ndarray, seed: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, frames, labels) of the synthetic test clips made from one held-back training clip."""
    t = len(frames)
    mixed = synthetic_anomalies(frames, seed=seed)
    late = moving_patch(frames, int(0.4 * t), t, 1.5, seed + 100)
    most = moving_patch(frames, 0, int(0.95 * t), 1.0, seed + 200)
    faint = moving_patch(frames, int(0.3 * t), int(0.8 * t), 0.5, seed + 300, alpha=0.5)
    crowd = busier(frames)
    busy = moving_patch(crowd, int(0.6 * len(crowd)), len(crowd), 1.5, seed + 400)
    walkway = walkway_patch(frames, int(0.4 * t), int(0.8 * t), 1.5, seed + 500)
    return [("mixed", *mixed), ("late", *late), ("most", *most), ("faint", *faint), ("busy", *busy),
            ("walkway", *walkway)]


def evaluate_candidates(eng, clips: list[tuple[str, np.ndarray, np.ndarray]], candidates: dict[str, list],
                        extra=None) -> list[dict]:
    """Raw and per-clip AUC of every candidate setting over `clips` (the network runs once per clip)."""
    from anomaly_gui.core.metrics.video import frame_auc, per_clip_minmax
    from anomaly_gui.engines.base import RunContext

    raws = [eng._clip_raw(f, RunContext()) for _, f, _ in clips]
    labels = [y.astype(int) for _, _, y in clips]
    base = eng.params
    rows = []
    for values in itertools.product(*candidates.values()):
        setting = dict(zip(candidates, values))
        if not setting.get("smooth", 1.0) and setting.get("smooth_mode") != candidates["smooth_mode"][0]:
            continue  # no smoothing: the mode does not matter
        if setting.get("frame_error") == "sum" and setting.get("score_box") != candidates["score_box"][0]:
            continue  # the whole frame's sum: no box
        eng.params = dataclasses.replace(base, **{k: v for k, v in setting.items() if hasattr(base, k)})
        errs = [eng._errors_and_maps(r)[0] for r in raws]
        if extra is not None:
            errs = extra(eng, setting, clips, errs)
        rows.append({**setting, "raw": frame_auc(labels, errs),
                     "per_clip": frame_auc(labels, [per_clip_minmax(e) for e in errs])})
    eng.params = base
    return rows


def frame_difference(frames: np.ndarray) -> np.ndarray:
    """(T, H, W) squared difference to the previous frame in [0, 1] units; frame 0 takes frame 1's."""
    f = frames.astype(np.float32) / 255.0
    d = np.zeros_like(f)
    d[1:] = (f[1:] - f[:-1]) ** 2
    d[0] = d[1]
    return d


def motion_rows(eng, fit_frames: list[np.ndarray], clips: list[tuple[str, np.ndarray, np.ndarray]]) -> list[dict]:
    """Raw and per-clip AUC of the default score + w * the motion term, for w in 0..2 and sum / box motion."""
    from anomaly_gui.core.metrics.video import frame_auc, per_clip_minmax
    from anomaly_gui.engines.base import RunContext
    from anomaly_gui.engines.video_common.postprocess import box_sum

    d = type(eng).Params()  # today's default scoring, whatever the model file stored
    eng.params = dataclasses.replace(eng.params, **{k: getattr(d, k) for k in ("frame_error", "frame_scale", "score_box",
                                                                               "smooth", "smooth_mode")})
    mean = np.concatenate([frame_difference(f) for f in fit_frames]).mean(axis=0) + 0.02 ** 2
    labels = [y.astype(int) for _, _, y in clips]
    pred = [eng._errors_and_maps(eng._clip_raw(f, RunContext()))[0].astype(np.float64) for _, f, _ in clips]
    rows = []
    for mode in ("sum", "box8"):
        motion = []
        for _, f, _ in clips:
            m = frame_difference(f) / mean
            v = m.reshape(len(m), -1).sum(1) if mode == "sum" else box_sum(m, 8).reshape(len(m), -1).max(1)
            motion.append(10 * np.log10(np.maximum(v, 1e-6)))
        for w in (0.0, 0.25, 0.5, 1.0, 2.0):
            e = [p + w * m for p, m in zip(pred, motion)]
            rows.append({"motion": mode, "motion_weight": w, "raw": frame_auc(labels, e),
                         "per_clip": frame_auc(labels, [per_clip_minmax(x) for x in e])})
    return rows


def default_scoring(eng, fit_frames: list[np.ndarray], overrides: list[str] | None = None) -> None:
    """Switch a loaded model to today's default scoring (whatever its file stored), with `overrides`
    ("smooth=2", "smooth_mode=centred", ...: post-processing only), and recalibrate it."""
    from anomaly_gui.engines.base import RunContext

    d = type(eng).Params()
    eng.params = dataclasses.replace(eng.params, **{k: getattr(d, k) for k in ("pixel_error", *CANDIDATES)})
    for spec in overrides or []:
        key, value = spec.split("=", 1)
        if key not in CANDIDATES:
            raise SystemExit(f"--score {spec}: only the scoring settings {', '.join(CANDIDATES)} can be overridden")
        kind = type(getattr(eng.params, key))
        eng.params = dataclasses.replace(eng.params, **{key: kind(value)})
    eng._calibrate(fit_frames, RunContext())


def ensemble_rows(errors: dict[str, list[np.ndarray]], labels: list[np.ndarray]) -> list[dict]:
    """AUC of every subset of the models (same protocol, same clips): frame scores averaged over the subset."""
    from anomaly_gui.core.metrics.video import frame_auc, per_clip_minmax

    rows = []
    names = sorted(errors)
    for n in range(1, len(names) + 1):
        for subset in itertools.combinations(names, n):
            e = [np.mean([errors[m][c] for m in subset], axis=0) for c in range(len(labels))]
            rows.append({"models": list(subset), "n": n, "raw": round(frame_auc(labels, e), 4),
                         "per_clip": round(frame_auc(labels, [per_clip_minmax(x) for x in e]), 4)})
    return rows


def ensemble_report(args) -> int:
    """`--ensemble`: per protocol, every subset of the models vs its members; then over protocols by subset size."""
    from anomaly_gui.core.video_io import clips_from_items
    from anomaly_gui.engines.base import Engine, RunContext
    from anomaly_gui.evaluation.video import read_split

    train = clips_from_items(read_split(args.data, "train"))
    kinds = set(args.kinds.split(","))
    by_h: dict[int, list[str]] = {}
    for spec in args.model:
        h, path = spec.split(":", 1)
        by_h.setdefault(int(h), []).append(path)
    out: dict = {"models": args.model, "kinds": sorted(kinds), "protocols": {}}
    for h, paths in sorted(by_h.items()):
        errors: dict[str, list[np.ndarray]] = {}
        labels: list[np.ndarray] = []
        for path in paths:
            eng = Engine.load(Path(path), device="cpu")
            default_scoring(eng, eng._load(train[:-h], RunContext()), args.score)
            clips = [c for k, f in enumerate(eng._load(train[-h:], RunContext())) for c in ped2_like_clips(f, seed=k)
                     if c[0] in kinds]
            labels = [y.astype(int) for _, _, y in clips]
            errors[path] = [eng._errors_and_maps(eng._clip_raw(f, RunContext()))[0] for _, f, _ in clips]
            print(json.dumps({"model": f"{h}:{path}", "done": True}), file=sys.stderr, flush=True)
        rows = ensemble_rows(errors, labels)
        singles = {r["models"][0]: r for r in rows if r["n"] == 1}
        for r in rows:  # the ensemble beside its members
            members = [singles[m] for m in r["models"]]
            r["members_raw_mean"] = round(float(np.mean([m["raw"] for m in members])), 4)
            r["members_raw_min"] = min(m["raw"] for m in members)
            r["members_per_clip_mean"] = round(float(np.mean([m["per_clip"] for m in members])), 4)
            r["members_per_clip_min"] = min(m["per_clip"] for m in members)
        out["protocols"][h] = rows
    summary = {}
    for n in sorted({r["n"] for rows in out["protocols"].values() for r in rows}):
        rs = [r for rows in out["protocols"].values() for r in rows if r["n"] == n]
        summary[n] = {"raw_mean": round(float(np.mean([r["raw"] for r in rs])), 4), "raw_min": min(r["raw"] for r in rs),
                      "per_clip_mean": round(float(np.mean([r["per_clip"] for r in rs])), 4),
                      "per_clip_min": min(r["per_clip"] for r in rs), "n_runs": len(rs)}
    out["by_size"] = summary
    print(json.dumps(out))
    return 0


TERM_WEIGHTS = (0.0, 0.5, 1.0, 2.0)
INTENSITY_WEIGHTS = (1.0, 0.0)
PIXEL_FLOORS = (0.02, 0.005, 0.002, 0.001, 0.0005, 0.0002, 0.0001)  # the weights and the floor trade off: (k*w, floor) ~ (w, floor/sqrt(k))


def term_raws(eng, frames: list[np.ndarray], cache: Path | None = None) -> dict[str, list[np.ndarray]]:
    """Per-pixel errors of every clip split into its terms: intensity, gradient, motion (the network's errors are
    linear in the weights, so each term is the difference to the intensity-only run); kept in `cache` if given."""
    from anomaly_gui.engines.base import RunContext

    if cache is not None and cache.exists():
        z = np.load(cache)
        n = len(frames)
        return {t: [z[f"{t}_{c}"] for c in range(n)] for t in ("intensity", "grad", "motion")}
    base, out = eng.params, {}
    for term, over in (("intensity", {}), ("grad", {"grad_score": 1.0}), ("motion", {"motion_score": 1.0})):
        eng.params = dataclasses.replace(base, **{"grad_score": 0.0, "motion_score": 0.0, **over})
        out[term] = [eng._clip_raw(f, RunContext()) for f in frames]
    eng.params = base
    for term in ("grad", "motion"):
        out[term] = [r - i for r, i in zip(out[term], out["intensity"])]
    if cache is not None:
        np.savez(cache, **{f"{t}_{c}": a for t, arrs in out.items() for c, a in enumerate(arrs)})
    return out


def terms_report(args) -> int:
    """`--terms`: every (g, m) for each model alone and for each protocol's seed ensemble."""
    from anomaly_gui.core.metrics.video import frame_auc, per_clip_minmax
    from anomaly_gui.core.video_io import clips_from_items
    from anomaly_gui.engines.base import Engine, RunContext
    from anomaly_gui.evaluation.video import read_split

    train = clips_from_items(read_split(args.data, "train"))
    kinds = set(args.kinds.split(","))
    errors: dict[tuple, dict[str, list[np.ndarray]]] = {}  # (g, m) -> model -> frame errors per clip
    labels: dict[int, list[np.ndarray]] = {}
    for spec in args.model:
        h, path = spec.split(":", 1)
        h = int(h)
        eng = Engine.load(Path(path), device="cpu")
        d = type(eng).Params()
        eng.params = dataclasses.replace(eng.params, **{k: getattr(d, k) for k in ("pixel_error", *CANDIDATES)})
        clips = [c for k, f in enumerate(eng._load(train[-h:], RunContext())) for c in ped2_like_clips(f, seed=k)
                 if c[0] in kinds]
        labels[h] = [y.astype(int) for _, _, y in clips]
        tag = {"fit": "fit", "held": "held_" + "-".join(sorted(kinds))}
        cache = {k: None if args.cache is None else args.cache / f"{Path(path).stem}_{v}.npz" for k, v in tag.items()}
        fit = term_raws(eng, eng._load(train[:-h], RunContext()), cache["fit"])
        held = term_raws(eng, [f for _, f, _ in clips], cache["held"])
        for i, g, m, floor in itertools.product(INTENSITY_WEIGHTS, TERM_WEIGHTS, TERM_WEIGHTS, PIXEL_FLOORS):
            if not (i or g or m):
                continue
            eng.params = dataclasses.replace(eng.params, score_floor=floor)

            def mix(t, c):
                return i * t["intensity"][c] + g * t["grad"][c] + m * t["motion"][c]
            eng.pixel_mean = np.concatenate([mix(fit, c) for c in range(len(fit["intensity"]))]).mean(axis=0)
            errors.setdefault((i, g, m, floor), {})[spec] = [eng._errors_and_maps(mix(held, c))[0] for c in range(len(clips))]
        print(json.dumps({"model": spec, "done": True}), file=sys.stderr, flush=True)
    rows = []
    for (i, g, m, floor), per_model in errors.items():
        single, ens = [], []
        for h in labels:
            specs = [s for s in per_model if int(s.split(":", 1)[0]) == h]
            for s in specs:
                single.append((frame_auc(labels[h], per_model[s]),
                               frame_auc(labels[h], [per_clip_minmax(e) for e in per_model[s]])))
            e = [np.mean([per_model[s][c] for s in specs], axis=0) for c in range(len(labels[h]))]
            ens.append((frame_auc(labels[h], e), frame_auc(labels[h], [per_clip_minmax(x) for x in e])))
        r = {"intensity_score": i, "grad_score": g, "motion_score": m, "score_floor": floor}
        for name, runs in (("single", single), ("ensemble", ens)):
            raw, pc = [a for a, _ in runs], [b for _, b in runs]
            r.update({f"{name}_raw_mean": round(float(np.mean(raw)), 4), f"{name}_raw_min": round(float(np.min(raw)), 4),
                      f"{name}_per_clip_mean": round(float(np.mean(pc)), 4),
                      f"{name}_per_clip_min": round(float(np.min(pc)), 4),
                      f"{name}_runs": [[round(a, 4), round(b, 4)] for a, b in runs]})
        rows.append(r)
    rows.sort(key=lambda r: -(r["ensemble_raw_mean"] + r["ensemble_per_clip_mean"]))
    print(json.dumps({"models": args.model, "kinds": sorted(kinds), "rows": rows}))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", required=True, metavar="H:PATH",
                    help="a model fitted with the last H training clips held back")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--kinds", default="mixed,late,most,faint,busy", help="synthetic clip kinds to pool (comma-separated)")
    ap.add_argument("--motion", action="store_true", help="measure the frame-difference motion term instead")
    ap.add_argument("--defaults-only", action="store_true",
                    help="only the engine's default scoring (to compare training variants: seeds, ema, ...)")
    ap.add_argument("--ensemble", action="store_true",
                    help="average the default frame scores of every subset of the models of each protocol (seeds)")
    ap.add_argument("--terms", action="store_true",
                    help="future_frame's gradient and motion error terms in the score, single models and seed ensembles")
    ap.add_argument("--cache", type=Path, default=None, help="with --terms: keep each model's term errors in this folder")
    ap.add_argument("--score", action="append", default=[], metavar="KEY=VALUE",
                    help="with --ensemble: a scoring setting other than the default (e.g. smooth=2, smooth_mode=causal)")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    if args.ensemble:
        return ensemble_report(args)
    if args.terms:
        return terms_report(args)
    from anomaly_gui.core.video_io import clips_from_items
    from anomaly_gui.engines.base import Engine, RunContext
    from anomaly_gui.evaluation.video import read_split

    train = clips_from_items(read_split(args.data, "train"))
    table: dict[tuple, list[dict]] = {}
    for spec in args.model:
        h, path = spec.split(":", 1)
        eng = Engine.load(Path(path), device="cpu")
        held = train[-int(h):]
        kinds = set(args.kinds.split(","))
        clips = [c for k, f in enumerate(eng._load(held, RunContext())) for c in ped2_like_clips(f, seed=k)
                 if c[0] in kinds]
        if args.motion:
            rows_ = motion_rows(eng, eng._load(train[:-int(h)], RunContext()), clips)
            keys = ("motion", "motion_weight")
        else:  # every pixel error, each with its own mean training error per pixel
            fit_frames, rows_ = eng._load(train[:-int(h)], RunContext()), []
            d = type(eng).Params()
            grid = {k: [getattr(d, k)] for k in CANDIDATES} if args.defaults_only else CANDIDATES
            for pe in [d.pixel_error] if args.defaults_only else PIXEL_ERRORS:
                eng.params = dataclasses.replace(eng.params, pixel_error=pe)
                eng._calibrate(fit_frames, RunContext())
                rows_ += [{"pixel_error": pe, **r} for r in evaluate_candidates(eng, clips, grid)]
            keys = ("pixel_error", *CANDIDATES)
        for row in rows_:
            key = tuple((k, row[k]) for k in keys)
            table.setdefault(key, []).append({"model": spec, "raw": row["raw"], "per_clip": row["per_clip"]})
        print(json.dumps({"model": spec, "done": True}), file=sys.stderr, flush=True)
    rows = []
    for key, runs in table.items():
        raw = [r["raw"] for r in runs]
        pc = [r["per_clip"] for r in runs]
        rows.append({**dict(key), "raw_mean": round(float(np.mean(raw)), 4), "raw_min": round(float(np.min(raw)), 4),
                     "per_clip_mean": round(float(np.mean(pc)), 4), "per_clip_min": round(float(np.min(pc)), 4),
                     "both_mean": round(float(np.mean(raw) + np.mean(pc)) / 2, 4),
                     "runs": [[round(r["raw"], 4), round(r["per_clip"], 4)] for r in runs]})
    rows.sort(key=lambda r: -r["both_mean"])
    print(json.dumps({"models": args.model, "n_candidates": len(rows), "best": rows[0], "candidates": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
