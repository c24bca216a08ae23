"""The training loop of the video engines, made for a CPU (issue 15):

- every clip is decoded once (clips in parallel threads: OpenCV releases the GIL) and cached as one float
  tensor in [-1, 1] at model resolution, so a batch is an index + stack, never a decode or a conversion;
- the last `val_fraction` of every clip's windows (after a gap of one window, so no frame is shared) is
  held out; its loss is measured after every epoch and training stops when it has not improved for
  `patience` epochs (by at least 1 %: a plateau creeping down by 0.1 % an epoch is not worth the CPU);
  the weights of the best epoch are kept;
- `max_windows` caps the training windows seen (whole epochs, at least one): quality follows the number of
  steps, not of passes, so a training set ten times larger needs about a tenth of the epochs. `epochs` is a ceiling, and the number of
  epochs it took (`best_epoch`) is measured on every run and stored with the model;
- optionally (issue 13, seed spread) the learning rate decays on a cosine over the planned steps, and the
  weights validated, kept and returned are an exponential moving average of the training weights
  (`ema`: decay per step; batch-norm statistics averaged alike), which is less at the mercy of the last batches.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from anomaly_gui.core.video_io import Clip
from anomaly_gui.engines.base import RunContext
from anomaly_gui.engines.video_common.data import load_clip_frames, window_starts

MIN_REL_IMPROVEMENT = 0.01  # a held-out loss less than 1 % below the best so far does not reset the patience
MIN_VAL_WINDOWS = 8  # fewer held-out windows than this: no validation (all windows train, fixed epochs)
LR_SCHEDULES = ("constant", "cosine")
Ref = tuple[int, int]  # (clip index, window start)


def decode_clips(clips: Sequence[Clip], size: tuple[int, int], ctx: RunContext, threads: int = 2) -> list[np.ndarray]:
    """(T, H, W) uint8 frames of every clip at `size`, clips decoded in parallel threads, in order."""
    total = sum(len(c) for c in clips)
    if len(clips) <= 1 or threads <= 1:
        out, done = [], 0
        for c in clips:
            out.append(load_clip_frames(c, size, ctx, done, total))
            done += len(out[-1])
        return out
    done = {"n": 0}

    def one(c: Clip) -> np.ndarray:
        f = load_clip_frames(c, size, RunContext(is_cancelled=ctx.is_cancelled))
        done["n"] += len(f)
        ctx.progress(done["n"], total, f"decoded {c.name}")
        return f

    with ThreadPoolExecutor(max_workers=min(threads, len(clips))) as pool:
        return list(pool.map(one, clips))


def to_tensors(frames: Sequence[np.ndarray], device: torch.device | str) -> list[torch.Tensor]:
    """Cache every clip once as a float tensor in [-1, 1] on the training device."""
    return [torch.from_numpy(f).to(device).float().mul_(2.0 / 255.0).sub_(1.0) for f in frames]


def split_windows(lengths: Sequence[int], window: int, val_fraction: float) -> tuple[list[Ref], list[Ref]]:
    """(training refs, validation refs): the last `val_fraction` of each clip's windows validate; the windows
    just before them that would share a frame with them are dropped."""
    train: list[Ref] = []
    val: list[Ref] = []
    for ci, n in enumerate(lengths):
        starts = window_starts(n, window, 1)
        k = int(round(len(starts) * val_fraction)) if val_fraction > 0 else 0
        if k <= 0:
            train += [(ci, s) for s in starts]
            continue
        first_val = starts[-k]
        val += [(ci, s) for s in starts[-k:]]
        train += [(ci, s) for s in starts[:-k] if s + window <= first_val]
    if len(val) < MIN_VAL_WINDOWS:
        return [(ci, s) for ci, n in enumerate(lengths) for s in window_starts(n, window, 1)], []
    return train, val


def stack_windows(clips: Sequence[torch.Tensor], refs: Sequence[Ref], window: int) -> torch.Tensor:
    """(B, window, H, W) from the cached clip tensors."""
    return torch.stack([clips[ci][s : s + window] for ci, s in refs])


@dataclass
class TrainResult:
    history: list[float] = field(default_factory=list)  # training loss per epoch
    val_history: list[float] = field(default_factory=list)  # held-out loss per epoch (empty: no validation)
    best_epoch: int = 0
    stopped_early: bool = False
    n_train_windows: int = 0
    n_val_windows: int = 0


def epochs_for(n_windows: int, epochs: int, max_windows: int) -> int:
    """Epochs to run: `epochs`, fewer when `max_windows` (> 0) training windows are seen sooner (a big training
    set needs fewer passes for the same number of steps), at least one."""
    if max_windows <= 0 or n_windows <= 0:
        return epochs
    return max(1, min(epochs, math.ceil(max_windows / n_windows)))


class WeightAverage:
    """Exponential moving average of a module's floating-point parameters and buffers (decay per step)."""

    def __init__(self, module: torch.nn.Module, decay: float):
        self.module, self.decay = module, float(decay)
        self.state = {k: v.detach().clone() for k, v in module.state_dict().items()}

    def update(self) -> None:
        with torch.no_grad():
            for k, v in self.module.state_dict().items():
                if v.dtype.is_floating_point:
                    self.state[k].mul_(self.decay).add_(v.detach(), alpha=1.0 - self.decay)
                else:
                    self.state[k].copy_(v)

    def swapped_in(self) -> dict[str, torch.Tensor]:
        """Load the averaged weights into the module; returns the training weights to put back."""
        current = copy.deepcopy(self.module.state_dict())
        self.module.load_state_dict(self.state)
        return current


