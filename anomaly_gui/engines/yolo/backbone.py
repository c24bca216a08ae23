"""The YOLO engine's default network: the ImageNet MobileNetV2 (read from disk, never downloaded) as the
backbone of an ultralytics detector with a stride-4 output for small objects.

- Backbone: ultralytics' `TorchVision` module holding torchvision's `mobilenet_v2` blocks 0-13 (built with
  `weights=None`, so torchvision never fetches anything); the ImageNet weights are copied in by
  `ImageNetTrainer.get_model` from the file `engines.backbones.find_weights` finds. Blocks 14-18 are
  never computed.
- Neck and head: a small PAN over strides 4, 8 and 16 (blocks 3, 6, 13) and ultralytics' anchor-free
  `Detect` on all three: a 6-pixel ship still covers a few stride-4 cells; ships are rarely over 128 px.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

#: the name users pick (model field of the Detection dock / `--param model=`)
MOBILENET_MODEL = "mobilenetv2-p2"
#: `features` blocks of torchvision's MobileNetV2 kept in the backbone (0-13: down to stride 16)
KEPT_BLOCKS = 14

MOBILENET_YAML: dict[str, Any] = {
    "nc": 1,
    "backbone": [
        # TorchVision(c2, model, weights, unwrap, truncate, split): truncate drops blocks 14-18 and the classifier
        [-1, 1, "TorchVision", [96, "mobilenet_v2", None, True, 20 - KEPT_BLOCKS, True]],  # 0: [x, block0..13]
        [0, 1, "Index", [24, 4]],  # 1: block 3, stride 4
        [0, 1, "Index", [32, 7]],  # 2: block 6, stride 8
        [0, 1, "Index", [96, 14]],  # 3: block 13, stride 16
        [-1, 1, "SPPF", [128, 5]],  # 4
    ],
    "head": [
        [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
        [[-1, 2], 1, "Concat", [1]],
        [-1, 1, "C2f", [64]],  # 7: stride 8
        [-1, 1, "nn.Upsample", [None, 2, "nearest"]],
        [[-1, 1], 1, "Concat", [1]],
        [-1, 1, "C2f", [48]],  # 10: stride 4 output
        [-1, 1, "Conv", [48, 3, 2]],
        [[-1, 7], 1, "Concat", [1]],
        [-1, 1, "C2f", [64]],  # 13: stride 8 output
        [-1, 1, "Conv", [64, 3, 2]],
        [[-1, 4], 1, "Concat", [1]],
        [-1, 1, "C2f", [128]],  # 16: stride 16 output
        [[10, 13, 16], 1, "Detect", ["nc"]],
    ],
}


def mobilenet_yaml(nc: int) -> dict[str, Any]:
    cfg = copy.deepcopy(MOBILENET_YAML)
    cfg["nc"] = nc
    return cfg


def is_mobilenet(cfg: dict[str, Any] | None) -> bool:
    return bool(cfg) and any(row[2] == "TorchVision" for row in cfg.get("backbone", []))


def load_imagenet_backbone(net: Any, path: Path) -> int:
    """Copy torchvision's ImageNet MobileNetV2 `features.<i>` weights (i < KEPT_BLOCKS) into the
    `TorchVision` module of an ultralytics DetectionModel built from `MOBILENET_YAML`. Returns the number
    of tensors copied; raises WeightsUnavailableError naming the file when it is not MobileNetV2."""
    from anomaly_gui.core.errors import WeightsUnavailableError
    from anomaly_gui.engines.backbones import read_state_dict

    state = read_state_dict(path)
    features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")
                and int(k.split(".")[1]) < KEPT_BLOCKS}
    target = net.model[0].m  # nn.Sequential of MobileNetV2 blocks 0..13
    own = target.state_dict()
    if not features or set(features) != set(own) or any(own[k].shape != v.shape for k, v in features.items()):
        raise WeightsUnavailableError(f"{path}: not torchvision MobileNetV2 ImageNet weights")
    target.load_state_dict(features)
    return len(features)


def imagenet_trainer(backbone_file: Path) -> type:
    """An ultralytics DetectionTrainer whose fresh network starts from the ImageNet backbone in `weights`
    (ultralytics rebuilds the network from the yaml when training starts, so the weights go in there)."""
    from ultralytics.models.yolo.detect import DetectionTrainer

    class ImageNetTrainer(DetectionTrainer):
        def get_model(self, cfg: Any = None, weights: Any = None, verbose: bool = True) -> Any:  # type: ignore[override]
            model = super().get_model(cfg=cfg, weights=weights, verbose=verbose)
            if weights is None and is_mobilenet(getattr(model, "yaml", None)):
                load_imagenet_backbone(model, backbone_file)
            return model

    return ImageNetTrainer
