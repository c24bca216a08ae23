"""Memory-augmented autoencoder (Gong et al., "Memorizing Normality to Detect Anomaly: Memory-augmented Deep
Autoencoder for Unsupervised Anomaly Detection", ICCV 2019), for a CPU: a 3D-convolutional autoencoder over windows
of `window` frames whose encoding is rebuilt from a memory of `memory_slots` normal prototypes before decoding, so
an anomaly cannot be reconstructed by generalisation. Trained with L2 + `entropy_weight` x the entropy of the memory
attention (sparse addressing). Scoring is the shared video loop's (`video_common/base.py`): the squared error over
each pixel's training mean, the largest 16x16 box, in dB, chosen on held-back training clips (README.md here).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from anomaly_gui.engines.base import param, register_engine
from anomaly_gui.engines.memae.model import MemAE, entropy
from anomaly_gui.engines.video_common import VideoAEEngine, VideoAEParams
from anomaly_gui.engines.video_common.base import FRAME_ERRORS, FRAME_SCALES


@dataclass
class MemAEParams(VideoAEParams):
    width: int = param(48, "frame width the model sees (frames are resized; divisible by 16)", minimum=16, maximum=1024,
                       step=16)
    height: int = param(32, "frame height the model sees (divisible by 16)", minimum=16, maximum=1024, step=16)
    window: int = param(8, "frames per input window (the paper: 16; divisible by 8)", minimum=8, maximum=64, step=8)
    epochs: int = param(15, "most passes over the training clips; early stopping or max_windows may end sooner",
                        minimum=1, maximum=1000)
    batch_size: int = param(4, "windows per training step: the memory's output starts near its mean, and the loss stays on "
                            "that plateau for about 80 steps (Train001 alone: batch 16 still there after 8 epochs, "
                            "batch 4 down 8x after 4), so small batches", minimum=1, maximum=512)
    max_windows: int = param(4000, "stop after about this many training windows (whole epochs; 0: no cap)", minimum=0,
                             maximum=10_000_000, advanced=True)
    memory_slots: int = param(500, "normal prototypes in the memory (the paper: 2,000 with 256-channel encodings)",
                              minimum=2, maximum=10_000)
    shrink: float = param(0.0025, "hard shrinkage: memory weights under this are set to 0 (the paper's code: 0.0025)",
                          minimum=0.0, maximum=0.5, step=0.0005, advanced=True)
    entropy_weight: float = param(0.0002, "weight of the memory attention's entropy in the loss (the paper: 0.0002)",
                                  minimum=0.0, maximum=1.0, step=0.0001, advanced=True)
    pixel_error: str = param("squared", "pixel error: (x - x^)^2 or |x - x^|", choices=["squared", "abs"], advanced=True)
    frame_error: str = param("max_box", "frame score: the largest score_box box of normalised errors (chosen on held-back "
                             "training clips, README.md here), the frame's sum, or the geometric mean of the two",
                             choices=list(FRAME_ERRORS))
    frame_scale: str = param("log", "frame score scale: dB (10*log10) or linear (same raw ranking)",
                             choices=list(FRAME_SCALES), advanced=True)
    score_box: int = param(16, "box for the frame score with max_box / sum_and_box", minimum=0, maximum=128,
                           advanced=True)


@register_engine
class MemAEEngine(VideoAEEngine):
    name = "memae"
    title = "Memory-augmented autoencoder (Gong 2019)"
    description = ("A 3D-conv autoencoder that rebuilds each window from a memory of normal prototypes, so what was "
                   "never seen reconstructs badly. An alternative to the predictor; measured in engines/memae/README.md.")
    rank = 4  # measured below the other video engines on the shared test clips (README.md)
    Params = MemAEParams

    @property
    def window(self) -> int:
        return int(self.params.window)

    def build_module(self) -> nn.Module:
        return MemAE(slots=int(self.params.memory_slots), shrink=float(self.params.shrink))

    def training_loss(self, x: torch.Tensor) -> torch.Tensor:
        module = self._require()
        loss = torch.nn.functional.mse_loss(module(x), x)
        weights = module.memory.last_weights
        if self.params.entropy_weight > 0 and weights is not None:
            loss = loss + float(self.params.entropy_weight) * entropy(weights)
        return loss
