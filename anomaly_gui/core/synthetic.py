"""Synthetic anomalies: paste species crops onto background images at random places and scales with
mild transparency, and write the images with their boxes and labels through the format writers
(COCO Camera Traps by default, also COCO or YOLO). Qt-free.

Used to test a wildlife novelty model on animals in scenes where they never appear, or to make a
labelled detection set from a handful of crops and empty camera-trap frames.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from anomaly_gui.core.crops import CropSpec, load_crop, resize_rgb
from anomaly_gui.core.errors import DataError
from anomaly_gui.core.formats.base import DatasetItem
from anomaly_gui.core.formats.common import box_annotation
from anomaly_gui.core.imageio import read_image, to_rgb8, write_image, write_text


def _write_coco_camtrap(items: list[DatasetItem], out: Path) -> Path:
    from anomaly_gui.core.formats.coco import write_coco

    return write_coco(items, out, camtrap=True)


def _write_coco(items: list[DatasetItem], out: Path) -> Path:
    from anomaly_gui.core.formats.coco import write_coco

    return write_coco(items, out)


def _write_yolo(items: list[DatasetItem], out: Path) -> Path:
    from anomaly_gui.core.formats.yolo import write_yolo

    return write_yolo(items, out)


#: output format -> writer(items, out_dir) (the format writers of `core.formats`)
WRITERS: dict[str, Callable[[list[DatasetItem], Path], Path]] = {
    "coco_camtrap": _write_coco_camtrap, "coco": _write_coco, "yolo": _write_yolo,
}


@dataclass
class SyntheticConfig:
    n_images: int = 20
    per_image: tuple[int, int] = (1, 2)  # pasted animals per image (inclusive range)
    scale: tuple[float, float] = (0.12, 0.35)  # pasted width as a fraction of the background width
    alpha: tuple[float, float] = (0.8, 0.95)  # opacity of the paste (mild transparency)
    feather: float = 0.08  # soft border as a fraction of the paste's smaller side
    max_side: int = 1280  # backgrounds are downscaled so their longer side is at most this
    crop_pad: float = 0.05
    seed: int = 0
    fmt: str = "coco_camtrap"
    extra: dict[str, Any] = field(default_factory=dict)


def feather_mask(h: int, w: int, feather: float) -> np.ndarray:
    """(h, w) float32 in [0, 1]: 1 inside, ramping to 0 over `feather` of the smaller side at the edges."""
    f = max(1.0, feather * min(h, w))
    ys = np.minimum(np.arange(h) + 0.5, h - np.arange(h) - 0.5) / f
    xs = np.minimum(np.arange(w) + 0.5, w - np.arange(w) - 0.5) / f
    return np.clip(np.minimum(ys[:, None], xs[None, :]), 0.0, 1.0).astype(np.float32)


def paste(background: np.ndarray, patch: np.ndarray, x: int, y: int, alpha: float, feather: float = 0.08) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Blend `patch` onto a copy of `background` with its top-left at (x, y); returns the image and the
    pixel box (x1, y1, x2, y2) of the visible part (clipped to the image)."""
    out = background.copy()
    H, W = out.shape[:2]
    h, w = patch.shape[:2]
    x1, y1, x2, y2 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"paste at ({x}, {y}) of {w}x{h} falls outside the {W}x{H} image")
    m = feather_mask(h, w, feather)[y1 - y:y2 - y, x1 - x:x2 - x, None] * float(alpha)
    region = out[y1:y2, x1:x2].astype(np.float32)
    src = patch[y1 - y:y2 - y, x1 - x:x2 - x].astype(np.float32)
    out[y1:y2, x1:x2] = np.clip(region * (1 - m) + src * m, 0, 255).astype(np.uint8)
    return out, (x1, y1, x2, y2)


def _load_background(path: Path, max_side: int) -> np.ndarray:
    img = to_rgb8(read_image(path))
    h, w = img.shape[:2]
    s = max_side / float(max(h, w))
    return resize_rgb(img, max(1, round(w * s)), max(1, round(h * s))) if s < 1 else img


def make_synthetic(crops: Sequence[CropSpec], backgrounds: Sequence[str | Path], out_dir: str | Path,
                   cfg: SyntheticConfig | None = None, progress: Callable[[int, int, str], None] | None = None) -> tuple[Path, list[DatasetItem]]:
    """Write `cfg.n_images` composites into `out_dir` (images + annotation file of `cfg.fmt`).

    Each composite is a random background with `per_image` random crops pasted at random places and
    scales; boxes are the visible pasted rectangles, labelled with the crop's species. The item label
    is its first pasted species; items are marked `is_anomalous` and `meta['synthetic']`.
    Returns (annotation file or folder the writer made, items). Raises DataError naming the file for unreadable inputs.
    """
    cfg = cfg or SyntheticConfig()
    if cfg.fmt not in WRITERS:
        raise ValueError(f"unknown output format {cfg.fmt!r}; known: {', '.join(WRITERS)}")
    if not crops:
        raise ValueError("no crops to paste")
    if not backgrounds:
        raise ValueError("no background images")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    patch_cache: dict[int, np.ndarray] = {}
    bg_cache: dict[int, np.ndarray] = {}
    items: list[DatasetItem] = []
    rows: list[list[Any]] = [["file", "species", "x1", "y1", "x2", "y2", "alpha", "scale", "source"]]
    for n in range(cfg.n_images):
        b = int(rng.integers(len(backgrounds)))
        if b not in bg_cache:
            bg_cache[b] = _load_background(Path(backgrounds[b]), cfg.max_side)
        img = bg_cache[b]
        H, W = img.shape[:2]
        anns = []
        local: list[list[Any]] = []
        for _ in range(int(rng.integers(cfg.per_image[0], cfg.per_image[1] + 1))):
            c = int(rng.integers(len(crops)))
            if c not in patch_cache:
                patch_cache[c] = load_crop(crops[c], pad=cfg.crop_pad)
            patch = patch_cache[c]
            ph, pw = patch.shape[:2]
            tw = max(4, int(W * rng.uniform(*cfg.scale)))
            th = max(4, min(H, int(round(ph * tw / float(pw)))))
            tw = max(4, min(W, int(round(pw * th / float(ph)))))
            x = int(rng.integers(0, W - tw + 1))
            y = int(rng.integers(0, H - th + 1))
            alpha = float(rng.uniform(*cfg.alpha))
            img, box = paste(img, resize_rgb(patch, tw, th), x, y, alpha, cfg.feather)
            anns.append(box_annotation(crops[c].label or "animal", *box, pasted=True, alpha=alpha))
            local.append([crops[c].label, *box, round(alpha, 3), round(tw / W, 3), Path(crops[c].path).name])
        name = f"synthetic_{n:05d}_{anns[0].label}.jpg" if anns else f"synthetic_{n:05d}.jpg"
        path = write_image(out / "images" / name, img)
        rows += [[name, *r] for r in local]
        items.append(DatasetItem(path=str(path), label=anns[0].label if anns else "", is_anomalous=True, annotations=anns,
                                 width=W, height=H, meta={"synthetic": True, "background": str(backgrounds[b])}))
        if progress is not None:
            progress(n + 1, cfg.n_images, f"synthetic image {n + 1}/{cfg.n_images}")
    try:
        ann_file = WRITERS[cfg.fmt](items, out)
    except OSError as exc:
        raise DataError(out, f"cannot write the {cfg.fmt} annotations ({exc})") from exc
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    write_text(out / "synthetic_pastes.csv", buf.getvalue())
    return ann_file, items
