"""RetinaNet (torchvision) on a MobileNetV2 feature pyramid, with anchors sized for small objects (ships)."""
from __future__ import annotations

from pathlib import Path

from torch import nn

# MobileNetV2 `features` indices whose outputs feed the pyramid: stride 8 (32 ch), 16 (96 ch), 32 (1280 ch)
RETURN_LAYERS = {"6": "0", "13": "1", "18": "2"}
IN_CHANNELS = [32, 96, 1280]


def find_backbone_weights(explicit: str = "") -> Path | None:
    """The ImageNet MobileNetV2 file: the explicit path (an error when missing), else the shared search of
    `engines.backbones` ($ANOMALY_GUI_WEIGHTS, ~/.anomaly_gui/weights, torch's cache ...); None: not found."""
    from anomaly_gui.core.errors import WeightsUnavailableError
    from anomaly_gui.engines.backbones import find_weights

    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise WeightsUnavailableError(f"{p}: backbone weights file not found")
        return p
    return find_weights("mobilenet_v2")


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


def build_retinanet(num_classes: int, min_size: int, max_size: int, backbone_path: Path | None,
                    fpn_channels: int = 64, trainable_layers: int = 19, score_thresh: float = 0.01,
                    anchor_base: int = 16, frozen_bn: bool | None = None) -> nn.Module:
    """torchvision RetinaNet; `num_classes` counts the background (label 0 unused)."""
    from torchvision.models.detection import RetinaNet
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    features = load_mobilenet_features(backbone_path, frozen_bn)
    n_layers = len(features)
    for i, layer in enumerate(features):
        if i < n_layers - trainable_layers:
            for p in layer.parameters():
                p.requires_grad_(False)
    backbone = BackboneWithFPN(features, RETURN_LAYERS, IN_CHANNELS, fpn_channels,
                               extra_blocks=LastLevelP6P7(fpn_channels, fpn_channels))
    sizes = tuple((s, int(s * 2 ** (1 / 3)), int(s * 2 ** (2 / 3))) for s in [anchor_base * 2**k for k in range(5)])
    anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
    return RetinaNet(backbone, num_classes=num_classes, anchor_generator=anchors, min_size=min_size,
                     max_size=max_size, score_thresh=score_thresh, detections_per_img=100)
