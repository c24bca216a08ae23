"""Synthetic product defects used to choose engine settings on training images (core/synthetic_defects)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from anomaly_gui.core.synthetic_defects import KINDS, add_defect, defect_set, object_mask


def _part_on_background(size: int = 256) -> np.ndarray:
    img = np.full((size, size), 200, np.uint8)
    cv2.rectangle(img, (96, 40), (160, 216), 70, -1)  # a dark part on a bright plain background
    rng = np.random.default_rng(0)
    return np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("kind", KINDS)
def test_each_defect_changes_only_its_mask_and_lies_on_the_part(kind):
    img = _part_on_background()
    out, mask = add_defect(img, np.random.default_rng(1), kind, size=24)
    assert mask.any() and mask.mean() < 0.05
    changed = np.abs(out.astype(int) - img.astype(int)) > 3  # more than a faint tail
    near = cv2.dilate(mask.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    assert changed.any() and not (changed & ~near).any()
    ys, xs = np.nonzero(mask)
    assert 80 <= xs.mean() <= 176 and 24 <= ys.mean() <= 232  # on the part, not on the background


def test_object_mask_finds_the_part_or_takes_the_whole_texture():
    fg = object_mask(_part_on_background())
    assert fg[128, 128] and not fg[128, 20]
    texture = np.random.default_rng(0).integers(0, 255, (128, 128)).astype(np.uint8)
    assert object_mask(texture).all()


def test_defect_set_cycles_kinds_reproducibly_and_refuses_bad_input():
    imgs = [_part_on_background(128)] * 3
    a, b = defect_set(imgs, seed=3), defect_set(imgs, seed=3)
    assert [k for _, _, k in a] == list(KINDS)
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(a, b))
    with pytest.raises(ValueError, match="uint8"):
        add_defect(np.zeros((8, 8), np.float32), np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown defect kind"):
        add_defect(imgs[0], np.random.default_rng(0), "dent")
