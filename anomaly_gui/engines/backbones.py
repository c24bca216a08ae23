"""One loader for pretrained CNN backbones, and feature extraction by layer name.

Where weights are looked for, in order:
1. an explicit file or folder (engine parameter ``weights`` / ``load_backbone(weights=...)``);
2. ``$ANOMALY_GUI_WEIGHTS`` (a file or folder; several separated by ``os.pathsep``);
3. ``~/.anomaly_gui/weights/``;
4. torchvision's cache, ``torch.hub.get_dir()/checkpoints``;
5. the ``shared/weights`` folder beside a development checkout (where the test data lives);
6. a torchvision download, only when ``ANOMALY_GUI_OFFLINE`` is not set to 1;
otherwise `WeightsUnavailableError` says which file to put where.

A folder matches by torchvision's official file name (e.g. ``mobilenet_v2-b0353104.pth``) or any
``<arch>*.pth|.pt|.safetensors``. Files are read with ``torch.load(weights_only=True)`` or safetensors:
never unpickled.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from anomaly_gui.core.errors import WeightsUnavailableError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHT_SUFFIXES = (".pth", ".pt", ".safetensors")


@dataclass(frozen=True)
class BackboneSpec:
    name: str  # torchvision builder name
    filename: str  # torchvision's official weights file
    weights_enum: str  # e.g. "MobileNet_V2_Weights.IMAGENET1K_V1"
    default_layers: tuple[str, ...]  # mid-level layers for PatchCore-like engines
    description: str = ""


BACKBONES: dict[str, BackboneSpec] = {
    s.name: s
    for s in (
        BackboneSpec("mobilenet_v2", "mobilenet_v2-b0353104.pth", "MobileNet_V2_Weights.IMAGENET1K_V1",
                     ("features.6", "features.13"), "light, fast on CPU (3.5 M parameters)"),
        BackboneSpec("resnet18", "resnet18-f37072fd.pth", "ResNet18_Weights.IMAGENET1K_V1",
                     ("layer2", "layer3"), "small ResNet"),
        BackboneSpec("resnet50", "resnet50-0676ba61.pth", "ResNet50_Weights.IMAGENET1K_V1",
                     ("layer2", "layer3"), "ResNet-50"),
        BackboneSpec("wide_resnet50_2", "wide_resnet50_2-95faca4d.pth", "Wide_ResNet50_2_Weights.IMAGENET1K_V1",
                     ("layer2", "layer3"), "PatchCore's backbone (most accurate, slow on CPU)"),
    )
}


def backbone_names() -> list[str]:
    return list(BACKBONES)


def get_spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
    return BACKBONES[name]


def offline() -> bool:
    return os.environ.get("ANOMALY_GUI_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _dev_shared_weights() -> Path:
    return Path(__file__).resolve().parents[3] / "shared" / "weights"


def search_locations(weights: str | Path | None = None) -> list[Path]:
    """The files/folders searched, in order (see module doc)."""
    out: list[Path] = []
    if weights:
        out.append(Path(weights).expanduser())
    env = os.environ.get("ANOMALY_GUI_WEIGHTS", "")
    out += [Path(p).expanduser() for p in env.split(os.pathsep) if p.strip()]
    out.append(Path.home() / ".anomaly_gui" / "weights")
    out.append(Path(torch.hub.get_dir()) / "checkpoints")
    out.append(_dev_shared_weights())
    return out


def _match_in_folder(folder: Path, spec: BackboneSpec) -> Path | None:
    exact = folder / spec.filename
    if exact.is_file():
        return exact
    for p in sorted(folder.iterdir()) if folder.is_dir() else []:
        stem = p.name.split("-")[0].split(".")[0]
        if p.is_file() and p.suffix in WEIGHT_SUFFIXES and stem == spec.name:
            return p
    return None


def find_weights(name: str, weights: str | Path | None = None) -> Path | None:
    """The weights file for backbone `name`, or None when no local file is found."""
    spec = get_spec(name)
    for i, loc in enumerate(search_locations(weights)):
        if loc.is_file():
            if i == 0 and weights or loc.name.split("-")[0].split(".")[0] == spec.name:
                return loc
            continue
        found = _match_in_folder(loc, spec)
        if found:
            return found
    return None


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from .pth/.pt (weights_only) or .safetensors; WeightsUnavailableError when unreadable."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file becomes one message naming it
        raise WeightsUnavailableError(f"{path}: cannot read weights ({type(exc).__name__}: {exc})") from exc
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise WeightsUnavailableError(f"{path}: not a state dict of tensors")
    return sd


def load_backbone(name: str = "mobilenet_v2", weights: str | Path | None = None) -> nn.Module:
    """The torchvision model `name` with pretrained ImageNet weights, in eval mode on the CPU."""
    import torchvision

    spec = get_spec(name)
    model: nn.Module = getattr(torchvision.models, name)(weights=None)
    path = find_weights(name, weights)
    if path is not None:
        sd = read_state_dict(path)
        try:
            model.load_state_dict(sd)
        except RuntimeError as exc:
            raise WeightsUnavailableError(f"{path}: weights do not fit {name} ({str(exc).splitlines()[0]})") from exc
    elif not offline():
        enum_name, member = spec.weights_enum.split(".")
        try:
            w = getattr(getattr(torchvision.models, enum_name), member)
            model.load_state_dict(w.get_state_dict(progress=False))
        except Exception as exc:  # network errors of every kind
            raise WeightsUnavailableError(_missing_message(spec, weights, f"download failed: {exc}")) from exc
    else:
        raise WeightsUnavailableError(_missing_message(spec, weights, "offline (ANOMALY_GUI_OFFLINE=1)"))
    return model.eval()


def _missing_message(spec: BackboneSpec, weights: str | Path | None, why: str) -> str:
    places = "\n  ".join(str(p) for p in search_locations(weights))
    return (f"pretrained weights for {spec.name} not found ({why}). Put torchvision's file {spec.filename} "
            f"into ~/.anomaly_gui/weights/ or set ANOMALY_GUI_WEIGHTS to its file or folder. Searched:\n  {places}")


class FeatureExtractor(nn.Module):
    """Frozen backbone returning the named layers' outputs (a dict), ImageNet normalisation included.

    Input: float tensor (N, 3, H, W) in [0, 1] (gray images are repeated to 3 channels).
    """

    def __init__(self, backbone: str = "mobilenet_v2", layers: Sequence[str] | None = None,
                 weights: str | Path | None = None) -> None:
        super().__init__()
        from torchvision.models.feature_extraction import create_feature_extractor

        spec = get_spec(backbone)
        self.backbone_name = backbone
        self.layers = tuple(layers or spec.default_layers)
        model = load_backbone(backbone, weights)
        try:
            self.body = create_feature_extractor(model, return_nodes={n: n for n in self.layers})
        except ValueError as exc:
            raise ValueError(f"{backbone} has no layer among {self.layers} ({exc})") from exc
        for p in self.body.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.eval()

    def train(self, mode: bool = True) -> "FeatureExtractor":  # always frozen (BatchNorm statistics kept)
        return super().train(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return dict(self.body(x))

    @torch.no_grad()
    def channels(self, size: int = 64) -> dict[str, int]:
        """Channels of each layer (a dry run)."""
        dev = self.mean.device
        return {k: int(v.shape[1]) for k, v in self(torch.zeros(1, 3, size, size, device=dev)).items()}
