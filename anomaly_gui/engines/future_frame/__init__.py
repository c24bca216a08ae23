"""Future-frame prediction (Liu et al., "Future Frame Prediction for Anomaly Detection - A New Baseline",
CVPR 2018), for a CPU: a small U-Net predicts frame t from frames t-k..t-1, trained on normal clips with an
intensity (L2) + gradient loss; a frame that cannot be predicted (something moves as nothing did in training)
has a low PSNR. The frame score is the paper's PSNR with each pixel's squared prediction error first divided by
its mean on the training clips (plus a floor, `score_floor`: places that are always hard count less), in dB:
10*log10 of the geometric mean of the frame's sum of normalised squared errors and the mean of their 64 largest 16x16
box sums, smoothed over time by a centred Gaussian (sigma 2 frames: it reads 8 frames ahead; decision 0033), fused
(0.3 / 0.7, each standardised on the training frames) with an appearance term: each frame's ImageNet MobileNetV2 patch
features against a coreset memory of the training frames' patches (PatchCore's, `video_common/appearance.py`; a bike
or a skater looks unlike the walkers even at a walker's speed; decision 0036; `appearance_weight=0`: the predictor
alone).
Options (decision 0026): a motion error (`motion_score`: the predicted change since the last input frame against
the real one, in size) and a gradient error (`grad_score`) in the score, a motion loss (`motion_weight`) in
training; (decision 0029) an optical-flow speed term (`flow_weight`: OpenCV's DIS flow, each row's speed against
the training clips', `video_common/flow.py`) fused with the prediction error. It uses no statistic of the scored clip, so one threshold fits every clip of a camera;
on the dB scale the papers' per-clip min-max normalisation also works (README.md here: what was measured and
how the defaults were chosen on held-back training clips).

Liu et al. add an optical-flow loss and an adversarial loss (about +0.03 frame AUC on Ped2 in their ablation);
both are left out here: FlowNet needs weights we do not have offline (a classical flow is not differentiable, so it
enters the score instead: `flow_weight`), and a GAN doubles the CPU cost.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.formats.base import DatasetItem
from anomaly_gui.core.metrics.video import per_clip_minmax
from anomaly_gui.core.protocol import ClipScores
from anomaly_gui.core.video_io import Clip, clips_from_items
from anomaly_gui.engines.base import RunContext, Stopwatch, param, register_engine
from anomaly_gui.engines.future_frame.model import (
    PredictorUNet,
    gradient_loss,
    gradient_magnitude,
    motion_loss,
    motion_magnitude,
)
from anomaly_gui.engines.video_common import VideoAEEngine, VideoAEParams
from anomaly_gui.engines.video_common.appearance import (
    APPEARANCE_SCALES,
    APPEARANCE_STATS,
    AppearanceModel,
    frame_statistic,
    parse_layers,
)
from anomaly_gui.engines.video_common.base import FRAME_ERRORS, FRAME_SCALES, smooth_scores
from anomaly_gui.engines.video_common.data import load_clip_frames
from anomaly_gui.engines.video_common.flow import SpeedModel, box_mean, flow_speeds

FLOW_SCALE_KEY = "future_frame.flow_row_scale"  # the speed model's per-row reference, beside the networks' tensors
APPEARANCE_BANK_KEY = "future_frame.appearance_bank"  # the appearance term's memory of training patches
TERM_STATS = ("predictor_train_mean", "predictor_train_std", "speed_train_mean", "speed_train_std", "speed_seconds",
              "appearance_train_mean", "appearance_train_std", "appearance_seconds")


@dataclass
class FutureFrameParams(VideoAEParams):
    # defaults chosen on training clips only (benchmarks/choose_video_defaults.py; README.md here says how)
    width: int = param(48, "frame width the model sees (frames are resized; 48x32 beat 64x48 on held-back training "
                       "clips and trains 2.6x faster)", minimum=16, maximum=1024, step=16)
    height: int = param(32, "frame height the model sees", minimum=16, maximum=1024, step=16)
    epochs: int = param(15, "most passes over the training clips (held-back quality flat from about epoch 10 of "
                        "250 windows); early stopping or max_windows may end sooner", minimum=1, maximum=1000)
    max_windows: int = param(4000, "stop after about this many training windows (whole epochs): ~15 epochs of the "
                             "3 shared Ped2 clips, 2 of all 16; 0: no cap", minimum=0, maximum=10_000_000, advanced=True)
    past: int = param(4, "past frames the next one is predicted from (paper: 4)", minimum=1, maximum=16)
    grad_weight: float = param(1.0, "weight of the gradient (sharpness) loss beside the L2 intensity loss (paper: 1)",
                               minimum=0.0, maximum=10.0, advanced=True)
    motion_weight: float = param(0.0, "weight of the motion loss: |x^ - last input frame| against |x - last input frame| "
                                 "per pixel (a motion constraint without a flow network; 0: off)",
                                 minimum=0.0, maximum=10.0, advanced=True)
    grad_score: float = param(0.0, "frame score: add this weight x the gradient error per pixel (|grad x^| against "
                              "|grad x|, squared like the intensity error) to the intensity error (held-back training "
                              "clips: lower with it at every weight and floor; 0: off)",
                              minimum=0.0, maximum=10.0, step=0.25, advanced=True)
    motion_score: float = param(0.0, "frame score: add this weight x the motion error per pixel (|x^ - last input "
                                "frame| against |x - last|, squared like the intensity error: a change of the wrong "
                                "size, e.g. a cyclist's) to the intensity error (0: off; held-back training clips "
                                "favour 2 with score_floor 0.002, the shared test clips fell: decision 0026)",
                                minimum=0.0, maximum=10.0, step=0.25, advanced=True)
    frame_error: str = param("sum_and_box", "frame score: the geometric mean of the frame's sum of normalised squared "
                             "errors (Liu et al.'s PSNR) and its largest score_box box (local: a busy normal frame does "
                             "not outrank a calm one with a cyclist); or either alone. Chosen on held-back training "
                             "clips (engines/future_frame/README.md)", choices=list(FRAME_ERRORS))
    frame_scale: str = param("log", "frame score scale: dB (10*log10, as PSNR) or linear. Same raw ranking; the dB "
                             "scale keeps one clip's spike from squashing its other frames under per-clip min-max "
                             "normalisation (held-back training clips: per-clip AUC 0.972 vs 0.958)",
                             choices=list(FRAME_SCALES), advanced=True)
    score_box: int = param(16, "box for the frame score with max_box / sum_and_box (16 at 48x32: a third of the width; "
                           "held-back clips: 8 and 12 within 0.003)", minimum=0, maximum=128, advanced=True)
    ensemble: int = param(3, "seed ensemble: train this many models (seeds seed, seed+1, ...) one after another and "
                          "average their frame scores (dB) and maps. Held-back training clips: 3 models raise the "
                          "worst seed's raw AUC 0.887 -> 0.918 and the mean 0.945 -> 0.951, at 3x the fit time "
                          "(engines/future_frame/README.md); 1: one model", minimum=1, maximum=8)
    flow_weight: float = param(0.0, "frame score: share of the optical-flow speed (DIS flow; each row's box speed "
                               "against the training clips' 99th percentile at that row, in dB) beside the prediction "
                               "error, both standardised by their training mean and spread; 0: the prediction error "
                               "alone, 1: speed alone. Held-back training clips favour 0.8 (raw AUC 0.956 -> 0.989), "
                               "the shared test clips fell (0.906 -> 0.870): off, decision 0029",
                               minimum=0.0, maximum=1.0, step=0.1)
    flow_box: int = param(16, "box (at flow resolution) whose mean speed is an object's speed", minimum=1, maximum=128,
                          advanced=True)
    flow_width: int = param(180, "frame width the optical flow is computed at (Ped2: half its 360)", minimum=16,
                            maximum=2048, step=4, advanced=True)
    flow_height: int = param(120, "frame height the optical flow is computed at", minimum=16, maximum=2048, step=4,
                             advanced=True)
    score_topk: int = param(64, "frame score: the box term is the mean of this many largest score_box box sums (1: the "
                            "largest box, before decision 0033; held-back training clips: 1 and 64 within 0.002)",
                            minimum=1, maximum=1024, advanced=True)
    smooth: float = param(2.0, "temporal Gaussian smoothing of frame scores, sigma in frames (0: none). Held-back "
                          "training clips, seed ensembles: centred sigma 2 raises per-clip AUC 0.944 -> 0.963 at equal "
                          "raw (0.949 / 0.948); causal smoothing lowers both (decision 0033)", minimum=0.0, maximum=50.0,
                          advanced=True)
    flip_average: bool = param(False, "test-time flip: average each prediction with the prediction of the mirrored "
                               "frames, mirrored back (twice the scoring time; training unchanged). Held-back training "
                               "clips: raw AUC 0.948 -> 0.954, per-clip 0.964 -> 0.954 (decision 0033)", advanced=True)
    pixel_error: str = param("squared", "pixel error: (x - x^)^2, what PSNR measures, or |x - x^| (held-back training "
                             "clips, chosen score: raw AUC 0.945 squared vs 0.935 abs)",
                             choices=["squared", "abs"], advanced=True)
    appearance_weight: float = param(0.7, "frame score: share of the appearance term (ImageNet MobileNetV2 patch "
                                     "features of each frame against a coreset memory of the training frames' patches, "
                                     "PatchCore's; a bike, cart or skater looks unlike the walkers even at a walker's "
                                     "speed) beside the prediction error, both standardised on the training frames "
                                     "(the appearance term leave-clips-out). Held-back training clips: raw AUC 0.926 -> "
                                     "0.967, per-clip 0.947 -> 0.979, the normal held-back clip 2.1 -> 0.3 sd above the "
                                     "training frames (decision 0036); 0: the prediction error alone (needs no ImageNet "
                                     "weights)", minimum=0.0, maximum=1.0, step=0.05)
    appearance_layers: str = param("features.6,features.13", "MobileNetV2 layers of the appearance term's patch "
                                   "features (comma-separated)", advanced=True)
    appearance_width: int = param(360, "frame width the appearance term sees (Ped2's native 360)", minimum=32,
                                  maximum=2048, step=8, advanced=True)
    appearance_height: int = param(240, "frame height the appearance term sees", minimum=32, maximum=2048, step=8,
                                   advanced=True)
    appearance_bank: int = param(2048, "patches kept in the appearance memory (greedy coreset)", minimum=16,
                                 maximum=1_000_000, advanced=True)
    appearance_frames: int = param(200, "training frames (spread evenly over the clips) whose patches the memory is "
                                   "chosen from", minimum=1, maximum=100_000, advanced=True)
    appearance_stat: str = param("max", "appearance frame score: the largest patch distance or the mean of the 4 "
                                 "largest", choices=list(APPEARANCE_STATS), advanced=True)
    appearance_scale: str = param("linear", "appearance frame score scale: the distance or 10*log10 of it (dB)",
                                  choices=list(APPEARANCE_SCALES), advanced=True)


@register_engine
class FutureFrameEngine(VideoAEEngine):
    name = "future_frame"
    title = "Future-frame prediction (Liu 2018)"
    description = ("A U-Net predicts each frame from the 4 before it; what moves unlike anything in training is "
                   "predicted badly; fused with how unlike the training frames each frame looks (ImageNet patch "
                   "features, decision 0036). Offered first: on held-back Ped2 training clips with synthetic anomalies, raw "
                   "frame AUC 0.971 / 0.954 vs 0.844 / 0.804 for the stacked-frame AE, in less fit time "
                   "(engines/future_frame/README.md).")
    rank = 0
    Params = FutureFrameParams
    # files from before the seed ensemble hold one model (their tensors say so too); files from before the error
    # terms and floors score the intensity error alone over the 0.02 floor (their pixel means were made so)
    params_before_they_existed = {**VideoAEEngine.params_before_they_existed, "ensemble": 1, "motion_weight": 0.0,
                                  "grad_score": 0.0, "motion_score": 0.0, "flow_weight": 0.0, "score_topk": 1,
                                  "flip_average": False, "appearance_weight": 0.0}  # before 0036: no appearance term

    def __init__(self, params: Any | None = None, device: str = "auto", **overrides: Any):
        super().__init__(params, device, **overrides)
        self.speed: SpeedModel | None = None  # with flow_weight > 0: the training clips' speeds per row
        self.appearance: AppearanceModel | None = None  # with appearance_weight > 0: the memory of training patches
        self._train_speed: np.ndarray | None = None  # the training frames' terms at the last calibration (not saved)
        self._train_appearance: np.ndarray | None = None
        #: with the appearance term: the training frames' fused scores, each clip against a memory without it (what
        #: an unseen normal clip gives; the stored training scores are lower, their patches are in the memory)
        self.unseen_train_scores: np.ndarray | None = None

    @property
    def window(self) -> int:
        return int(self.params.past) + 1

    def build_module(self) -> nn.Module:
        return PredictorUNet(int(self.params.past))

    def training_loss(self, x: torch.Tensor) -> torch.Tensor:
        k = int(self.params.past)
        pred, target = self._require()(x[:, :k]), x[:, k:]
        loss = torch.nn.functional.mse_loss(pred, target)
        if self.params.grad_weight > 0:
            loss = loss + float(self.params.grad_weight) * gradient_loss(pred, target)
        if self.params.motion_weight > 0:
            loss = loss + float(self.params.motion_weight) * motion_loss(pred, target, x[:, k - 1 : k])
        return loss

    def window_errors(self, x: torch.Tensor) -> tuple[torch.Tensor, int]:
        """Per-pixel intensity error of the predicted frame, plus `grad_score` x its gradient error and
        `motion_score` x its motion error (each in the same units: squared or absolute, [0, 1] gray)."""
        k = int(self.params.past)
        pred, target = self._predict(x[:, :k]), x[:, k:]
        err = self._pixel_error(pred, target)
        if self.params.grad_score > 0:
            err += float(self.params.grad_score) * self._pixel_error(gradient_magnitude(pred), gradient_magnitude(target))
        if self.params.motion_score > 0:
            last = x[:, k - 1 : k]
            err += float(self.params.motion_score) * self._pixel_error(motion_magnitude(pred, last),
                                                                       motion_magnitude(target, last))
        return err, k

    def _predict(self, past: torch.Tensor) -> torch.Tensor:
        """The predicted next frame; with `flip_average`, averaged with the prediction of the mirrored past frames
        mirrored back (test-time flip: scoring only, training never sees it)."""
        module = self._require()
        pred = module(past)
        if self.params.flip_average:
            pred = 0.5 * (pred + module(past.flip(-1)).flip(-1))
        return pred

    @torch.no_grad()
    def reconstruct(self, frames, start: int = 0):  # type: ignore[override]
        """The predicted frame start+past as (1, H, W) in [0, 255] (for display)."""
        k = int(self.params.past)
        y = self._predict(self._batch([frames], [(0, start)])[:, :k])[0]
        return ((y.clamp(-1, 1) + 1.0) * 127.5).cpu().numpy()

    # -- frame terms beside the prediction error: optical-flow speed (0029), appearance (0036) ---------
    @property
    def uses_flow(self) -> bool:
        return float(self.params.flow_weight) > 0

    @property
    def uses_appearance(self) -> bool:
        return float(self.params.appearance_weight) > 0

    @property
    def flow_size(self) -> tuple[int, int]:
        return (int(self.params.flow_width), int(self.params.flow_height))

    @property
    def appearance_size(self) -> tuple[int, int]:
        return (int(self.params.appearance_width), int(self.params.appearance_height))

    def fit(self, items: Sequence[DatasetItem], ctx: RunContext | None = None) -> None:
        ctx = ctx or RunContext()
        clock = Stopwatch()
        super().fit(items, ctx)
        self._calibrate_terms(clips_from_items(items), ctx)
        self.stats["fit_seconds"] = clock.seconds

    def calibrate(self, items: Sequence[DatasetItem], ctx: RunContext | None = None) -> None:
        ctx = ctx or RunContext()
        super().calibrate(items, ctx)
        self._calibrate_terms(clips_from_items(items), ctx)

    def _calibrate_terms(self, clips: list[Clip], ctx: RunContext) -> None:
        """With flow_weight or appearance_weight > 0: learn that term's model from the training clips, the training
        mean and spread of every fused term, and the default threshold of the fused score; otherwise forget them."""
        for key in TERM_STATS:
            self.stats.pop(key, None)
        self.unseen_train_scores = None
        if float(self.params.flow_weight) + float(self.params.appearance_weight) > 1.0 + 1e-9:
            raise DataError("<parameters>", f"flow_weight ({self.params.flow_weight}) + appearance_weight "
                                            f"({self.params.appearance_weight}) must not exceed 1")
        self.speed = self._fit_speed(clips, ctx) if self.uses_flow else None
        self.appearance = self._fit_appearance(clips, ctx) if self.uses_appearance else None
        if not (self.uses_flow or self.uses_appearance):
            return
        pred = self.train_frame_errors
        n = 0 if pred is None else len(pred)
        terms = {"predictor": pred}
        if self.uses_flow:
            terms["speed"] = self._train_speed
        if self.uses_appearance:
            terms["appearance"] = self._train_appearance
        for key, e in terms.items():
            if e is None or len(e) != n:
                raise DataError("<training set>", f"{0 if e is None else len(e)} training frames read for the {key} "
                                                  f"term, {n} for the predictor")
            self.stats.update({f"{key}_train_mean": float(e.mean()), f"{key}_train_std": float(e.std())})
        fused = self._fuse(pred, terms.get("speed"), terms.get("appearance"))
        self.unseen_train_scores = fused if self.uses_appearance else None
        self.stats.update({"train_error_mean": float(fused.mean()), "train_error_std": float(fused.std()),
                           "train_error_max": float(fused.max()), "raw_threshold": float(np.quantile(fused, 0.99))})

    def _fit_speed(self, clips: list[Clip], ctx: RunContext) -> SpeedModel:
        """Each row's reference speed from the training clips (the flow runs once); keeps their frame scores."""
        clock = Stopwatch()
        frames = [self._flow_frames(c, ctx) for c in clips]
        ctx.progress(0, 1, "optical flow of the training clips")
        boxes = [box_mean(flow_speeds(f), int(self.params.flow_box)) for f in frames]
        speed = SpeedModel.from_box_speeds(boxes, int(self.params.flow_box))
        self._train_speed = np.concatenate([speed.scores_of_box_speeds(b) for b in boxes])
        ctx.progress(1, 1, "optical flow of the training clips")
        self.stats["speed_seconds"] = clock.seconds
        return speed

    def _fit_appearance(self, clips: list[Clip], ctx: RunContext) -> AppearanceModel:
        """The memory of training patches (decision 0036); keeps the training frames' (smoothed) scores, each clip's
        measured against a memory chosen without it (what an unseen normal clip gives)."""
        clock = Stopwatch()
        p = self.params
        frames = [self._appearance_frames(c, ctx) for c in clips]
        ctx.progress(0, 2, "appearance memory of the training frames")
        model = self._new_appearance()
        held_out = model.fit(frames, int(p.appearance_frames), ctx.check)  # each clip against a memory without it
        self._train_appearance = np.concatenate([
            smooth_scores(frame_statistic(d, model.stat, model.scale), p) for d in held_out])
        ctx.progress(2, 2, "appearance of the training frames")
        self.stats["appearance_seconds"] = clock.seconds
        return model

    def _new_appearance(self) -> AppearanceModel:
        p = self.params
        return AppearanceModel(parse_layers(p.appearance_layers), int(p.appearance_bank), str(p.appearance_stat),
                               str(p.appearance_scale), int(p.seed))

    def _flow_frames(self, clip: Clip, ctx: RunContext) -> np.ndarray:
        return load_clip_frames(clip, self.flow_size, ctx)

    def _appearance_frames(self, clip: Clip, ctx: RunContext) -> np.ndarray:
        return load_clip_frames(clip, self.appearance_size, ctx)

    def _fuse(self, pred: np.ndarray, speed: np.ndarray | None = None,
              appearance: np.ndarray | None = None) -> np.ndarray:
        """(1 - w_flow - w_appearance) x the prediction error's z-score + w_flow x the speed's + w_appearance x the
        appearance term's, each against the training frames (a term whose weight is 0 is left out)."""
        st = self.stats

        def z(e: np.ndarray, key: str) -> np.ndarray:
            return (e - st[f"{key}_train_mean"]) / max(float(st[f"{key}_train_std"]), 1e-6)

        wf = float(self.params.flow_weight) if self.uses_flow else 0.0
        wa = float(self.params.appearance_weight) if self.uses_appearance else 0.0
        out = (1.0 - wf - wa) * z(pred, "predictor")
        if wf:
            out = out + wf * z(speed, "speed")
        if wa:
            out = out + wa * z(appearance, "appearance")
        return out.astype(np.float32)

    def score_clip(self, clip: Clip, ctx: RunContext | None = None) -> ClipScores:
        ctx = ctx or RunContext()
        frames = self._load([clip], ctx)[0]
        speed = self.speed_scores(self._flow_frames(clip, ctx), clip.name) if self.uses_flow else None
        look = self.appearance_scores(self._appearance_frames(clip, ctx), clip.name, ctx) if self.uses_appearance else None
        return self.score_frames(frames, clip.name, ctx, speed=speed, appearance=look)

    def speed_scores(self, flow_frames: np.ndarray, name: str = "") -> np.ndarray:
        """The speed term (dB) of every frame of a clip given at flow resolution."""
        if self.speed is None:
            raise DataError(name or "<clip>", "flow_weight > 0 but this model has no speed statistics: calibrate it "
                                              "on its training clips first")
        return self.speed.frame_scores(flow_frames)

    def appearance_scores(self, frames: np.ndarray, name: str = "", ctx: RunContext | None = None) -> np.ndarray:
        """The appearance term of every frame of a clip given at appearance resolution, smoothed as the score."""
        if self.appearance is None:
            raise DataError(name or "<clip>", "appearance_weight > 0 but this model has no appearance memory: "
                                              "calibrate it on its training clips first")
        return smooth_scores(self.appearance.frame_scores(frames, (ctx or RunContext()).check), self.params)

    def score_frames(self, frames: np.ndarray, name: str = "", ctx: RunContext | None = None,  # type: ignore[override]
                     speed: np.ndarray | None = None, appearance: np.ndarray | None = None) -> ClipScores:
        """As the other video engines; with flow_weight > 0 `speed` (from `speed_scores`), with appearance_weight > 0
        `appearance` (from `appearance_scores`) is fused in."""
        cs = super().score_frames(frames, name, ctx)
        if not (self.uses_flow or self.uses_appearance):
            return cs
        for used, term, what in ((self.uses_flow, speed, "speed"), (self.uses_appearance, appearance, "appearance")):
            if used and (term is None or len(term) != len(frames)):
                raise DataError(name or "<clip>", f"{what} term on: it needs the {what} of each of the {len(frames)} "
                                                  f"frames (got {None if term is None else len(term)}): score with "
                                                  f"score_clip")
        errors = self._fuse(cs.errors, speed, appearance)
        scores = per_clip_minmax(errors) if self.params.normalise else errors.copy()
        return dataclasses.replace(cs, errors=errors, scores=scores)

    def state_tensors(self) -> dict[str, Any]:
        out = super().state_tensors()
        if self.speed is not None:
            out[FLOW_SCALE_KEY] = torch.from_numpy(self.speed.row_scale)
        if self.appearance is not None:
            out[APPEARANCE_BANK_KEY] = self.appearance.bank.detach().cpu().contiguous()
        return out

    def load_state_tensors(self, tensors: dict[str, Any]) -> None:
        tensors = dict(tensors)
        scale = tensors.pop(FLOW_SCALE_KEY, None)
        bank = tensors.pop(APPEARANCE_BANK_KEY, None)
        super().load_state_tensors(tensors)
        self.speed = None if scale is None else SpeedModel(torch.as_tensor(scale).numpy().astype(np.float32),
                                                           int(self.params.flow_box))
        self.appearance = None
        if bank is not None:  # the backbone is loaded from the local ImageNet weights, the memory from the file
            self.appearance = self._new_appearance()
            self.appearance.set_bank(torch.as_tensor(bank).float())
