"""Training and scoring loop shared by the reconstruction autoencoders for video.

A subclass gives `build_module()` returning a torch module mapping (B, T, H, W) frames in [-1, 1] to a
reconstruction of the same shape, and its window length T (1 for a single-frame model). Everything else
(clip grouping, windows, L2 training, per-frame errors, regularity, pixel maps, device, save/load) is here.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.metrics.video import per_clip_minmax
from anomaly_gui.core.formats.base import DatasetItem
from anomaly_gui.core.video_io import Clip, clips_from_items
from anomaly_gui.engines.base import (
    ClipScores,
    Engine,
    RunContext,
    ScoreResult,
    Stopwatch,
    Task,
    param,
)
from anomaly_gui.engines.video_common.data import window_starts
from anomaly_gui.engines.video_common.training import LR_SCHEDULES, decode_clips, to_tensors, train_loop
from anomaly_gui.engines.video_common.postprocess import box_sum

FRAME_ERRORS = ("sum", "max_box", "sum_and_box")
PIXEL_NORMS = ("none", "divide")
PIXEL_ERRORS = ("abs", "squared")
FRAME_SCALES = ("linear", "log")
SMOOTH_MODES = ("causal", "centred")
PIXEL_MEAN_KEY = "video_common.pixel_mean"  # stored beside the module's tensors
PIXEL_MEAN_EPS = 0.02  # in [0, 1] gray units: keeps near-perfect places from exploding (`score_floor` and `map_floor` default)
MEMBER_PREFIX = "ensemble.{}."  # tensors of ensemble member 2, 3, ...; member 1 keeps the plain keys (old files: one)


@dataclass
class VideoAEParams:
    width: int = param(96, "frame width the model sees (frames are resized)", minimum=16, maximum=1024, step=16)
    height: int = param(64, "frame height the model sees", minimum=16, maximum=1024, step=16)
    epochs: int = param(20, "passes over the training clips", minimum=1, maximum=1000)
    batch_size: int = param(16, "windows per training step", minimum=1, maximum=512)
    lr: float = param(1e-3, "Adam learning rate", minimum=1e-6, maximum=1.0, advanced=True)
    time_flip: float = param(0.0, "share of training windows played backwards (people walk both ways, so a reversed "
                             "normal clip is normal motion: more motion seen per clip; 0: off)", minimum=0.0,
                             maximum=1.0, step=0.1, advanced=True)
    lr_schedule: str = param("constant", "learning rate over the planned steps: constant, or a cosine decay to 0",
                             choices=list(LR_SCHEDULES), advanced=True)
    ema: float = param(0.0, "keep an exponential moving average of the weights (decay per step, e.g. 0.95); the "
                       "average is validated and kept, which makes runs of different seeds agree more (0: off)",
                       minimum=0.0, maximum=0.999, step=0.01, advanced=True)
    box: int = param(4, "pixel map: |input - reconstruction| summed over a box of this size", minimum=1, maximum=64)
    frame_error: str = param("max_box", "frame error: the largest box sum (local; chosen on training clips, "
                             "benchmarks/choose_video_defaults.py), the sum of pixel errors (paper), or the geometric "
                             "mean of the two", choices=list(FRAME_ERRORS))
    score_box: int = param(0, "box for the frame score with max_box (0: same as box); object-sized boxes are less noisy",
                           minimum=0, maximum=128, advanced=True)
    frame_scale: str = param("linear", "frame error scale: the box error itself, or 10*log10 of it (dB, as PSNR in Liu et "
                             "al. 2018). Same ranking of frames, so the raw AUC is unchanged; a clip's min-max "
                             "normalisation and the smoothing then work on dB, where one huge spike does not squash "
                             "every other frame of the clip to zero", choices=list(FRAME_SCALES), advanced=True)
    smooth: float = param(0.0, "temporal Gaussian smoothing of frame errors, sigma in frames (0: none)", minimum=0.0,
                          maximum=50.0, advanced=True)
    smooth_mode: str = param("centred", "smoothing window: causal (past frames only, half-Gaussian: a live camera can "
                             "use it) or centred (past and future frames: offline only)", choices=list(SMOOTH_MODES),
                             advanced=True)
    pixel_norm: str = param("divide", "divide pixel errors by their mean on the training clips (places that are always "
                            "hard to reconstruct count less)", choices=list(PIXEL_NORMS), advanced=True)
    score_floor: float = param(PIXEL_MEAN_EPS, "with pixel_norm=divide, for the frame score: the floor added to each "
                               "pixel's mean training error before dividing by it, in gray units in [0, 1] (squared "
                               "with the squared error); a lower floor lets places that are always easy count more",
                               minimum=0.0001, maximum=1.0, step=0.001, advanced=True)
    map_floor: float = param(PIXEL_MEAN_EPS, "with pixel_norm=divide, for the pixel maps (overlay, regions, pixel "
                             "threshold): the same floor; kept at 0.02, where a map's peak stays on the anomaly also "
                             "after a short training (a lower one lifts places the training clips never saw move)",
                             minimum=0.0001, maximum=1.0, step=0.001, advanced=True)
    normalise: bool = param(False, "per-clip regularity normalisation s(t)=1-(e-min)/(max-min) (paper); it uses the "
                            "scored clip's own min and max, so it is off by default (a live camera has neither)")
    patience: int = param(3, "early stopping: stop when the loss on held-out training windows has not improved for this "
                          "many epochs and keep the best epoch's weights (0: train all epochs, no hold-out)",
                          minimum=0, maximum=100, advanced=True)
    max_windows: int = param(0, "stop after about this many training windows (whole epochs; 0: no cap): a large "
                             "training set needs fewer passes", minimum=0, maximum=10_000_000, advanced=True)
    val_fraction: float = param(0.1, "share of each training clip (its last windows) held out for early stopping",
                                minimum=0.0, maximum=0.5, advanced=True)
    pixel_error: str = param("abs", "pixel error: |x - x^| or (x - x^)^2 (the squared error is what PSNR measures)",
                             choices=list(PIXEL_ERRORS), advanced=True)
    score_stride: int = param(1, "window step when scoring (1 = every frame in every window)", minimum=1, maximum=64, advanced=True)
    seed: int = param(0, "random seed", advanced=True)


LOG_FLOOR = 1e-6  # the log scale's floor, far below any frame error of a trained model


def causal_smooth(e: np.ndarray, sigma: float) -> np.ndarray:
    """Weighted mean of frames t, t-1, ... with half-Gaussian weights exp(-j^2 / 2 sigma^2), j = 0..4 sigma: reads
    no future frame (a live camera can use it); before the first frame the first value is repeated."""
    j = np.arange(int(np.ceil(4 * sigma)) + 1, dtype=np.float64)
    w = np.exp(-0.5 * (j / sigma) ** 2)
    w /= w.sum()
    padded = np.concatenate([np.full(len(j) - 1, e[0]), e])
    return np.convolve(padded, w, mode="valid")


def frame_errors(err: np.ndarray, maps: np.ndarray, params: VideoAEParams) -> np.ndarray:
    """e(t) from per-pixel errors (T, H, W): their sum (the paper), the largest box sum, or the geometric mean of
    the two (a whole-frame and a local term), optionally on a log
    (dB) scale, optionally smoothed in time (causal or centred)."""
    n = len(err)
    total = err.reshape(n, -1).sum(axis=1).astype(np.float64)
    if params.frame_error == "sum":
        e = total
    else:
        k = int(params.score_box) or int(params.box)
        src = maps if k == int(params.box) else box_sum(err, k)
        flat = src.reshape(n, -1)
        top = int(getattr(params, "score_topk", 1))  # future_frame's option: the mean of the `top` largest boxes
        if top > 1:
            e = -np.partition(-flat, min(top, flat.shape[1]) - 1, axis=1)[:, :top].mean(axis=1).astype(np.float64)
        else:
            e = flat.max(axis=1).astype(np.float64)
        if params.frame_error == "sum_and_box":  # geometric mean: in dB, the mean of the frame's and the box's
            e = np.sqrt(np.maximum(e, 0.0) * np.maximum(total, 0.0))
    if getattr(params, "frame_scale", "linear") == "log":
        e = 10.0 * np.log10(np.maximum(e, LOG_FLOOR))
    return smooth_scores(e, params)


def smooth_scores(e: np.ndarray, params: VideoAEParams) -> np.ndarray:
    """Frame scores smoothed in time as `params` say (`smooth` sigma, `smooth_mode` causal or centred; 0: as they are)."""
    if params.smooth > 0 and len(e) > 1:
        if getattr(params, "smooth_mode", "centred") == "causal":
            e = causal_smooth(np.asarray(e, np.float64), float(params.smooth))
        else:
            from scipy.ndimage import gaussian_filter1d

            e = gaussian_filter1d(np.asarray(e, np.float64), float(params.smooth), mode="nearest")
    return np.asarray(e).astype(np.float32)


def average_members(results: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """(frame errors, maps) averaged over ensemble members (one member: itself)."""
    if len(results) == 1:
        return results[0]
    return (np.mean([e for e, _ in results], axis=0).astype(np.float32),
            np.mean([m for _, m in results], axis=0).astype(np.float32))


class VideoAEEngine(Engine):
    """Base of the frame / stacked / ConvLSTM autoencoders (Task.VIDEO)."""

    task = Task.VIDEO
    needs = frozenset({"normal_images", "frames"})
    Params = VideoAEParams
    # files from before issue 13 scored on a linear scale, with the fixed floor of the per-pixel normalisation
    params_before_they_existed = {"frame_scale": "linear", "score_floor": PIXEL_MEAN_EPS, "map_floor": PIXEL_MEAN_EPS}

    def __init__(self, params: Any | None = None, device: str = "auto", **overrides: Any):
        super().__init__(params, device, **overrides)
        self.module: torch.nn.Module | None = None
        self.pixel_mean: np.ndarray | None = None  # (H, W) mean training error per pixel
        # seed ensemble (`ensemble` param): (module, pixel_mean) of members 2..N; member 1 is module / pixel_mean
        self.extra_members: list[tuple[torch.nn.Module, np.ndarray | None]] = []
        self.train_frame_errors: np.ndarray | None = None  # frame errors of the training clips at the last calibration

    # -- for subclasses --------------------------------------------------------------------------
    @property
    def window(self) -> int:
        """Frames per model input."""
        return 1

    def build_module(self) -> torch.nn.Module:
        raise NotImplementedError

    # -- helpers ----------------------------------------------------------------------------------
    @property
    def size(self) -> tuple[int, int]:
        return (int(self.params.width), int(self.params.height))

    def _check_clip_length(self, clip: Clip, n: int) -> None:
        if n < self.window:
            raise DataError(clip.source.path, f"clip {clip.name} has {n} frames, fewer than the {self.window} "
                                              f"frames {self.name} stacks; use a longer clip or a smaller window")

    def _load(self, clips: list[Clip], ctx: RunContext) -> list[np.ndarray]:
        out = decode_clips(clips, self.size, ctx, threads=2)
        for c, frames in zip(clips, out):
            self._check_clip_length(c, len(frames))
        return out

    def _batch(self, frames: list[np.ndarray], refs: Sequence[tuple[int, int]]) -> torch.Tensor:
        w = self.window
        x = np.stack([frames[ci][s : s + w] for ci, s in refs]).astype(np.float32)
        return torch.from_numpy(x).to(self.device).mul_(2.0 / 255.0).sub_(1.0)

    def training_loss(self, x: torch.Tensor) -> torch.Tensor:
        """Loss of one batch of windows (B, window, H, W) in [-1, 1]: L2 reconstruction."""
        return torch.nn.functional.mse_loss(self._require()(x), x)

    def window_errors(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(per-pixel errors (B, n_out, H, W) in [0, 1] gray units, index in the window of the first frame they
        belong to). Autoencoders: every frame of the window, from 0."""
        return self._pixel_error(self._require()(x), x), 0

    def _augmented_loss(self, x: torch.Tensor) -> torch.Tensor:
        """`training_loss`, with a `time_flip` share of the windows played backwards while training (not when
        the held-out windows are measured)."""
        share = float(getattr(self.params, "time_flip", 0.0))
        if share > 0 and self._require().training:
            flip = torch.rand(len(x), device=x.device) < share
            x = torch.where(flip[:, None, None, None], x.flip(1), x)
        return self.training_loss(x)

    def _pixel_error(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        d = (y - x).abs_().mul_(0.5)  # back to [0, 1] units
        return d.square_() if self.params.pixel_error == "squared" else d

    # -- seed ensemble ----------------------------------------------------------------------------
    @property
    def n_members(self) -> int:
        return 1 + len(self.extra_members)

    @contextmanager
    def _as_member(self, i: int) -> Iterator[None]:
        """Within the block, `module` and `pixel_mean` are those of ensemble member i (0: the first)."""
        if i == 0:
            yield
            return
        keep = (self.module, self.pixel_mean)
        self.module, self.pixel_mean = self.extra_members[i - 1]
        try:
            yield
        finally:
            self.extra_members[i - 1] = (self._require(), self.pixel_mean)
            self.module, self.pixel_mean = keep

    @staticmethod
    def _member_context(ctx: RunContext, i: int, n: int) -> RunContext:
        """Progress of member i of n as part of the whole fit; its log keys suffixed after the first member."""
        if n == 1:
            return ctx

        def log(entry: dict[str, Any]) -> None:
            ctx.log(entry if i == 0 else {k if k == "epoch" else f"{k} (model {i + 1})": v for k, v in entry.items()})

        return RunContext(progress=lambda d, t, m: ctx.progress(i * t + d, n * t, f"model {i + 1}/{n}: {m}"),
                          is_cancelled=ctx.is_cancelled, log=log)

    # -- protocol ---------------------------------------------------------------------------------
    def fit(self, items: Sequence[DatasetItem], ctx: RunContext | None = None) -> None:
        """Train `ensemble` models (default 1), seeds seed, seed+1, ... one after another; scores average them."""
        ctx = ctx or RunContext()
        clock = Stopwatch()
        clips = clips_from_items(items)
        if not clips:
            raise DataError("<training set>", "no training frames")
        frames = self._load(clips, ctx)
        tensors = to_tensors(frames, self.device)
        p = self.params
        n = max(1, int(getattr(p, "ensemble", 1)))
        trained: list[tuple[torch.nn.Module, Any]] = []
        for i in range(n):
            seed = int(p.seed) + i
            torch.manual_seed(seed)
            self.module = self.build_module().to(self.device)  # the loss reads self.module
            res = train_loop(self.module, self._augmented_loss, tensors, self.window,
                             epochs=int(p.epochs), batch_size=int(p.batch_size), lr=float(p.lr),
                             patience=int(p.patience), val_fraction=float(p.val_fraction), seed=seed,
                             ctx=self._member_context(ctx, i, n), max_windows=int(p.max_windows),
                             lr_schedule=str(p.lr_schedule), ema=float(p.ema))
            trained.append((self.module, res))
        self.module, res = trained[0]
        self.pixel_mean = None
        self.extra_members = [(m, None) for m, _ in trained[1:]]
        self.stats = {"loss_history": res.history, "val_loss_history": res.val_history, "best_epoch": res.best_epoch,
                      "epochs_run": len(res.history), "stopped_early": res.stopped_early,
                      "n_train_windows": res.n_train_windows, "n_val_windows": res.n_val_windows,
                      "n_models": n, "best_epochs": [r.best_epoch for _, r in trained],
                      "train_seconds": clock.seconds}
        self._calibrate(frames, ctx)
        self.stats["fit_seconds"] = clock.seconds
        self.fitted = True

    def calibrate(self, items: Sequence[DatasetItem], ctx: RunContext | None = None) -> None:
        """Recompute the statistics learnt from normal clips (mean error per pixel, default thresholds) without
        training again, e.g. after changing `box`, `frame_error` or `pixel_norm` of a loaded model."""
        ctx = ctx or RunContext()
        self._require()
        self._calibrate(self._load(clips_from_items(items), ctx), ctx)

    def _calibrate(self, frames: list[np.ndarray], ctx: RunContext) -> None:
        per_member = []
        for i in range(self.n_members):  # each member's own mean error per pixel
            with self._as_member(i):
                raw = [self._clip_raw(f, ctx) for f in frames]
                self.pixel_mean = np.concatenate(raw).mean(axis=0).astype(np.float32)
                per_member.append([self._errors_and_maps(r) for r in raw])
        per_clip = [average_members([m[c] for m in per_member]) for c in range(len(frames))]
        train_errors = np.concatenate([e for e, _ in per_clip])
        self.train_frame_errors = train_errors  # kept for subclasses that add a frame term (not saved)
        map_sample = np.concatenate([m[:, ::2, ::2].ravel() for _, m in per_clip])
        self.stats.update({
            "n_train_frames": int(sum(len(f) for f in frames)),
            "n_train_clips": len(frames),
            "train_error_mean": float(train_errors.mean()),
            "train_error_std": float(train_errors.std()),
            "train_error_max": float(train_errors.max()),
            "raw_threshold": float(np.quantile(train_errors, 0.99)),
            # pixels of normal training frames above this are rare (0.1 %): the default pixel threshold
            "pixel_threshold": float(np.quantile(map_sample, 0.999)),
        })

    def _require(self) -> torch.nn.Module:
        if self.module is None:
            raise RuntimeError(f"{self.name}: not fitted (train it or load a model file)")
        return self.module

    @torch.no_grad()
    def reconstruct(self, frames: np.ndarray, start: int = 0) -> np.ndarray:
        """Reconstruction of frames[start:start+window] as (window, H, W) in [0, 255] (for display)."""
        module = self._require()
        y = module(self._batch([frames], [(0, start)]))[0]
        return ((y.clamp(-1, 1) + 1.0) * 127.5).cpu().numpy()

    def _clip_errors(self, frames: np.ndarray, ctx: RunContext | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(frame errors (T,), raw maps (T, H, W)) of one clip: with an ensemble, the mean over its members
        (frame errors on their scale, dB by default; maps each divided by its member's mean training error)."""
        out = []
        for i in range(self.n_members):
            with self._as_member(i):
                out.append(self._errors_and_maps(self._clip_raw(frames, ctx)))
        return average_members(out)

    def _errors_and_maps(self, err: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(frame errors, pixel maps) from per-pixel errors: each divided by the pixel's mean training error plus
        a floor (`score_floor` for the frame score, `map_floor` for the maps), then pooled."""
        p = self.params

        def divided(floor: float) -> np.ndarray:
            if p.pixel_norm != "divide" or self.pixel_mean is None:
                return err
            return err / (self.pixel_mean + (floor ** 2 if p.pixel_error == "squared" else floor))

        score_err = divided(float(p.score_floor))
        map_err = score_err if p.map_floor == p.score_floor else divided(float(p.map_floor))
        maps = box_sum(map_err, int(p.box))
        score_maps = maps if map_err is score_err else box_sum(score_err, int(p.box))
        return frame_errors(score_err, score_maps, p), maps.astype(np.float32)

    @torch.no_grad()
    def _clip_raw(self, frames: np.ndarray, ctx: RunContext | None = None) -> np.ndarray:
        """Per-pixel errors (T, H, W) in [0, 1] units; a frame seen by several windows averages them, and a
        frame no window predicts (the first frames of a predictor) takes the error of the nearest one that is."""
        self._require()
        ctx = ctx or RunContext()
        n, w = len(frames), self.window
        clip = to_tensors([frames], self.device)[0]
        acc = np.zeros(frames.shape, dtype=np.float32)
        cnt = np.zeros(n, dtype=np.float32)
        starts = window_starts(n, w, int(self.params.score_stride))
        bs = max(1, int(self.params.batch_size))
        for b in range(0, len(starts), bs):
            ctx.check()
            chunk = starts[b : b + bs]
            err, off = self.window_errors(torch.stack([clip[s : s + w] for s in chunk]))
            err = err.cpu().numpy()
            for s, d in zip(chunk, err):
                acc[s + off : s + off + len(d)] += d
                cnt[s + off : s + off + len(d)] += 1
        covered = np.flatnonzero(cnt)
        out = acc / np.maximum(cnt, 1)[:, None, None]
        if len(covered) < n:
            nearest = covered[np.clip(np.searchsorted(covered, np.arange(n)), 0, len(covered) - 1)]
            out = out[nearest]
        return out

    def score_frames(self, frames: np.ndarray, name: str = "", ctx: RunContext | None = None) -> ClipScores:
        """Score one clip given as (T, H, W) uint8 frames at model resolution."""
        if len(frames) < self.window:
            raise DataError(name or "<clip>", f"clip has {len(frames)} frames, fewer than the {self.window} frames {self.name} stacks")
        errors, maps = self._clip_errors(frames, ctx)
        scores = per_clip_minmax(errors) if self.params.normalise else errors.copy()
        return ClipScores(name=name, errors=errors, scores=scores, maps=maps, default_threshold=self.default_threshold(),
                          pixel_threshold=self.stats.get("pixel_threshold"))

    def default_threshold(self) -> float | None:
        """The cut-off for frame scores learnt from the normal training clips: 0.5 on normalised (regularity)
        scores, else the 99th percentile of the training frame errors."""
        return 0.5 if self.params.normalise else self.stats.get("raw_threshold")

    def score_clip(self, clip: Clip, ctx: RunContext | None = None) -> ClipScores:
        frames = self._load([clip], ctx or RunContext())[0]
        return self.score_frames(frames, clip.name, ctx)

    def score(self, items: Sequence[DatasetItem], ctx: RunContext | None = None) -> list[ScoreResult]:
        """One result per item. Frame items get their frame's score and map; a video item gets the maximum
        frame score, the map of that frame, and all frame scores in `extra`."""
        ctx = ctx or RunContext()
        self._require()
        by_path: dict[int, ScoreResult] = {}
        clips = clips_from_items(items)
        total = sum(len(c) for c in clips)
        done = 0
        for clip in clips:
            cs = self.score_clip(clip, ctx)
            if clip.per_frame_items:
                for it, s, e, m in zip(clip.items, cs.scores, cs.errors, cs.maps):
                    by_path[id(it)] = ScoreResult(score=float(s), map=m, extra={"frame_error": float(e), "clip": clip.name})
            else:
                k = int(np.argmax(cs.scores))
                by_path[id(clip.items[0])] = ScoreResult(
                    score=float(cs.scores[k]), map=cs.maps[k], frame_scores=cs.scores.tolist(),
                    extra={"frame_errors": cs.errors.tolist(), "peak_frame": k,
                           "clip": clip.name, "problems": [str(p) for p in clip.source.problems]})
            done += len(clip)
            ctx.progress(done, total, f"scored {clip.name}")
        return [by_path[id(it)] for it in items]

    def state_tensors(self) -> dict[str, Any]:
        """Member 1's tensors under their plain keys (as before ensembles), member i >= 2's under `ensemble.i.`."""
        out: dict[str, Any] = {}
        for i in range(self.n_members):
            prefix = "" if i == 0 else MEMBER_PREFIX.format(i + 1)
            with self._as_member(i):
                out.update({prefix + k: v.detach().cpu() for k, v in self._require().state_dict().items()})
                if self.pixel_mean is not None:
                    out[prefix + PIXEL_MEAN_KEY] = torch.from_numpy(self.pixel_mean)
        return out

    def load_state_tensors(self, tensors: dict[str, Any]) -> None:
        groups: dict[int, dict[str, Any]] = {}
        for key, v in tensors.items():
            i = 1
            if key.startswith("ensemble."):
                num, key = key[len("ensemble."):].split(".", 1)
                i = int(num)
            groups.setdefault(i, {})[key] = v
        if sorted(groups) != list(range(1, len(groups) + 1)):
            raise DataError("<model file>", f"{self.name}: ensemble members {sorted(groups)} are not 1..{len(groups)}")
        members = []
        for i in sorted(groups):
            group = groups[i]
            pm = group.pop(PIXEL_MEAN_KEY, None)
            module = self.build_module()
            module.load_state_dict({k: torch.as_tensor(v) for k, v in group.items()})
            members.append((module.to(self.device).eval(),
                            None if pm is None else torch.as_tensor(pm).numpy().astype(np.float32)))
        (self.module, self.pixel_mean), self.extra_members = members[0], members[1:]
