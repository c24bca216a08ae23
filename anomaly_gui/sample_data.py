"""Bundled sample data: a deterministic, licence-clean generator (numpy + OpenCV only, seeded).

`ensure_sample_data()` returns the repository's `sample_data/` when present (a source checkout),
else generates the same content once into `~/.anomaly_gui/sample_data`. Content:

- `product/`: MVTec AD layout, 256x256 woven-fabric texture; 20 train good, 6 test good and
  8 defective in three types (`hole`, `stain`, `thread`) with `ground_truth/<type>/NNN_mask.png`.
- `video/`: UCSD layout, 160x120 gray frames of a walkway with slow walking figures; `Train001-003`
  normal; `Test001` (a fast cart crossing the wrong way) and `Test002` (a running figure) with
  per-frame masks in `TestNNN_gt/` and 1-based inclusive ranges in `Test/frame_gt.json`.
- `sar/`: 128x128 speckled sea chips (gamma speckle, 2 looks) with bright ships, YOLO layout
  (`images/`, `labels/`, `data.yaml`) and Pascal VOC annotations of the same boxes (`Annotations/`).
- `camera_traps/`: 320x240 scenes at three locations with deer, fox, boar and empty frames,
  COCO Camera Traps JSON (`annotations.json`: species, boxes, location, seq_id, datetime).

`python scripts/make_sample_data.py [OUT]` writes it (the repository keeps the result committed).
"""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import cv2
import numpy as np

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.formats.base import DatasetItem
from anomaly_gui.core.formats.coco import write_coco
from anomaly_gui.core.formats.common import box_annotation
from anomaly_gui.core.formats.voc import write_voc
from anomaly_gui.core.formats.yolo import write_yolo
from anomaly_gui.core.imageio import write_image, write_text

SEED = 20240601
REPO_SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
SUBSETS = ("product", "video", "sar", "camera_traps")
_STAMP = "SAMPLE_DATA_VERSION"
VERSION = "1"


def ensure_sample_data() -> Path:
    """Folder holding the sample data: the repository's, else generated once under the home folder."""
    if all((REPO_SAMPLE / s).is_dir() for s in SUBSETS):
        return REPO_SAMPLE
    home = Path(os.environ.get("ANOMALY_GUI_SAMPLE_DIR", Path.home() / ".anomaly_gui" / "sample_data"))
    stamp = home / _STAMP
    if not (stamp.is_file() and stamp.read_text().strip() == VERSION):
        generate(home)
    return home


