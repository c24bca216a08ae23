"""RetinaNet (torchvision) on a MobileNetV2 feature pyramid built for small objects (SAR ships).

- Pyramid levels at strides 4, 8, 16 and 32 (MobileNetV2 blocks 3, 6, 13 and a max-pooled level):
  a 6-pixel ship still covers a few stride-4 cells. Blocks after 13 are never computed.
- Anchors from `anchor_base` pixels at stride 4, doubling per level, three scales and three aspect
  ratios each (ships lie in every direction, so axis-aligned boxes are long, wide or square).
- A light head (2 convs + GroupNorm instead of 4 plain convs) keeps the stride-4 level cheap on a CPU.
- A fixed-scale transform instead of torchvision's resize-to-min-size: images are scaled by one
  factor chosen from the training boxes (native resolution for HRSID, upsampled for tiny ships), so
  crops in training and whole scenes at inference see objects at the same size.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from anomaly_gui.engines.detection_common import find_backbone_weights  # noqa: F401 (re-exported)

# MobileNetV2 `features` indices whose outputs feed the pyramid: stride 4 (24 ch), 8 (32 ch), 16 (96 ch)
RETURN_LAYERS = {"3": "0", "6": "1", "13": "2"}
IN_CHANNELS = [24, 32, 96]
FROZEN_BLOCKS = 4  # blocks 0-3 (up to stride 4) of a pretrained backbone are not trained


def load_mobilenet_features(path: Path | None, frozen_bn: bool | None = None) -> nn.Sequential:
    """MobileNetV2 `features`, with ImageNet weights from `path` (never downloaded; weights_only load)."""
    from torchvision.models import mobilenet_v2
    from torchvision.ops import FrozenBatchNorm2d

    from anomaly_gui.core.errors import WeightsUnavailableError
    from anomaly_gui.engines.backbones import read_state_dict

    # pretrained: batch statistics stay frozen (small detection batches would ruin them), as torchvision does
    frozen = path is not None if frozen_bn is None else frozen_bn
    net = mobilenet_v2(norm_layer=FrozenBatchNorm2d) if frozen else mobilenet_v2()
    if path is not None:
        state = read_state_dict(path)  # names the file when unreadable
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise WeightsUnavailableError(f"{path}: not MobileNetV2 ImageNet weights ({str(exc).splitlines()[0]})") from exc
    return net.features


def _light_tower(channels: int, n_convs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(n_convs):
        conv = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.normal_(conv.weight, std=0.01)
        nn.init.zeros_(conv.bias)
        layers += [conv, nn.GroupNorm(min(16, channels), channels), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def _fixed_scale_transform(scale: float, base: Any) -> Any:
    """torchvision's GeneralizedRCNNTransform with its resize replaced by one fixed factor."""
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    class FixedScaleTransform(GeneralizedRCNNTransform):
        def resize(self, image: torch.Tensor, target: dict[str, torch.Tensor] | None = None):  # type: ignore[override]
            if abs(scale - 1.0) < 1e-6:
                return image, target
            h, w = image.shape[-2:]
            size = (max(1, round(h * scale)), max(1, round(w * scale)))
            image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
            if target is not None and "boxes" in target:
                sy, sx = size[0] / h, size[1] / w
                target = {**target, "boxes": target["boxes"] * torch.tensor([sx, sy, sx, sy], device=image.device)}
            return image, target

    return FixedScaleTransform(1, 1, base.image_mean, base.image_std, size_divisible=32)


def anchor_sizes(anchor_base: int, levels: int = 4) -> tuple[tuple[int, ...], ...]:
    return tuple((s, round(s * 2 ** (1 / 3)), round(s * 2 ** (2 / 3))) for s in (anchor_base * 2**k for k in range(levels)))


STRIDES = (4, 8, 16, 32)  # of the pyramid levels (the last one max-pooled)
DETECTORS = ["retinanet", "fcos"]


