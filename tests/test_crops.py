"""Crops respect boxes and padding; MegaDetector CSV boxes land where they should; bad input is named."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomaly_gui.core.crops import (CropSpec, attach_megadetector_boxes, crop_specs, load_crop, load_crops, padded_box,
                                    read_megadetector_csv, species_from_filename)
from anomaly_gui.core.errors import DataError
from anomaly_gui.core.formats.base import Annotation, DatasetItem
from tests.conftest import shared_dataset


def _coord_image(path: Path, w: int = 200, h: int = 120, fmt: str = "PNG") -> Path:
    """R = x, G = y: every pixel says where it is."""
    yy, xx = np.mgrid[0:h, 0:w]
    arr = np.stack([xx, yy, np.full_like(xx, 77)], axis=2).astype(np.uint8)
    Image.fromarray(arr).save(path, format=fmt)
    return path


def test_padded_box_grows_and_clips():
    assert padded_box((50, 40, 90, 60), 0.0, 200, 120) == (50, 40, 90, 60)
    assert padded_box((50, 40, 90, 60), 0.25, 200, 120) == (40, 35, 100, 65)  # 10 px and 5 px more per side
    assert padded_box((0, 0, 20, 10), 0.5, 200, 120) == (0, 0, 30, 15)  # clipped at the origin
    assert padded_box((190, 110, 200, 120), 1.0, 200, 120) == (180, 100, 200, 120)
    x1, y1, x2, y2 = padded_box((50, 40, 90, 60), 0.0, 200, 120, square=True)
    assert x2 - x1 == y2 - y1 == 40


def test_load_crop_takes_exactly_the_padded_box(tmp_path):
    img = _coord_image(tmp_path / "a.png")
    crop = load_crop(CropSpec(str(img), (50, 40, 90, 60)), pad=0.25)
    assert crop.shape == (30, 60, 3)
    assert crop[0, 0, 0] == 40 and crop[0, 0, 1] == 35  # top-left = (40, 35)
    assert crop[-1, -1, 0] == 99 and crop[-1, -1, 1] == 64
    whole = load_crop(CropSpec(str(img), None), pad=0.25)
    assert whole.shape == (120, 200, 3)
    assert load_crop(CropSpec(str(img), (50, 40, 90, 60)), pad=0.0, size=32).shape == (32, 32, 3)


def test_reduced_jpeg_decode_keeps_box_position(tmp_path):
    img = _coord_image(tmp_path / "big.jpg", w=256, h=256, fmt="JPEG")
    full = load_crop(CropSpec(str(img), (128, 64, 192, 128)), pad=0.0)
    small = load_crop(CropSpec(str(img), (128, 64, 192, 128)), pad=0.0, size=16)  # decoded at 1/4
    ref = np.asarray(Image.fromarray(full).resize((16, 16), Image.BILINEAR)).astype(float)
    assert np.abs(small.astype(float) - ref)[..., :2].mean() < 6


def test_crop_specs_boxes_labels_and_fallbacks():
    a = DatasetItem("/x/IMAG0031_wolf.JPG", label="wolf", annotations=[
        Annotation("box", "animal", {"x1": 1, "y1": 2, "x2": 30, "y2": 40}, score=0.9),
        Annotation("box", "fox", {"x1": 5, "y1": 5, "x2": 9, "y2": 9}, score=0.1),
        Annotation("box", "animal", {"x1": 0, "y1": 0, "x2": 3, "y2": 3}, status="rejected")])
    b = DatasetItem("/x/2021-05-28_SYFR0041_deer.JPG")
    specs = crop_specs([a, b], min_score=0.2)
    assert [(s.label, s.box, s.item_index) for s in specs] == [("wolf", (1.0, 2.0, 30.0, 40.0), 0), ("deer", None, 1)]
    assert len(crop_specs([a], min_score=0.0)) == 2
    dets = {1: [Annotation("box", "animal", {"x1": 0, "y1": 0, "x2": 8, "y2": 8}, score=0.8)]}
    assert crop_specs([a, b], min_score=0.2, detections=dets)[1].box == (0.0, 0.0, 8.0, 8.0)
    assert species_from_filename("Asian Plains_S012_2022-08-25_human_vehicle.jpg") == "vehicle"


def test_megadetector_csv_to_pixel_boxes(tmp_path):
    img = _coord_image(tmp_path / "cam 1_0001.png")
    csv = tmp_path / "manifest.csv"
    csv.write_text("filepath,file,conf,category,bbox_x,bbox_y,bbox_w,bbox_h\n"
                   f"/elsewhere/cam 1_0001.png,cam 1_0001.png,0.9,1,0.25,0.5,0.5,0.25\n"
                   f"/elsewhere/cam 1_0001.png,cam 1_0001.png,0.8,2,0.0,0.0,0.1,0.1\n"
                   f"/elsewhere/other.png,other.png,,,,,,\n")
    table = read_megadetector_csv(csv)
    assert table["other.png"] == [] and len(table["cam 1_0001.png"]) == 1  # category 2 (person) skipped
    item = DatasetItem(str(img), label="jaguar")
    assert attach_megadetector_boxes([item], csv) == 1
    assert item.annotations[0].box() == (50.0, 60.0, 150.0, 90.0)
    crop = load_crop(crop_specs([item])[0], pad=0.0)
    assert crop.shape == (30, 100, 3) and crop[0, 0, 0] == 50 and crop[0, 0, 1] == 60
    bad = tmp_path / "bad.csv"
    bad.write_text("filename,x,y\na.png,1,2\n")
    with pytest.raises(DataError, match="bad.csv"):
        read_megadetector_csv(bad)


def test_unreadable_images_are_reported_not_embedded(tmp_path):
    good = _coord_image(tmp_path / "ok.png")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    arr, kept, problems = load_crops([CropSpec(str(good)), CropSpec(str(broken)), CropSpec(str(tmp_path / "gone.jpg"))], 24)
    assert arr.shape == (1, 24, 24, 3) and kept == [0]
    assert len(problems) == 2 and "broken.png" in str(problems[0]) and "gone.jpg" in str(problems[1])


def test_real_jaguar_megadetector_crops():
    root = shared_dataset("camera_traps") / "Jaguar"
    items = [DatasetItem(str(p), label="jaguar") for p in sorted(root.glob("*.jpg"))]
    assert attach_megadetector_boxes(items, root / "reid_manifest.csv") == len(items) == 6
    specs = crop_specs(items)
    arr, kept, problems = load_crops(specs, 64, pad=0.1)
    assert arr.shape == (6, 64, 64, 3) and not problems
    full = load_crop(specs[0], pad=0.1)
    x1, y1, x2, y2 = padded_box(specs[0].box, 0.1, 1818, 1228)  # 10 % per side, clipped at the border
    assert full.shape[:2] == (y2 - y1, x2 - x1)
    assert full.shape[1] > 1.05 * (specs[0].box[2] - specs[0].box[0])
