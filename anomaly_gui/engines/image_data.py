"""Shared image loading, resizing and batching for the product-image engines.

Images are read with `core.imageio.read_image` (any depth, gray/RGB/RGBA, EXIF), converted to gray or RGB,
resized to the engine's square input (area interpolation when shrinking), and batched as float tensors in
[0, 1]. A `torch.utils.data.DataLoader` does the decoding, with worker processes and pinned memory when
the engine runs on a GPU, so the GPU is kept fed. An unreadable image never stops a scoring run: its slot
carries the error (`Batch.errors`), and training refuses it with a `DataError` naming the file.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import cv2
import numpy as np
import torch

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.formats.base import DatasetItem
from anomaly_gui.core.imageio import read_image, to_gray8, to_rgb8
from anomaly_gui.engines.base import Engine, RunContext, ScoreResult

log = logging.getLogger(__name__)


def as_items(items: Sequence[DatasetItem | str | Path]) -> list[DatasetItem]:
    """Accept DatasetItems or plain paths."""
    return [it if isinstance(it, DatasetItem) else DatasetItem(path=str(it)) for it in items]


def load_image(path: str | Path, size: int | tuple[int, int], channels: int = 3) -> tuple[np.ndarray, tuple[int, int]]:
    """(uint8 array HxWxC resized to `size`, original (width, height)). `size`: side or (width, height).

    A JPEG at least twice the target size is decoded at reduced scale (libjpeg's DCT scaling, 1/2 to 1/8):
    several times faster, and the result is then area-resized as usual."""
    w, h = (size, size) if isinstance(size, int) else size
    reduced = _read_jpeg_reduced(path, w, h) if str(path).lower().endswith((".jpg", ".jpeg")) else None
    if reduced is not None:
        img, (w0, h0) = reduced
    else:
        img = read_image(path)
        h0, w0 = img.shape[:2]
    arr = to_gray8(img)[:, :, None] if channels == 1 else to_rgb8(img)
    if arr.shape[:2] != (h, w):
        interp = cv2.INTER_AREA if w < arr.shape[1] or h < arr.shape[0] else cv2.INTER_LINEAR
        arr = cv2.resize(arr, (w, h), interpolation=interp)
        if arr.ndim == 2:
            arr = arr[:, :, None]
    return np.ascontiguousarray(arr), (w0, h0)


def _read_jpeg_reduced(path: str | Path, w: int, h: int) -> tuple[np.ndarray, tuple[int, int]] | None:
    """(pixels decoded at the smallest DCT scale still >= (w, h), EXIF orientation applied; the full
    oriented (width, height)), or None when the file is not a plain 8-bit JPEG at least twice the target."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            if im.format != "JPEG" or im.mode not in ("L", "RGB"):
                return None
            w0, h0 = im.size
            swap = im.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # rotated by 90 degrees once oriented
            tw, th = (h, w) if swap else (w, h)
            if w0 < 2 * tw or h0 < 2 * th:
                return None
            im.draft(im.mode, (tw, th))
            im.load()
            im = ImageOps.exif_transpose(im)
            return np.asarray(im), ((h0, w0) if swap else (w0, h0))
    except Exception:  # anything unusual: the full decoder gives the file's own error message
        return None


class _ImageSet(torch.utils.data.Dataset):
    def __init__(self, paths: Sequence[str], size: int | tuple[int, int], channels: int) -> None:
        self.paths = list(paths)
        self.size = size
        self.channels = channels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int, int, str]:
        w, h = (self.size, self.size) if isinstance(self.size, int) else self.size
        try:
            arr, (w0, h0) = load_image(self.paths[i], self.size, self.channels)
        except DataError as exc:
            # a plain tuple crosses worker processes; the error is raised or reported by the caller
            return torch.zeros(self.channels, h, w, dtype=torch.uint8), i, 0, 0, str(exc)
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous(), i, w0, h0, ""


@dataclass
class Batch:
    images: torch.Tensor  # (N, C, H, W) float in [0, 1] on the target device
    indices: list[int]  # positions in the item list
    sizes: list[tuple[int, int]]  # original (width, height), (0, 0) where the image failed
    errors: list[str]  # "" or the DataError text


def default_workers(device: torch.device) -> int:
    """Decoding processes: none on CPU (the cores are busy with the model), some on a GPU."""
    if device.type != "cuda":
        return 0
    return max(0, min(8, (os.cpu_count() or 2) - 1))


