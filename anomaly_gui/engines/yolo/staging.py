"""The temporary YOLO folder ultralytics trains from (the user's folder is never written: ultralytics leaves
`labels.cache` beside the labels it reads).

Small objects on a CPU: large chips are not shrunk to the network input. Training images are crops of
`crop` pixels at the model's scale (most around an object, some anywhere: sea clutter, coast, harbour;
`detection_common.sampling.random_crop`), validation images are overlapping tiles of that size, and the
network later detects on whole images at their own size (it is fully convolutional, so objects keep the
size they had in training). Many small crops give many more gradient steps per CPU second than a few
whole chips of mostly empty sea.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from anomaly_gui.core.formats.base import DatasetItem
from anomaly_gui.engines.detection_common import TrainingSet, make_box
from anomaly_gui.engines.detection_common.sampling import Crop, random_crop


def crops_per_image(n_boxes: int) -> int:
    """Two crops around each object (each at another offset) plus two anywhere."""
    return 2 * n_boxes + 2


def tiles(image: np.ndarray, boxes: np.ndarray, labels: list[str], size: int, min_visible: float = 0.5) -> list[Crop]:
    """Overlapping `size` tiles covering the image (the image itself when it is not larger); boxes clipped
    to each tile, kept when at least `min_visible` of their area is inside."""
    h, w = image.shape[:2]
    if h <= size and w <= size:
        return [Crop(image, boxes.copy(), list(labels))]

    def starts(n: int) -> list[int]:
        if n <= size:
            return [0]
        k = int(np.ceil((n - size) / (size * 0.75))) + 1  # at least a quarter of overlap
        return [int(round(v)) for v in np.linspace(0, n - size, k)]

    out = []
    for y0 in starts(h):
        for x0 in starts(w):
            ch, cw = min(size, h), min(size, w)
            b = boxes - np.array([x0, y0, x0, y0], np.float64)
            c = np.stack([b[:, 0].clip(0, cw), b[:, 1].clip(0, ch), b[:, 2].clip(0, cw), b[:, 3].clip(0, ch)], 1) if len(b) else b.reshape(0, 4)
            area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
            vis = (c[:, 2] - c[:, 0]).clip(0) * (c[:, 3] - c[:, 1]).clip(0)
            keep = (vis >= min_visible * np.maximum(area, 1e-9)) & (vis > 0)
            out.append(Crop(image[y0:y0 + ch, x0:x0 + cw], c[keep], [lab for lab, k in zip(labels, keep) if k]))
    return out


def _resized(crop: Crop, scale: float) -> Crop:
    if abs(scale - 1.0) < 1e-6:
        return crop
    from PIL import Image

    h, w = crop.image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    img = np.asarray(Image.fromarray(crop.image).resize(size, Image.BILINEAR))
    return Crop(img, crop.boxes * scale, crop.labels)


def staged_crops(data: TrainingSet, read: Callable[[str], np.ndarray], crop: int, scale: float, training: bool,
                 seed: int = 0) -> list[tuple[Crop, str]]:
    """(crop at model scale, name) for every image of `data`: random object / background crops for training,
    tiles for validation. `crop` is in model pixels (crop / scale image pixels)."""
    rng = np.random.default_rng(seed)
    size = max(32, int(round(crop / scale)))
    out: list[tuple[Crop, str]] = []
    for k, (it, boxes, labels) in enumerate(zip(data.items, data.boxes, data.labels)):
        img = read(it.path)
        stem = f"{k:06d}_{Path(it.path).stem}"
        if training:
            h, w = img.shape[:2]
            n = 1 if h <= size and w <= size else crops_per_image(len(boxes))
            parts = [random_crop(img, boxes, labels, size, rng) for _ in range(n)]
        else:
            parts = tiles(img, boxes, labels, size)
        out += [(_resized(c, scale), f"{stem}_{j:03d}") for j, c in enumerate(parts)]
    return out


def write_yolo_dataset(root: Path, splits: dict[str, TrainingSet], classes: Sequence[str], prepare: Any, repeats: int = 1,
                       crop: int = 0, scale: float = 1.0, seed: int = 0) -> Path:
    """A YOLO folder (written by `core.formats.yolo.write_yolo`) in a temporary place. With `prepare`, images
    are converted first (SAR stretch, speckle filter) and written as PNG. With `crop` > 0, images are staged
    as crops (training) and tiles (validation) of that size at model scale (see the module doc). With
    `repeats` > 1 the training split is a list naming each image that many times (an epoch of a small
    dataset is then long enough to learn between two validations). Returns data.yaml."""
    import yaml

    from anomaly_gui.core.formats.yolo import write_yolo
    from anomaly_gui.core.imageio import read_image, to_rgb8, write_image

    read = (lambda p: prepare(read_image(p))) if prepare is not None else (lambda p: to_rgb8(read_image(p)))
    staged: list[DatasetItem] = []
    for split, data in splits.items():
        if crop > 0:
            entries = [(str(write_image(root / "prepared" / split / f"{name}.png", c.image)), c.image.shape[1], c.image.shape[0],
                        c.boxes, c.labels) for c, name in staged_crops(data, read, crop, scale, split == "train", seed)]
        else:
            entries = []
            for k, (it, boxes, labels) in enumerate(zip(data.items, data.boxes, data.labels)):
                path, (w, h) = it.path, (it.width, it.height)
                if prepare is not None:
                    img = prepare(read_image(it.path))
                    path = str(write_image(root / "prepared" / split / f"{k:06d}_{Path(it.path).stem}.png", img))
                    w, h = img.shape[1], img.shape[0]
                entries.append((path, w, h, boxes, labels))
        for path, w, h, boxes, labels in entries:
            anns = [make_box(*b, lab, 1.0) for b, lab in zip(boxes, labels)]
            for a in anns:
                a.score, a.source = None, "import"
            staged.append(DatasetItem(path=path, split=split, annotations=anns, width=w, height=h))
    out = write_yolo(staged, root / "yolo", classes=list(classes)).resolve()
    # ultralytics resolves a relative `path` against the working directory, not the YAML: make it absolute
    data_yaml = out / "data.yaml"
    spec = yaml.safe_load(data_yaml.read_text(encoding="utf-8"))
    spec["path"] = str(out)
    if repeats > 1 and "train" in spec:
        images = sorted(str(f.resolve()) for f in (out / spec["train"]).iterdir() if f.is_file())
        listing = out / "train_repeated.txt"
        listing.write_text("".join(f"{f}\n" for _ in range(repeats) for f in images), encoding="utf-8")
        spec["train"] = str(listing)
    data_yaml.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return out / "data.yaml"
