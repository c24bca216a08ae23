"""The embedding network (CNN encoder + projection head), contrastive losses and augmentations.

Pure torch: `EmbeddingNet` holds the modules; the training loop lives in `engine.py`.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from anomaly_gui.core.errors import WeightsUnavailableError

MOBILENET_V2_FILE = "mobilenet_v2-b0353104.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def find_mobilenet_weights(explicit: str = "") -> Path:
    """The ImageNet MobileNetV2 file, found by the shared loader (`engines.backbones`: explicit path,
    $ANOMALY_GUI_WEIGHTS, ~/.anomaly_gui/weights, torch's cache, ../shared/weights). Never downloads;
    raises WeightsUnavailableError saying where it looked."""
    from anomaly_gui.engines import backbones

    if explicit and not Path(explicit).expanduser().exists():
        raise WeightsUnavailableError(f"{explicit}: weights file or folder not found")
    found = backbones.find_weights("mobilenet_v2", explicit or None)
    if found is None:
        places = ", ".join(str(p) for p in backbones.search_locations(explicit or None))
        raise WeightsUnavailableError(
            f"ImageNet MobileNetV2 weights ({MOBILENET_V2_FILE}) not found offline; looked in: {places}. "
            "Put the file in one of these places, set the weights path, or untick 'pretrained'.")
    return found


class EmbeddingNet(nn.Module):
    """MobileNetV2 features -> global average pool (1280-d representation) -> MLP projection head.

    `classifier` keeps the ImageNet head (1280 -> 1000); it is never trained and only serves the
    class-agnostic animal crops (`animal_crop.py`)."""

    feature_dim = 1280

    def __init__(self, projection_dim: int = 128, hidden_dim: int = 512):
        super().__init__()
        from torchvision.models import mobilenet_v2

        self.backbone = mobilenet_v2(weights=None).features
        self.head = nn.Sequential(nn.Linear(self.feature_dim, hidden_dim), nn.ReLU(inplace=True),
                                  nn.Linear(hidden_dim, projection_dim))
        self.classifier = nn.Linear(self.feature_dim, 1000)
        self.classifier.requires_grad_(False)
        self.has_classifier = False  # True once the ImageNet head is loaded (animal crops need it)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def load_imagenet(self, path: Path) -> None:
        """Initialise the backbone from torchvision's ImageNet MobileNetV2 state dict (weights_only)."""
        from anomaly_gui.engines.backbones import read_state_dict

        state = read_state_dict(Path(path))
        feats = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        missing, unexpected = self.backbone.load_state_dict(feats, strict=False)
        if missing or unexpected or not feats:
            raise WeightsUnavailableError(f"{path}: not MobileNetV2 ImageNet weights ({len(missing)} missing keys)")
        if "classifier.1.weight" in state and "classifier.1.bias" in state:
            with torch.no_grad():
                self.classifier.weight.copy_(state["classifier.1.weight"])
                self.classifier.bias.copy_(state["classifier.1.bias"])
            self.has_classifier = True

    def freeze_backbone(self, trainable_blocks: int) -> None:
        """Train only the last `trainable_blocks` blocks of the backbone (all when negative)."""
        blocks = list(self.backbone.children())
        n = len(blocks) if trainable_blocks < 0 else min(trainable_blocks, len(blocks))
        for i, b in enumerate(blocks):
            for p in b.parameters():
                p.requires_grad = i >= len(blocks) - n

    def train_mode(self) -> None:
        """Training mode for trainable parts only: frozen blocks keep their BatchNorm statistics."""
        self.train()
        for block in self.backbone.children():
            if not any(q.requires_grad for q in block.parameters()):
                block.eval()

    def represent(self, x: torch.Tensor) -> torch.Tensor:
        """(b, 3, h, w) float in [0, 1] -> (b, 1280) pooled backbone features."""
        x = (x - self.mean) / self.std
        return F.adaptive_avg_pool2d(self.backbone(x), 1).flatten(1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(representation, projection)."""
        h = self.represent(x)
        return h, self.head(h)


def nt_xent_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """SimCLR's NT-Xent: each view's positive is its other view, the other 2(b-1) views are negatives."""
    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2], dim=0), dim=1)
    sim = z @ z.t() / temperature
    sim = sim.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(sim, target)


def triplet_loss(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float = 0.5) -> torch.Tensor:
    """Triplet margin loss on L2-normalised embeddings: mean(max(0, |a-p| - |a-n| + margin))."""
    a, p, n = (F.normalize(t, dim=1) for t in (anchor, positive, negative))
    return F.relu((a - p).norm(dim=1) - (a - n).norm(dim=1) + margin).mean()


def other_index(labels: torch.Tensor | None, b: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """For each sample, the index of another sample of the batch (of another species when possible)."""
    perm = torch.randperm(b, generator=generator)
    neg = perm.roll(1)[torch.argsort(perm)]  # a derangement: neg[i] != i for b > 1
    if labels is None or b < 2:
        return neg
    for i in range(b):
        others = (labels != labels[i]).nonzero().flatten()
        if others.numel():
            neg[i] = others[torch.randint(others.numel(), (1,), generator=generator)].item()
    return neg


def augment(batch: torch.Tensor, generator: torch.Generator | None = None, min_scale: float = 0.6) -> torch.Tensor:
    """Random resized crop, horizontal flip, colour jitter and sometimes grayscale (night IR) on a
    (b, 3, h, w) float batch in [0, 1]; one set of random draws per image."""
    b, _, h, w = batch.shape
    g = generator
    r = lambda *shape: torch.rand(*shape, generator=g)  # noqa: E731
    scale = min_scale + (1 - min_scale) * r(b)
    aspect = torch.exp((r(b) - 0.5) * 0.5)
    sw = (scale * aspect).sqrt().clamp(max=1.0)
    sh = (scale / aspect).sqrt().clamp(max=1.0)
    cx = (1 - sw) * (2 * r(b) - 1)
    cy = (1 - sh) * (2 * r(b) - 1)
    flip = torch.where(r(b) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = sw * flip
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = sh
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta.to(batch), [b, 3, h, w], align_corners=False)
    out = F.grid_sample(batch, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    bright = (1 + (r(b) - 0.5) * 0.6).view(b, 1, 1, 1).to(batch)
    contrast = (1 + (r(b) - 0.5) * 0.6).view(b, 1, 1, 1).to(batch)
    sat = (1 + (r(b) - 0.5) * 0.6).view(b, 1, 1, 1).to(batch)
    gray = (out * torch.tensor([0.299, 0.587, 0.114], device=batch.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    out = gray + (out - gray) * sat
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * contrast + mean
    out = out * bright
    to_gray = (r(b) < 0.2).view(b, 1, 1, 1).to(batch.device)
    gray = (out * torch.tensor([0.299, 0.587, 0.114], device=batch.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    out = torch.where(to_gray, gray.expand_as(out), out)
    return out.clamp(0, 1)