def train_loop(module: torch.nn.Module, loss_fn: Callable[[torch.Tensor], torch.Tensor], clips: Sequence[torch.Tensor],
               window: int, *, epochs: int, batch_size: int, lr: float, patience: int, val_fraction: float,
               seed: int, ctx: RunContext, max_windows: int = 0, lr_schedule: str = "constant",
               ema: float = 0.0) -> TrainResult:
    """Adam on `loss_fn(batch)` over every window; early stopping on held-out windows (see module doc)."""
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, not {lr_schedule!r}")
    train, val = split_windows([len(c) for c in clips], window, val_fraction if patience > 0 else 0.0)
    res = TrainResult(n_train_windows=len(train), n_val_windows=len(val))
    epochs = epochs_for(len(train), epochs, max_windows)
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(module.parameters(), lr=lr)
    steps = math.ceil(len(train) / batch_size)
    total = max(1, epochs * steps)
    avg = WeightAverage(module, ema) if ema > 0 else None
    best, ref, best_state, since = math.inf, math.inf, None, 0
    for epoch in range(epochs):
        module.train()
        order = rng.permutation(len(train))
        run_loss, n = 0.0, 0
        for b in range(steps):
            ctx.check()
            if lr_schedule == "cosine":
                for g in opt.param_groups:
                    g["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * (epoch * steps + b) / total))
            x = stack_windows(clips, [train[k] for k in order[b * batch_size : (b + 1) * batch_size]], window)
            loss = loss_fn(x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if avg is not None:
                avg.update()
            run_loss += float(loss.detach()) * len(x)
            n += len(x)
            ctx.progress(epoch * steps + b + 1, epochs * steps, f"epoch {epoch + 1}/{epochs}")
        res.history.append(run_loss / max(n, 1))
        entry: dict[str, float] = {"epoch": epoch + 1, "loss": res.history[-1]}
        training_weights = avg.swapped_in() if avg is not None else None  # validate (and keep) the average
        if val:
            res.val_history.append(validation_loss(module, loss_fn, clips, val, window, batch_size, ctx))
            entry["val_loss"] = res.val_history[-1]
            v = res.val_history[-1]
            if v < best:
                best, res.best_epoch = v, epoch + 1
                best_state = copy.deepcopy(module.state_dict())
            if v < ref * (1.0 - MIN_REL_IMPROVEMENT):
                ref, since = v, 0
            else:
                since += 1
        else:
            res.best_epoch = epoch + 1
            if avg is not None:
                best_state = copy.deepcopy(module.state_dict())
        if training_weights is not None:
            module.load_state_dict(training_weights)
        ctx.log(entry)
        if val and since >= patience:
            res.stopped_early = epoch + 1 < epochs
            break
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    return res


@torch.no_grad()
def validation_loss(module: torch.nn.Module, loss_fn: Callable[[torch.Tensor], torch.Tensor], clips: Sequence[torch.Tensor],
                    refs: Sequence[Ref], window: int, batch_size: int, ctx: RunContext) -> float:
    module.eval()
    total, n = 0.0, 0
    for b in range(0, len(refs), batch_size):
        ctx.check()
        x = stack_windows(clips, refs[b : b + batch_size], window)
        total += float(loss_fn(x)) * len(x)
        n += len(x)
    return total / max(n, 1)