def iter_batches(items: Sequence[DatasetItem | str | Path], size: int | tuple[int, int], channels: int, batch_size: int,
                 device: torch.device, ctx: RunContext | None = None, num_workers: int | None = None,
                 strict: bool = False, message: str = "scoring") -> Iterator[Batch]:
    """Decoded, resized batches on `device` (pinned memory + non-blocking copies on CUDA).

    On the CPU, a small thread pool decodes the next batches while the caller computes on the current one
    (the decoders and cv2 release the GIL); on a GPU, DataLoader worker processes do.
    Calls ctx.check() between batches and ctx.progress after each. strict: raise DataError on a bad image.
    """
    ctx = ctx or RunContext()
    paths = [it.path for it in as_items(items)]
    workers = default_workers(device) if num_workers is None else num_workers
    cuda = device.type == "cuda"
    dataset = _ImageSet(paths, size, channels)
    if not cuda and num_workers is None:
        batches: Iterator[Any] = _threaded_batches(dataset, max(1, batch_size))
    else:
        batches = iter(torch.utils.data.DataLoader(
            dataset, batch_size=max(1, batch_size), shuffle=False, num_workers=workers,
            pin_memory=cuda, persistent_workers=False, prefetch_factor=4 if workers else None,
        ))
    done = 0
    for images, idx, w0, h0, errs in batches:
        ctx.check()
        errors = list(errs)
        if strict:
            for e in errors:
                if e:
                    raise DataError(e.split(": ", 1)[0], e.split(": ", 1)[-1])
        x = images.to(device, non_blocking=cuda).float().div_(255.0)
        done += len(idx)
        yield Batch(x, [int(i) for i in idx], list(zip(w0.tolist(), h0.tolist())), errors)
        ctx.progress(done, len(paths), f"{message} {done}/{len(paths)}")


def decode_threads() -> int:
    """Threads that decode images on the CPU path (`ANOMALY_GUI_DECODE_THREADS`, default 2)."""
    try:
        return max(1, int(os.environ.get("ANOMALY_GUI_DECODE_THREADS", "2")))
    except ValueError:
        return 2


def _threaded_batches(dataset: "_ImageSet", batch_size: int, ahead: int = 2) -> Iterator[tuple]:
    """Collated batches like a DataLoader's, decoded by a thread pool `ahead` batches in advance."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    n = len(dataset)
    starts = list(range(0, n, batch_size))
    with ThreadPoolExecutor(max_workers=decode_threads(), thread_name_prefix="decode") as pool:
        pending: deque = deque()

        def submit(k: int) -> None:
            s = starts[k]
            pending.append([pool.submit(dataset.__getitem__, i) for i in range(s, min(n, s + batch_size))])

        for k in range(min(ahead, len(starts))):
            submit(k)
        for k in range(len(starts)):
            if k + ahead < len(starts):
                submit(k + ahead)
            rows = [f.result() for f in pending.popleft()]
            yield (torch.stack([r[0] for r in rows]), torch.tensor([r[1] for r in rows]),
                   torch.tensor([r[2] for r in rows]), torch.tensor([r[3] for r in rows]), [r[4] for r in rows])


def load_all(items: Sequence[DatasetItem | str | Path], size: int | tuple[int, int], channels: int,
             ctx: RunContext | None = None) -> torch.Tensor:
    """All images as one uint8 tensor (N, C, H, W) on the CPU (training sets are small); strict."""
    ctx = ctx or RunContext()
    its = as_items(items)
    out = []
    for k, it in enumerate(its):
        ctx.check()
        arr, _ = load_image(it.path, size, channels)
        out.append(torch.from_numpy(arr).permute(2, 0, 1))
        ctx.progress(k + 1, len(its), f"loading images {k + 1}/{len(its)}")
    if not out:
        raise ValueError("no images")
    return torch.stack(out)


def require_images(items: Sequence[object], minimum: int, engine: str) -> None:
    """A clear message when there are too few training images."""
    if len(items) < minimum:
        raise ValueError(f"{engine} needs at least {minimum} normal training image(s); got {len(items)}")


def upsample_map(m: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, 1, h, w) -> (N, 1, H, W) bilinear, `size` = (H, W)."""
    if tuple(m.shape[-2:]) == tuple(size):
        return m
    return torch.nn.functional.interpolate(m, size=size, mode="bilinear", align_corners=False)


@functools.lru_cache(maxsize=32)
def _upsample_blur_operator(n_in: int, n_out: int, sigma: float, mode: str) -> torch.Tensor:
    """(n_out, n_in): 1-D bilinear upsampling (align_corners=False) followed by the Gaussian of
    `gaussian_blur`, as one matrix (both are linear and the 2-D versions are separable)."""
    eye = torch.eye(n_in, dtype=torch.float64).view(n_in, 1, 1, n_in)
    cols = upsample_map(eye, (1, n_out))  # (n_in, 1, 1, n_out)
    if sigma > 0:
        radius = int(round(4 * sigma))
        x = torch.arange(-radius, radius + 1, dtype=torch.float64)
        k = torch.exp(-(x**2) / (2 * sigma**2))
        k = k / k.sum()
        cols = torch.nn.functional.pad(cols.view(n_in, 1, n_out), (radius, radius), mode=mode)
        cols = torch.nn.functional.conv1d(cols, k.view(1, 1, -1))
    return cols.reshape(n_in, n_out).t().float().contiguous()


