"""Convolutional autoencoder engine (MVTec AD paper / Bergmann et al.): train on normal patches, score by residual."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from anomaly_gui.core.errors import ModelFileError
from anomaly_gui.core.formats.base import DatasetItem
from anomaly_gui.engines.autoencoder.model import CompactCAE, PretrainedEncoderAE, reconstruction_loss, residual_map
from anomaly_gui.engines.backbones import backbone_names
from anomaly_gui.engines.base import RunContext, Task, param, register_engine
from anomaly_gui.engines.image_data import ImageEngine, as_items, autocast, gaussian_blur, load_all, require_images


@dataclass
class AutoencoderParams:
    architecture: str = param("compact", "compact CAE trained from scratch, or a frozen pretrained encoder",
                              choices=["compact", "pretrained"])
    color: str = param("gray", "work on grayscale or RGB images", choices=["gray", "rgb"])
    loss: str = param("ssim", "training loss", choices=["ssim", "ms-ssim", "mse", "l2"])
    residual: str = param("ssim", "anomaly map: 1 - SSIM or squared error", choices=["ssim", "l2"])
    image_size: int = param(256, "images are resized to this square size", minimum=32, maximum=1024, step=16)
    patch_size: int = param(128, "training/scoring patch side (multiple of 16; = image size for whole images)",
                            minimum=32, maximum=1024, step=16)
    epochs: int = param(50, "passes over the training images (one random patch per image and pass)",
                        minimum=1, maximum=10000)
    train_instances: int = param(0, "if > 0: train on this many random patches in total instead of epochs",
                                 minimum=0, maximum=10_000_000)
    latent_dim: int = param(100, "bottleneck size (compact CAE)", minimum=2, maximum=2048)
    width: int = param(32, "base number of filters", minimum=8, maximum=256, advanced=True)
    learning_rate: float = param(2e-4, "Adam learning rate", minimum=1e-6, maximum=1e-1, advanced=True)
    weight_decay: float = param(1e-5, "Adam weight decay", minimum=0.0, maximum=1e-2, advanced=True)
    augment: bool = param(True, "random flips and 90-degree rotations of the training patches")
    backbone: str = param("mobilenet_v2", "encoder of the pretrained variant", choices=backbone_names(), advanced=True)
    weights: str = param("", "weights file or folder for the pretrained encoder", advanced=True)
    sigma: float = param(2.0, "Gaussian smoothing of the residual map (pixels)", minimum=0.0, maximum=16.0)
    batch_size: int = param(16, "patches per batch", minimum=1, maximum=1024)
    precision: str = param("fp32", "bf16/fp16 autocast on CUDA", choices=["fp32", "bf16", "fp16"])
    seed: int = param(0, "random seed", advanced=True)


@register_engine
class AutoencoderEngine(ImageEngine):
    name = "autoencoder"
    task = Task.IMAGE
    Params = AutoencoderParams
    title = "Convolutional autoencoder (SSIM)"
    description = ("Learns to reconstruct normal patches; defects are what it cannot reconstruct (SSIM or L2 "
                   "residual). The right choice for fine regular textures when no pretrained CNN suits the "
                   "material (it trains from scratch; the pretrained-encoder variant trains only the decoder) and "
                   "for pixel-level residual maps; it needs minutes of training and is no choice for objects in "
                   "varying poses (MVTec screw: chance). engines/autoencoder/README.md has the figures.")
    rank = 2
    needs = frozenset({"normal_images"})

    def __init__(self, params: Any | None = None, device: str = "auto", **overrides: Any) -> None:
        super().__init__(params, device, **overrides)
        p = self.params
        if p.patch_size % 16:
            raise ValueError(f"patch_size must be a multiple of 16; got {p.patch_size}")
        if p.patch_size > p.image_size:
            raise ValueError(f"patch_size {p.patch_size} is larger than image_size {p.image_size}")
        self.model: torch.nn.Module | None = None

    def channels(self) -> int:
        return 1 if self.params.color == "gray" else 3

    def _build(self) -> torch.nn.Module:
        p = self.params
        if p.architecture == "pretrained":
            model: torch.nn.Module = PretrainedEncoderAE(self.channels(), p.backbone, weights=p.weights or None,
                                                         width=p.width)
        else:
            model = CompactCAE(self.channels(), p.patch_size, p.latent_dim, p.width)
        return model.to(self.device)

    def _augment(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if torch.rand(1, generator=gen).item() < 0.5:
            x = x.flip(-1)
        if torch.rand(1, generator=gen).item() < 0.5:
            x = x.flip(-2)
        k = int(torch.randint(4, (1,), generator=gen))
        return torch.rot90(x, k, dims=(-2, -1)) if k else x

    def _random_patches(self, data: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
        p = self.params.patch_size
        side = data.shape[-1]
        idx = torch.randint(len(data), (n,), generator=gen)
        if p >= side:
            return data[idx]
        ys = torch.randint(side - p + 1, (n,), generator=gen)
        xs = torch.randint(side - p + 1, (n,), generator=gen)
        return torch.stack([data[i, :, y:y + p, x:x + p] for i, y, x in zip(idx.tolist(), ys.tolist(), xs.tolist())])

    def fit(self, items: Sequence[DatasetItem], ctx: RunContext | None = None) -> None:
        ctx = ctx or RunContext()
        items = as_items(items)
        require_images(items, 1, "the autoencoder")
        p = self.params
        t0 = time.perf_counter()
        torch.manual_seed(p.seed)
        gen = torch.Generator().manual_seed(p.seed)
        data = load_all(items, p.image_size, self.channels(), ctx)  # uint8 on the CPU
        self.model = self._build()
        params = [q for q in self.model.parameters() if q.requires_grad]
        opt = torch.optim.Adam(params, lr=p.learning_rate, weight_decay=p.weight_decay)
        per_epoch = len(items)
        total = p.train_instances if p.train_instances > 0 else p.epochs * per_epoch
        epochs = max(1, math.ceil(total / per_epoch))
        seen = 0
        self.model.train()
        for epoch in range(1, epochs + 1):
            n_epoch = min(per_epoch, total - seen)
            losses = []
            for bs in range(0, n_epoch, p.batch_size):
                ctx.check()
                n = min(p.batch_size, n_epoch - bs)
                x = self._random_patches(data, n, gen)
                if p.augment:
                    x = torch.stack([self._augment(xi, gen) for xi in x])
                x = x.to(self.device, non_blocking=True).float().div_(255.0)
                with autocast(self.device, p.precision):
                    y = self.model(x)
                loss = reconstruction_loss(x, y.float(), p.loss)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
            seen += n_epoch
            mean_loss = sum(losses) / max(1, len(losses))
            ctx.log({"epoch": epoch, "loss": mean_loss})
            ctx.progress(epoch, epochs, f"epoch {epoch}/{epochs}, loss {mean_loss:.4f}")
        self.model.eval()
        self.fitted = True
        self.stats.update({"image_size": p.image_size, "n_train": len(items), "epochs": epochs,
                           "train_instances": seen, "final_loss": mean_loss,
                           "fit_seconds": round(time.perf_counter() - t0, 3)})

    def _reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Whole images, or overlapping patches (stride patch/2) averaged back together."""
        assert self.model is not None
        p = self.params.patch_size
        n, c, h, w = x.shape
        if p >= h and p >= w:
            return self.model(x).float()
        stride = p // 2
        cols = F.unfold(x, p, stride=stride)  # (n, c*p*p, L)
        L = cols.shape[-1]
        patches = cols.transpose(1, 2).reshape(n * L, c, p, p)
        rec = torch.cat([self.model(patches[i:i + 256]).float() for i in range(0, len(patches), 256)])
        rec_cols = rec.reshape(n, L, c * p * p).transpose(1, 2)
        ones = torch.ones_like(x[:1, :1])
        count = F.fold(F.unfold(ones, p, stride=stride), (h, w), p, stride=stride)
        return F.fold(rec_cols, (h, w), p, stride=stride) / count.clamp_min(1)

    def _score_batch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_tiling(x)
        rec = self._reconstruct(x)
        m = residual_map(x.float(), rec, self.params.residual).unsqueeze(1)
        m = gaussian_blur(m, self.params.sigma)[:, 0]
        return m.flatten(1).max(1).values, m

    def _check_tiling(self, x: torch.Tensor) -> None:
        p, s = self.params.patch_size, x.shape[-1]
        if p < s and (s - p) % (p // 2):
            raise ValueError(f"image_size {s} must be patch_size {p} plus a multiple of {p // 2} for tiling")

    def export_module(self) -> torch.nn.Module:
        """A traceable module with this model's scores and maps, for `engines.deploy.export_model`."""
        if self.model is None:
            raise RuntimeError("nothing to export: the autoencoder is not trained")
        from anomaly_gui.engines.autoencoder.export import AutoencoderExport

        p = self.params
        self._check_tiling(torch.empty(1, 1, p.image_size, p.image_size))
        return AutoencoderExport(self.model, p.image_size, p.patch_size, p.residual, p.sigma)

    def state_tensors(self) -> dict[str, Any]:
        if self.model is None:
            raise RuntimeError("nothing to save: the autoencoder is not trained")
        if isinstance(self.model, PretrainedEncoderAE):
            return {f"model.{k}": v for k, v in self.model.trainable_state().items()}
        return {f"model.{k}": v for k, v in self.model.state_dict().items()}

    def load_state_tensors(self, tensors: dict[str, Any]) -> None:
        self.model = self._build()
        sd = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        strict = not isinstance(self.model, PretrainedEncoderAE)
        try:
            missing, unexpected = self.model.load_state_dict(sd, strict=strict)
        except RuntimeError as exc:
            raise ModelFileError(f"autoencoder weights do not fit its parameters ({str(exc).splitlines()[0]})") from exc
        if not strict and (unexpected or any(not k.startswith("encoder.") for k in missing)):
            raise ModelFileError("autoencoder weights do not fit the pretrained-encoder variant")
        self.model.eval()