def generate(out: str | Path) -> Path:
    """Write every subset into `out` (replacing subsets it made before). Deterministic for a given seed.

    Raises DataError rather than replace a `product/`... folder that the generator did not make.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clash = [n for n in SUBSETS if (out / n).exists()]
    if clash and not (out / _STAMP).is_file():
        raise DataError(out, f"holds {', '.join(clash)} not made by the sample generator; refusing to replace them")
    for name, fn in (("product", make_product), ("video", make_video), ("sar", make_sar), ("camera_traps", make_camera_traps)):
        target = out / name
        if target.exists():
            shutil.rmtree(target)
        fn(target, np.random.default_rng([SEED, SUBSETS.index(name)]))
    write_text(out / _STAMP, VERSION + "\n")
    return out


# -- helpers ---------------------------------------------------------------------------------
def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1] (bicubic up-sampling of a coarse random grid)."""
    small = rng.uniform(-1, 1, (cells + 3, cells + 3)).astype(np.float32)
    big = cv2.resize(small, (w * (cells + 3) // cells, h * (cells + 3) // cells), interpolation=cv2.INTER_CUBIC)
    return big[h // cells: h // cells + h, w // cells: w // cells + w]


def _blob_mask(rng: np.random.Generator, h: int, w: int, cx: float, cy: float, r: float, wobble: float = 0.35) -> np.ndarray:
    """A filled irregular blob (uint8 0/1)."""
    n = 24
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    radii = r * (1 + wobble * _periodic(rng, n))
    pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1)
    m = np.zeros((h, w), np.uint8)
    cv2.fillPoly(m, [np.round(pts).astype(np.int32)], 1)
    return m


def _periodic(rng: np.random.Generator, n: int) -> np.ndarray:
    k = np.arange(n)
    out = np.zeros(n)
    for f in (1, 2, 3):
        out += rng.uniform(-1, 1) / f * np.sin(2 * np.pi * f * k / n + rng.uniform(0, 2 * np.pi))
    return out / 1.8


# -- product: MVTec AD layout ----------------------------------------------------------------
def _fabric(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """A woven fabric texture (float32 RGB in [0, 255])."""
    period = 8.0
    ang = math.radians(rng.uniform(-2.0, 2.0))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    ox, oy = rng.uniform(0, period, 2)
    u = (xx * math.cos(ang) + yy * math.sin(ang) + ox) / period
    v = (-xx * math.sin(ang) + yy * math.cos(ang) + oy) / period
    cell = (np.floor(u) + np.floor(v)) % 2
    fu, fv = u - np.floor(u), v - np.floor(v)
    warp = np.sin(np.pi * fu) ** 0.6  # vertical thread, bright in its middle
    weft = np.sin(np.pi * fv) ** 0.6
    lum = np.where(cell == 0, warp, weft) * 0.55 + 0.45
    lum *= 1 + 0.06 * _smooth_noise(rng, size, size, 4)
    base = np.array([118, 132, 160], np.float32) * rng.uniform(0.97, 1.03)
    img = lum[..., None] * base[None, None, :] * 1.25
    img += rng.normal(0, 2.0, (size, size, 1)).astype(np.float32)
    return np.clip(img, 0, 255)


def _defect_hole(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    s = img.shape[0]
    m = _blob_mask(rng, s, s, rng.uniform(60, s - 60), rng.uniform(60, s - 60), rng.uniform(10, 18))
    soft = cv2.GaussianBlur(m.astype(np.float32), (5, 5), 1.2)
    img *= 1 - 0.85 * soft[..., None]
    img += (soft * 18)[..., None]
    return soft > 0.3


def _defect_stain(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    s = img.shape[0]
    m = _blob_mask(rng, s, s, rng.uniform(50, s - 50), rng.uniform(50, s - 50), rng.uniform(16, 28), wobble=0.5)
    soft = cv2.GaussianBlur(m.astype(np.float32), (9, 9), 3.0)
    color = np.array([150, 110, 40], np.float32) if rng.uniform() < 0.5 else np.array([170, 60, 55], np.float32)
    img[:] = img * (1 - 0.6 * soft[..., None]) + color[None, None, :] * 0.6 * soft[..., None]
    return soft > 0.3


def _defect_thread(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    s = img.shape[0]
    m = np.zeros((s, s), np.uint8)
    x0, y0 = rng.uniform(40, s - 40, 2)
    pts = [(x0, y0)]
    ang = rng.uniform(0, np.pi)
    for _ in range(6):
        ang += rng.uniform(-0.5, 0.5)
        x, y = pts[-1]
        pts.append((float(np.clip(x + 14 * math.cos(ang), 5, s - 5)), float(np.clip(y + 14 * math.sin(ang), 5, s - 5))))
    cv2.polylines(m, [np.round(np.array(pts)).astype(np.int32)], False, 1, thickness=3)
    soft = cv2.GaussianBlur(m.astype(np.float32), (3, 3), 0.8)
    img[:] = img * (1 - soft[..., None]) + np.array([235, 235, 225], np.float32)[None, None, :] * soft[..., None]
    return cv2.dilate(m, np.ones((3, 3), np.uint8)) > 0


def make_product(out: Path, rng: np.random.Generator) -> None:
    for i in range(20):
        write_image(out / "train" / "good" / f"{i:03d}.png", _fabric(rng).astype(np.uint8))
    for i in range(6):
        write_image(out / "test" / "good" / f"{i:03d}.png", _fabric(rng).astype(np.uint8))
    for name, fn, n in (("hole", _defect_hole, 3), ("stain", _defect_stain, 3), ("thread", _defect_thread, 2)):
        for i in range(n):
            img = _fabric(rng)
            mask = fn(rng, img)
            write_image(out / "test" / name / f"{i:03d}.png", img.astype(np.uint8))
            write_image(out / "ground_truth" / name / f"{i:03d}_mask.png", mask.astype(np.uint8) * 255)
    write_text(out / "README.txt", "Synthetic woven fabric, MVTec AD layout. Generated by anomaly_gui.sample_data (public domain).\n")


# -- video: UCSD layout ------------------------------------------------------------------------
_VW, _VH, _NFRAMES = 160, 120, 60


def _walkway(rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:_VH, 0:_VW].astype(np.float32)
    bg = 150 + 25 * (yy / _VH) + 6 * _smooth_noise(rng, _VH, _VW, 5)
    bg[(np.abs(xx - 40 - 0.2 * yy) < 2)] -= 35  # edges of the walkway
    bg[(np.abs(xx - 130 + 0.1 * yy) < 2)] -= 35
    bg[10:26, 8:30] = 95  # a bench and a planter
    cv2.circle(bg, (142, 20), 10, 80, -1)
    return bg


def _figure(canvas: np.ndarray, mask: np.ndarray | None, x: float, y: float, t: int, scale: float = 1.0, tone: float = 55) -> None:
    """A walking figure: head, body and two legs that swing with time."""
    h = 22 * scale
    cx, top = int(round(x)), int(round(y - h))
    layers = [canvas] + ([mask] if mask is not None else [])
    for k, layer in enumerate(layers):
        val = tone if k == 0 else 1
        cv2.circle(layer, (cx, top + int(3 * scale)), max(2, int(3 * scale)), val, -1)
        cv2.ellipse(layer, (cx, top + int(10 * scale)), (max(2, int(4 * scale)), int(6 * scale)), 0, 0, 360, val, -1)
        swing = int(3 * scale * math.sin(t * 0.6))
        cv2.line(layer, (cx, top + int(15 * scale)), (cx + swing, int(round(y))), val, max(1, int(2 * scale)))
        cv2.line(layer, (cx, top + int(15 * scale)), (cx - swing, int(round(y))), val, max(1, int(2 * scale)))


def _cart(canvas: np.ndarray, mask: np.ndarray, x: float, y: float) -> None:
    for layer, val in ((canvas, 35), (mask, 1)):
        cv2.rectangle(layer, (int(x) - 14, int(y) - 12), (int(x) + 14, int(y)), val, -1)
        cv2.circle(layer, (int(x) - 9, int(y) + 2), 4, val, -1)
        cv2.circle(layer, (int(x) + 9, int(y) + 2), 4, val, -1)


def _clip(rng: np.random.Generator, intruder: str | None) -> tuple[list[np.ndarray], list[np.ndarray], tuple[int, int] | None]:
    bg = _walkway(rng)
    walkers = []
    for _ in range(int(rng.integers(3, 6))):
        walkers.append({"x": rng.uniform(50, 120), "y": rng.uniform(30, 115), "vy": rng.choice([-1, 1]) * rng.uniform(0.6, 1.1),
                        "vx": rng.uniform(-0.2, 0.2), "tone": rng.uniform(40, 80), "phase": int(rng.integers(0, 10))})
    frames, masks = [], []
    span = None
    if intruder is not None:
        start = int(rng.integers(18, 26))
        span = (start, min(_NFRAMES - 1, start + int(rng.integers(22, 30))))
    for t in range(_NFRAMES):
        canvas = bg.copy()
        mask = np.zeros((_VH, _VW), np.uint8)
        for w in walkers:
            y = w["y"] + w["vy"] * t
            y = 35 + (y - 35) % 85  # re-enter at the other end
            _figure(canvas, None, w["x"] + w["vx"] * t, y, t + w["phase"], scale=0.6 + 0.5 * y / _VH, tone=w["tone"])
        if span is not None and span[0] <= t <= span[1]:
            k = t - span[0]
            if intruder == "cart":  # crosses the walkway sideways, fast
                _cart(canvas, mask, 20 + 5.0 * k, 70 + 0.5 * k)
            else:  # a figure running against the flow, three times the walking speed
                _figure(canvas, mask, 90 - 0.3 * k, 115 - 3.2 * k, 3 * t, scale=1.0, tone=30)
        canvas += rng.normal(0, 2.5, canvas.shape).astype(np.float32)
        frames.append(np.clip(canvas, 0, 255).astype(np.uint8))
        masks.append((mask > 0).astype(np.uint8) * 255)
    if span is not None:  # the ranges cover only the frames where the intruder is visible
        visible = [t for t in range(_NFRAMES) if masks[t].any()]
        span = (visible[0], visible[-1])
    return frames, masks, span


def make_video(out: Path, rng: np.random.Generator) -> None:
    for c in range(1, 4):
        frames, _, _ = _clip(rng, None)
        for t, f in enumerate(frames, 1):
            write_image(out / "Train" / f"Train{c:03d}" / f"{t:03d}.png", f)
    gt: dict[str, list[list[int]]] = {}
    for c, kind in ((1, "cart"), (2, "runner")):
        frames, masks, span = _clip(rng, kind)
        name = f"Test{c:03d}"
        for t, (f, m) in enumerate(zip(frames, masks), 1):
            write_image(out / "Test" / name / f"{t:03d}.png", f)
            write_image(out / "Test" / f"{name}_gt" / f"{t:03d}.png", m)
        assert span is not None
        gt[name] = [[span[0] + 1, span[1] + 1]]
    write_text(out / "Test" / "frame_gt.json", json.dumps(
        {"source": "anomaly_gui.sample_data: 1-based inclusive frame ranges that contain anomalies", "anomalous_frames": gt}, indent=1))


# -- sar: YOLO + VOC ---------------------------------------------------------------------------
_CHIP = 128


def _sar_chip(rng: np.random.Generator, n_ships: int) -> tuple[np.ndarray, list[tuple[float, float, float, float]]]:
    """A speckled sea chip with `n_ships` bright ships; boxes in pixels."""
    looks = 2
    sea = 0.08 * (1 + 0.3 * _smooth_noise(rng, _CHIP, _CHIP, 3))
    rcs = sea.copy()
    boxes = []
    tries = 0
    while len(boxes) < n_ships and tries < 50:
        tries += 1
        length, width = rng.uniform(10, 26), rng.uniform(3, 6)
        ang = rng.uniform(0, 180)
        cx, cy = rng.uniform(16, _CHIP - 16, 2)
        rect = cv2.boxPoints(((float(cx), float(cy)), (float(length), float(width)), float(ang)))
        x1, y1 = np.clip(rect.min(0), 0, _CHIP)
        x2, y2 = np.clip(rect.max(0), 0, _CHIP)
        if any(not (x2 < b[0] - 3 or x1 > b[2] + 3 or y2 < b[1] - 3 or y1 > b[3] + 3) for b in boxes):
            continue
        m = np.zeros((_CHIP, _CHIP), np.float32)
        cv2.fillPoly(m, [np.round(rect).astype(np.int32)], 1.0)
        rcs += m * rng.uniform(1.5, 3.0)
        cv2.circle(rcs, (int(cx), int(cy)), 1, float(rng.uniform(4, 8)), -1)  # the superstructure's bright point
        boxes.append((float(np.floor(x1)), float(np.floor(y1)), float(np.ceil(x2)), float(np.ceil(y2))))
    speckle = rng.gamma(looks, 1.0 / looks, (_CHIP, _CHIP))
    intensity = rcs * speckle
    db = 10 * np.log10(intensity + 1e-4)
    img = np.clip((db + 25) / 32 * 255, 0, 255).astype(np.uint8)
    return img, boxes


def make_sar(out: Path, rng: np.random.Generator) -> None:
    items = []
    for i in range(24):
        split = "train" if i < 16 else ("val" if i < 20 else "test")
        n = int(rng.integers(0, 4)) if i % 6 else 0  # a few chips of open sea only
        img, boxes = _sar_chip(rng, n)
        path = out / "images" / split / f"chip_{i:03d}.png"
        write_image(path, img)
        items.append(DatasetItem(str(path), split=split, width=_CHIP, height=_CHIP,
                                 annotations=[box_annotation("ship", *b) for b in boxes]))
    write_yolo(items, out, ["ship"])
    write_voc(items, out, ["ship"], copy_images=False)
    write_text(out / "README.txt", "Synthetic SAR-like chips (gamma speckle, 2 looks). YOLO layout with data.yaml "
               "and the same boxes as Pascal VOC XML in Annotations/. Generated by anomaly_gui.sample_data (public domain).\n")


# -- camera traps: COCO Camera Traps -----------------------------------------------------------
_CW, _CH = 320, 240
_SPECIES_STYLE = {"deer": ((120, 85, 50), 1.0), "fox": ((200, 100, 35), 0.55), "boar": ((55, 45, 40), 0.75)}


def _scene(rng: np.random.Generator, location: int, night: bool) -> np.ndarray:
    lr = np.random.default_rng([SEED, 99, location])  # a location keeps its own background
    yy = np.mgrid[0:_CH, 0:_CW][0].astype(np.float32)
    sky = np.array([150, 175, 200], np.float32)
    ground = np.array([95, 110, 60], np.float32) if location != 2 else np.array([140, 120, 85], np.float32)
    horizon = 80 + 20 * location
    t = np.clip((yy - horizon) / 12 + 0.5, 0, 1)[..., None]
    img = sky * (1 - t) + ground * t
    img += 12 * _smooth_noise(lr, _CH, _CW, 8)[..., None]
    for _ in range(4 + location):
        x = int(lr.uniform(0, _CW))
        cv2.rectangle(img, (x, horizon - 70), (x + int(lr.uniform(6, 14)), horizon + 5), (60, 50, 40), -1)
        cv2.circle(img, (x + 5, horizon - 70), int(lr.uniform(18, 30)), (40, 80, 40), -1)
    img += rng.normal(0, 3, img.shape).astype(np.float32)
    return img * 0.6 + 8 if night else img


def _animal(img: np.ndarray, species: str, x: float, y: float, scale: float, facing: int) -> tuple[float, float, float, float]:
    color, size = _SPECIES_STYLE[species]
    s = scale * size
    bw, bh = 34 * s, 16 * s
    col = tuple(float(c) for c in color)
    cv2.ellipse(img, (int(x), int(y)), (int(bw / 2), int(bh / 2)), 0, 0, 360, col, -1)
    leg = 18 * s if species == "deer" else 9 * s
    for dx in (-0.35, -0.2, 0.2, 0.35):
        cv2.line(img, (int(x + dx * bw), int(y)), (int(x + dx * bw), int(y + bh / 2 + leg)), col, max(1, int(3 * s)))
    hx = x + facing * bw * 0.55
    if species == "deer":
        cv2.line(img, (int(x + facing * bw * 0.4), int(y - bh * 0.2)), (int(hx), int(y - bh * 1.2)), col, max(2, int(5 * s)))
        cv2.ellipse(img, (int(hx + facing * 4 * s), int(y - bh * 1.3)), (int(7 * s), int(4 * s)), 0, 0, 360, col, -1)
        top = y - bh * 1.3 - 4 * s
    elif species == "fox":
        cv2.ellipse(img, (int(hx), int(y - bh * 0.4)), (int(7 * s), int(5 * s)), 0, 0, 360, col, -1)
        cv2.line(img, (int(x - facing * bw * 0.5), int(y)), (int(x - facing * bw * 0.95), int(y + bh * 0.3)), (230, 230, 230), max(2, int(4 * s)))
        top = y - bh * 0.4 - 5 * s
    else:
        cv2.ellipse(img, (int(hx), int(y + bh * 0.1)), (int(9 * s), int(7 * s)), 0, 0, 360, col, -1)
        top = y - bh / 2
    pad = 2 * s  # line thickness
    left = min(x - bw / 2, hx - 9 * s, x - facing * bw * 0.95) - pad
    right = max(x + bw / 2, hx + 9 * s, x - facing * bw * 0.95) + pad
    top -= pad
    bottom = y + bh / 2 + leg + pad
    return (max(0.0, float(math.floor(left))), max(0.0, float(math.floor(top))), min(float(_CW), float(math.ceil(right))),
            min(float(_CH), float(math.ceil(bottom))))


def make_camera_traps(out: Path, rng: np.random.Generator) -> None:
    plan = ["deer", "deer", "fox", "empty", "boar", "deer", "fox", "fox", "empty", "boar", "deer", "boar",
            "fox", "deer", "empty", "boar", "deer", "fox"]
    items = []
    for i, species in enumerate(plan):
        location = i % 3
        night = i % 5 == 4
        img = _scene(rng, location, night)
        anns = []
        n = 0 if species == "empty" else (2 if i % 4 == 1 else 1)
        for _ in range(n):
            scale = rng.uniform(1.3, 2.2)
            box = _animal(img, species, rng.uniform(60, _CW - 60), rng.uniform(120 + 20 * location, _CH - 45), scale,
                          int(rng.choice([-1, 1])))
            anns.append(box_annotation(species, *box))
        if night:  # infrared flash: gray
            img = img.mean(axis=2, keepdims=True).repeat(3, axis=2)
        path = out / "images" / f"loc{location}_{i:03d}.jpg"
        write_image(path, np.clip(img, 0, 255).astype(np.uint8))
        items.append(DatasetItem(str(path), label=species, width=_CW, height=_CH, annotations=anns,
                                 meta={"location": f"site{location}", "seq_id": f"seq{i // 2:03d}", "frame_num": i % 2,
                                       "datetime": f"2024-05-{1 + i:02d} {'02' if night else '14'}:{10 + i:02d}:00"}))
    write_coco(items, out, ["deer", "fox", "boar", "empty"], camtrap=True)
