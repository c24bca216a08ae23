"""PatchCore's pre-processing options on real images: the centre crop (anomalib's default framing, offered as an
option) and the path of small grayscale images (ELPV-sized solar cells: never enlarged)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from anomaly_gui.engines.patchcore import PatchCoreEngine
from anomaly_gui.engines.patchcore.model import center_crop, crop_box, paste_center
from tests.conftest import shared_dataset

torch.set_num_threads(1)


pytestmark = pytest.mark.usefixtures("offline_mobilenet")


def test_center_crop_keeps_the_middle_and_maps_go_back_in_place():
    x = torch.arange(64.0).view(1, 1, 8, 8)
    assert crop_box(256, 0.875) == (16, 224)  # anomalib: resize 256, centre crop 224
    c = center_crop(x, 0.5)
    assert c.shape == (1, 1, 4, 4) and c[0, 0, 0, 0] == 18  # row 2, column 2
    back = paste_center(c[:, 0], (8, 8))
    assert back.shape == (1, 8, 8) and back[0, 2:6, 2:6].equal(c[0, 0]) and back[0, :2].abs().sum() == 0
    assert center_crop(x, 1.0) is x


def _leather_with_spot(src, dst, centre: bool) -> str:
    img = cv2.imread(str(src))
    img = cv2.resize(img, (256, 256), interpolation=cv2.INTER_AREA)
    y, x = (128, 128) if centre else (8, 128)  # the middle, or the frame a 0.75 crop cuts away
    cv2.circle(img, (x, y), 7, (0, 0, 0), -1)
    cv2.imwrite(str(dst), img)
    return str(dst)


def test_center_crop_option_inspects_only_the_middle(tmp_path):
    files = sorted((shared_dataset("mvtec_leather") / "train" / "good").iterdir())
    eng = PatchCoreEngine(device="cpu", image_size=96, center_crop=0.75, runtime="torch")
    eng.fit(files[:3])
    assert eng.stats["center_crop"] == 0.75
    clean = cv2.resize(cv2.imread(str(files[3])), (256, 256), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(tmp_path / "clean.png"), clean)
    inner = _leather_with_spot(files[3], tmp_path / "inner.png", centre=True)
    edge = _leather_with_spot(files[3], tmp_path / "edge.png", centre=False)
    res = eng.score([str(tmp_path / "clean.png"), inner, edge])
    m = res[0].map
    assert m.shape == (96, 96)
    off, side = crop_box(96, 0.75)
    assert np.all(m[:off] == 0) and np.all(m[:, off + side:] == 0) and m[off:off + side, off:off + side].min() > 0
    s_clean, s_inner, s_edge = (r.score for r in res)
    assert s_inner > 1.5 * s_clean  # a spot in the middle is found
    assert s_edge == pytest.approx(s_clean, rel=0.05)  # one in the cut-off frame is not seen (the price)
    full = PatchCoreEngine(device="cpu", image_size=96, runtime="torch")
    full.fit(files[:3])
    r_full = full.score([str(tmp_path / "clean.png"), edge])
    assert r_full[1].score > 1.5 * r_full[0].score  # without the crop the same edge spot is found


def test_small_grayscale_cells_keep_their_size_and_learn_a_border_profile(tmp_path):
    """ELPV-sized input (300 px, 8-bit gray, synthetic here: a cell with busbars and fingers, not ELPV data):
    the 512 px default is not enlarged to (288 px, the nearest multiple of 32 below), and the border profile
    is learnt on the 36 x 36 cell grid."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(6):
        cell = np.full((300, 300), 120, np.uint8)
        cell[:, ::12] = 95  # fingers
        for y in (75, 150, 225):
            cell[y - 3:y + 3] = 200  # busbars
        cell = np.clip(cell.astype(int) + rng.normal(0, 6, cell.shape), 0, 255).astype(np.uint8)
        cell[:4], cell[-4:], cell[:, :4], cell[:, -4:] = 20, 20, 20, 20  # the dark frame around a cell
        paths.append(str(tmp_path / f"cell{i}.png"))
        cv2.imwrite(paths[-1], cell)
    eng = PatchCoreEngine(device="cpu", runtime="torch")
    eng.fit(paths[:5])
    assert eng.params.image_size == 288 and eng.model.border_weight.shape == (36, 36)
    cracked = cv2.imread(paths[5], cv2.IMREAD_GRAYSCALE)
    cv2.line(cracked, (60, 40), (200, 260), 30, 2)  # a dark crack
    cv2.imwrite(str(tmp_path / "cracked.png"), cracked)
    out = eng.score([paths[5], str(tmp_path / "cracked.png")])
    assert out[0].map.shape == (288, 288) and out[0].image_size == (300, 300)
    assert out[1].score > 2 * out[0].score and out[1].score > 1.5  # the crack stands out in normal units
