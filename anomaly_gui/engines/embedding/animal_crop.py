"""Class-agnostic animal crops without a detector: the ImageNet classifier's activation map (CAM).

Camera-trap photos are mostly background (the same station in every shot), so global features of the whole
photo tell stations apart better than animals. Photos without boxes are cropped to the animal instead:
MobileNetV2's ImageNet classifier (same weights file as the encoder) applied to each cell of the last
feature map gives per-cell class logits (Zhou et al. 2016, class activation maps); the map of the
photo's likely *animal* classes (ImageNet classes 0-397, weighted by their softmax) is thresholded at
half its range and the cells above it bound the animal. An optional second step (`steps=2`) repeats this
inside the padded first crop, which sharpens the box on small animals (7x7 cells of a whole photo are coarse;
on the Jaguar photos IoU with MegaDetector 0.63 vs 0.48), but validation preferred one step (decision 0019).
Boxes given by the data (COCO Camera Traps, MegaDetector) are always used as they are.
Chosen by leave-species-out validation on the shared photos (docs/decisions/0019).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Sequence

import numpy as np
import torch

from anomaly_gui.core.crops import Box, CropSpec, load_crop, padded_box
from anomaly_gui.core.errors import DataError
from anomaly_gui.core.imageio import image_size

ANIMAL_CLASSES = 398  # ImageNet-1k classes 0..397 are animals (tench ... puffer)
CAM_PAD = 0.25  # padding of a CAM box (fraction of its size per side): the cells are coarse
CAM_SIZE = 224  # input size the activation map is computed at (7x7 cells)


@torch.no_grad()
def animal_maps(net: Any, x: torch.Tensor) -> torch.Tensor:
    """(b, 3, h, w) float [0, 1] -> (b, h/32, w/32) animal activation maps scaled to [0, 1] per image.

    `net` is an `EmbeddingNet` whose `classifier` holds the ImageNet head; it is put in eval mode
    (BatchNorm in training mode would use one photo's statistics and change the running ones)."""
    net.eval()
    fmap = net.backbone((x - net.mean) / net.std)  # (b, 1280, h', w')
    w, b = net.classifier.weight, net.classifier.bias
    logits = torch.einsum("bchw,kc->bkhw", fmap, w[:ANIMAL_CLASSES]) + b[:ANIMAL_CLASSES, None, None]
    prob = torch.softmax(logits.mean((2, 3)), dim=1)  # which animal the photo most looks like
    cam = (prob[:, :, None, None] * logits).sum(1)
    lo = cam.flatten(1).min(1).values[:, None, None]
    hi = cam.flatten(1).max(1).values[:, None, None]
    return (cam - lo) / (hi - lo).clamp_min(1e-9)


def box_from_map(cam: np.ndarray, threshold: float = 0.5) -> tuple[float, float, float, float]:
    """Bounds (x1, y1, x2, y2 as fractions of the map) of the cells at or above `threshold`."""
    h, w = cam.shape
    ys, xs = np.nonzero(cam >= threshold)
    if not len(xs):
        return 0.0, 0.0, 1.0, 1.0
    return xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h


def _inside(outer: Sequence[float], frac: Sequence[float]) -> Box:
    bw, bh = outer[2] - outer[0], outer[3] - outer[1]
    return (outer[0] + frac[0] * bw, outer[1] + frac[1] * bh, outer[0] + frac[2] * bw, outer[1] + frac[3] * bh)


class _Infrared(Exception):
    """A night infrared photo that stays whole (`locate_animals(..., skip_infrared=True)`)."""


def is_infrared(arr: np.ndarray, spread: float = 6.0) -> bool:
    """A night infrared shot: an (h, w, 3) uint8 photo whose pixels are (near) grey although stored as RGB."""
    a = arr.reshape(-1, 3).astype(np.int16)
    return bool((a.max(1) - a.min(1)).mean() < spread)


def locate_animals(net: Any, specs: Sequence[CropSpec], device: Any, steps: int = 1,
                   check: Callable[[], None] | None = None,
                   progress: Callable[[int, int, str], None] | None = None, skip_infrared: bool = False) -> list[CropSpec]:
    """`specs` with every whole-image spec (box None) replaced by its CAM animal box (padded by CAM_PAD,
    stored in `meta['pad']`, `meta['cam_box']` True). Specs with boxes, and unreadable files (reported
    later by the crop loader, which names the file), are returned unchanged. `skip_infrared`: night
    infrared photos stay whole (`meta['infrared']` True): the ImageNet head reads grey night shots badly, and
    validation on night photos preferred them whole (decision 0024)."""
    out = list(specs)
    todo = [i for i, s in enumerate(specs) if s.box is None]
    for n, i in enumerate(todo):
        if check is not None:
            check()
        s = specs[i]
        try:
            w, h = image_size(s.path)
            box: Box = (0.0, 0.0, float(w), float(h))
            for step in range(max(1, steps)):
                pad = 0.0 if step == 0 else CAM_PAD
                region = padded_box(box, pad, w, h)
                arr = load_crop(replace(s, box=region if step else None), pad=0.0, size=CAM_SIZE)
                if step == 0 and skip_infrared and is_infrared(arr):
                    raise _Infrared
                x = torch.from_numpy(arr).permute(2, 0, 1)[None].to(device).float() / 255.0
                cam = animal_maps(net, x)[0].cpu().numpy()
                box = _inside(region, box_from_map(cam))
        except _Infrared:
            out[i] = replace(s, meta={**s.meta, "infrared": True})
            continue
        except (DataError, OSError, ValueError):
            continue
        out[i] = replace(s, box=box, meta={**s.meta, "pad": CAM_PAD, "cam_box": True})
        if progress is not None:
            progress(n + 1, len(todo), f"finding animals {n + 1}/{len(todo)}")
    return out