def upsample_blur(patch: torch.Tensor, size: tuple[int, int], sigma: float) -> torch.Tensor:
    """(N, h, w) patch maps -> (N, H, W): `gaussian_blur(upsample_map(.), sigma)` computed as A_v @ M @ A_h^T.

    Same result as the two-step version (to float rounding), without a per-pixel convolution: on the CPU
    about two orders of magnitude less work for a 32x32 grid upsampled to 256x256 with sigma 4."""
    H, W = size
    h, w = patch.shape[-2:]
    mode = "reflect" if int(round(4 * sigma)) < min(H, W) else "replicate"  # as gaussian_blur
    a_v = _upsample_blur_operator(h, H, float(sigma), mode).to(patch.device, patch.dtype)
    a_h = a_v if (h, H) == (w, W) else _upsample_blur_operator(w, W, float(sigma), mode).to(patch.device, patch.dtype)
    return a_v @ patch @ a_h.t()


def gaussian_blur(m: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, 1, H, W) maps (kernel 2*round(4 sigma)+1, reflect padding)."""
    if sigma <= 0:
        return m
    radius = int(round(4 * sigma))
    x = torch.arange(-radius, radius + 1, device=m.device, dtype=m.dtype)
    k = torch.exp(-(x**2) / (2 * sigma**2))
    k = k / k.sum()
    pad = torch.nn.functional.pad
    mode = "reflect" if radius < min(m.shape[-2:]) else "replicate"
    m = pad(m, (radius, radius, 0, 0), mode=mode)
    m = torch.nn.functional.conv2d(m, k.view(1, 1, 1, -1))
    m = pad(m, (0, 0, radius, radius), mode=mode)
    return torch.nn.functional.conv2d(m, k.view(1, 1, -1, 1))


# -- the shared part of image engines --------------------------------------------------------------------


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16/fp16 autocast on CUDA when asked; full precision otherwise (CPU always fp32)."""
    if device.type == "cuda" and precision in ("bf16", "fp16"):
        return torch.autocast("cuda", dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
    return contextlib.nullcontext()


def is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


class ImageEngine(Engine):
    """Base of the product-image engines: batching, OOM back-off, maps at model resolution.

    Subclasses implement `_fit(images_iter...)` via `fit` and `_score_batch(x) -> (scores (N,), maps (N, H, W))`
    on the device, with `self.params.image_size`, `batch_size` and optionally `precision`.
    """

    #: input channels (1 gray, 3 RGB); subclasses may derive it from params
    def channels(self) -> int:
        return 3

    def input_size(self) -> int:
        return int(self.params.image_size)

    def _precision(self) -> str:
        return str(getattr(self.params, "precision", "fp32"))

    def _score_batch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _score_safe(self, x: torch.Tensor, ctx: RunContext) -> tuple[torch.Tensor, torch.Tensor]:
        """_score_batch under no_grad/autocast with CUDA out-of-memory back-off."""

        def run(part: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            with torch.no_grad(), autocast(self.device, self._precision()):
                s, m = self._score_batch(part)
            return s.float(), m.float()

        parts = self.with_backoff(run, x, ctx)
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def with_backoff(self, fn: Any, x: torch.Tensor, ctx: RunContext) -> list[Any]:
        """[fn(x)], or on a CUDA out-of-memory error fn over halves of x (recursively), remembering the
        smaller batch for the rest of the run and saying so in the log."""
        try:
            return [fn(x)]
        except RuntimeError as exc:
            if not (self.device.type == "cuda" and is_oom(exc)) or len(x) == 1:
                raise
            torch.cuda.empty_cache()
            half = max(1, len(x) // 2)
            self._batch_override = half
            msg = f"GPU out of memory at batch {len(x)}; going on with batch {half}"
            log.warning(msg)
            ctx.log({"message": msg})
            out: list[Any] = []
            for i in range(0, len(x), half):
                out += self.with_backoff(fn, x[i:i + half], ctx)
            return out

    def batch_size(self) -> int:
        return int(getattr(self, "_batch_override", 0) or self.params.batch_size)

    def score(self, items: Sequence[DatasetItem], ctx: RunContext | None = None) -> list[ScoreResult]:
        """Scores and raw maps (model resolution, float32) per item; an unreadable image gets score None
        and its error in `error`."""
        if not self.fitted:
            raise RuntimeError(f"{self.name}: train the model before scoring")
        ctx = ctx or RunContext()
        items = as_items(items)
        out: list[ScoreResult] = [ScoreResult() for _ in items]
        for batch in iter_batches(items, self.input_size(), self.channels(), self.batch_size(), self.device, ctx):
            scores, maps = self._score_safe(batch.images, ctx)
            scores_np = scores.cpu().numpy()
            maps_np = maps.cpu().numpy().astype(np.float32, copy=False)
            for j, i in enumerate(batch.indices):
                if batch.errors[j]:
                    out[i] = ScoreResult(score=None, error=str(batch.errors[j]))
                else:
                    out[i] = ScoreResult(score=float(scores_np[j]), map=maps_np[j],
                                         image_size=(int(batch.sizes[j][0]), int(batch.sizes[j][1])))
        return out

    def score_tensor(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Model-only scoring of a preprocessed batch already on the device (benchmarks)."""
        return self._score_safe(x, RunContext())
