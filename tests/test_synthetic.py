"""Synthetic pastes: the written boxes are where the crops went, with labels, read back by the readers."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from anomaly_gui.core.crops import CropSpec, crop_specs
from anomaly_gui.core.formats.base import import_dataset
from anomaly_gui.core.synthetic import SyntheticConfig, feather_mask, make_synthetic, paste
from tests.conftest import shared_dataset


def test_paste_blends_inside_box_only():
    bg = np.zeros((50, 80, 3), np.uint8)
    patch = np.full((10, 20, 3), 200, np.uint8)
    out, box = paste(bg, patch, 30, 10, alpha=0.9, feather=0.2)
    assert box == (30, 10, 50, 20)
    assert out[:10].max() == 0 and out[20:].max() == 0 and out[:, :30].max() == 0 and out[:, 50:].max() == 0
    assert out[15, 40, 0] == 180  # centre: 0.9 * 200
    assert 0 < out[10, 30, 0] < 180  # feathered edge: mild transparency
    out, box = paste(bg, patch, 70, 45, alpha=1.0)  # clipped at the border
    assert box == (70, 45, 80, 50)
    m = feather_mask(10, 20, 0.2)
    assert m.max() == 1.0 and m[0, 0] < 0.5


def _scene(path, colour):
    Image.fromarray(np.full((120, 160, 3), colour, np.uint8)).save(path)
    return path


@pytest.mark.parametrize("fmt,reader", [("coco_camtrap", "coco_camtrap"), ("yolo", "yolo")])
def test_synthetic_set_boxes_are_where_the_animals_are(tmp_path, fmt, reader):
    bgs = [_scene(tmp_path / "bg1.png", 20), _scene(tmp_path / "bg2.png", 40)]
    src = tmp_path / "fox.png"
    Image.fromarray(np.full((30, 40, 3), 250, np.uint8)).save(src)
    crops = [CropSpec(str(src), None, "fox")]
    cfg = SyntheticConfig(n_images=4, per_image=(1, 2), scale=(0.2, 0.3), alpha=(0.9, 0.9), feather=0.05, seed=3, fmt=fmt)
    ann_file, items = make_synthetic(crops, bgs, tmp_path / "out", cfg)
    assert ann_file.exists() and (tmp_path / "out" / "synthetic_pastes.csv").is_file()
    assert len(items) == 4 and all(it.is_anomalous and it.annotations for it in items)
    for it in items:
        img = np.asarray(Image.open(it.path)).astype(int)
        for a in it.annotations:
            x1, y1, x2, y2 = (int(v) for v in a.box())
            cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
            assert img[cy, cx, 0] > 150, "the pasted (bright) animal is inside its box"
            assert a.label == "fox"
        covered = np.zeros(img.shape[:2], bool)
        for a in it.annotations:
            x1, y1, x2, y2 = (int(v) for v in a.box())
            covered[max(y1 - 3, 0):y2 + 3, max(x1 - 3, 0):x2 + 3] = True  # JPEG ringing reaches a pixel or two
        assert img[~covered, 0].max() < 75, "nothing pasted outside the boxes"
    back = import_dataset(tmp_path / "out", reader)
    assert len(back.items) == 4
    got = sorted((round(b, 0) for it in back.items for a in it.annotations for b in a.box()))
    want = sorted((round(b, 0) for it in items for a in it.annotations for b in a.box()))
    assert np.allclose(got, want, atol=1.0)


def test_synthetic_on_real_camera_traps(tmp_path):
    root = shared_dataset("camera_traps")
    res = import_dataset(root)
    jaguars = [s for s in crop_specs(res.items) if s.label == "jaguar" and s.box is not None]
    backgrounds = [it.path for it in res.items if it.label in ("empty", "deer")]
    assert jaguars and backgrounds
    ann, items = make_synthetic(jaguars, backgrounds, tmp_path / "syn", SyntheticConfig(n_images=2, max_side=480, seed=1))
    back = import_dataset(tmp_path / "syn")
    assert back.format == "coco_camtrap" and {it.label for it in back.items} == {"jaguar"}
    for it in items:
        w, h = Image.open(it.path).size
        assert max(w, h) <= 480
        for a in it.annotations:
            x1, y1, x2, y2 = a.box()
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