def _pyramid(backbone_path: Path | None, fpn_channels: int, frozen_bn: bool | None) -> nn.Module:
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    features = load_mobilenet_features(backbone_path, frozen_bn)
    if backbone_path is not None:  # pretrained: the stride-2/4 stem stays as learnt on ImageNet (and costs no backward)
        for layer in list(features)[:FROZEN_BLOCKS]:
            for q in layer.parameters():
                q.requires_grad_(False)
    return BackboneWithFPN(features, RETURN_LAYERS, IN_CHANNELS, fpn_channels, extra_blocks=LastLevelMaxPool())


def build_detector(detector: str, num_classes: int, backbone_path: Path | None, **kw: Any) -> nn.Module:
    """`retinanet` (anchor boxes) or `fcos` (anchor-free: every pyramid cell inside a box, near its centre,
    regresses the distances to its sides) on the same MobileNetV2 pyramid."""
    if detector == "fcos":
        kw.pop("anchor_base", None)
        return build_fcos(num_classes, backbone_path, **kw)
    return build_retinanet(num_classes, backbone_path, **kw)


def build_fcos(num_classes: int, backbone_path: Path | None, scale: float = 1.0, fpn_channels: int = 48,
               score_thresh: float = 0.01, head_convs: int = 2, frozen_bn: bool | None = None,
               detections_per_img: int = 200, aspects: Any = None, box_loss: str = "giou") -> nn.Module:
    """torchvision FCOS; each level's 'anchor' is its stride, so level k learns boxes whose farthest side
    lies 4-8 strides from the cell (stride 4: up to ~64-pixel boxes), as in the FCOS paper."""
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.fcos import FCOSHead

    backbone = _pyramid(backbone_path, fpn_channels, frozen_bn)
    anchors = AnchorGenerator(tuple((s,) for s in STRIDES), ((1.0,),) * len(STRIDES))
    head = FCOSHead(fpn_channels, 1, num_classes, num_convs=0)  # towers below (torchvision's GroupNorm(32) needs 32k channels)
    model = FCOS(backbone, num_classes=num_classes, anchor_generator=anchors, head=head, score_thresh=score_thresh,
                 detections_per_img=detections_per_img, topk_candidates=300)
    head.classification_head.conv = _light_tower(fpn_channels, head_convs)
    head.regression_head.conv = _light_tower(fpn_channels, head_convs)
    model.transform = _fixed_scale_transform(scale, model.transform)
    return model


def build_retinanet(num_classes: int, backbone_path: Path | None, scale: float = 1.0, fpn_channels: int = 48,
                    score_thresh: float = 0.01, anchor_base: int = 8, head_convs: int = 2, frozen_bn: bool | None = None,
                    detections_per_img: int = 200, aspects: tuple[float, ...] = (0.5, 1.0, 2.0),
                    box_loss: str = "l1") -> nn.Module:
    """torchvision RetinaNet; `num_classes` counts the background (label 0 unused)."""
    from torchvision.models.detection import RetinaNet
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    backbone = _pyramid(backbone_path, fpn_channels, frozen_bn)
    sizes = anchor_sizes(anchor_base, len(RETURN_LAYERS) + 1)
    anchors = AnchorGenerator(sizes, (tuple(aspects),) * len(sizes))
    model = RetinaNet(backbone, num_classes=num_classes, anchor_generator=anchors, score_thresh=score_thresh,
                      detections_per_img=detections_per_img, topk_candidates=300)
    head = model.head
    head.classification_head.conv = _light_tower(fpn_channels, head_convs)
    head.regression_head.conv = _light_tower(fpn_channels, head_convs)
    head.regression_head._loss_type = box_loss  # l1 on anchor offsets, or giou on the boxes (as torchvision's v2)
    prior = 0.01
    nn.init.constant_(head.classification_head.cls_logits.bias, -math.log((1 - prior) / prior))
    model.transform = _fixed_scale_transform(scale, model.transform)
    return model
