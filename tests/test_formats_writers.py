"""Writers: write -> read gives back what was written, for every format; writes are atomic."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.formats.base import Annotation, DatasetItem, import_dataset
from anomaly_gui.core.formats.coco import write_coco
from anomaly_gui.core.formats.common import box_annotation
from anomaly_gui.core.formats.labelme import write_labelme
from anomaly_gui.core.formats.masks import rasterize, read_mask, write_masks
from anomaly_gui.core.formats.mvtec import write_mvtec
from anomaly_gui.core.formats.voc import write_voc
from anomaly_gui.core.formats.yolo import write_yolo
from anomaly_gui.core.imageio import read_image, write_image

W, H = 64, 48


@pytest.fixture
def items(tmp_path) -> list[DatasetItem]:
    rng = np.random.default_rng(1)
    out = []
    for k, split in enumerate(["train", "train", "val", "test"]):
        folder = tmp_path / "src" / ("a" if k < 2 else "b")  # two folders: file names collide
        p = write_image(folder / f"img{k % 2}.png", rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
        anns = [box_annotation("ship", 1.5 + k, 2.25, 30.75, 40.0),
                box_annotation("buoy", 40, 10, 63.5, 20.125, score=0.75 if k == 1 else None),
                Annotation("polygon", "ship", {"points": [[5.0, 5.0], [25.5, 6.0], [15.0, 30.25]]})]
        out.append(DatasetItem(path=str(p), split=split, annotations=anns if k != 2 else [], width=W, height=H))
    return out


def geometry(item: DatasetItem) -> list[tuple]:
    return [(a.kind, a.label, tuple(a.box()), a.score) for a in item.annotations]


def by_name(result) -> dict[str, DatasetItem]:
    return {Path(it.path).name: it for it in result.items}


def expected_names():
    return ["a_img0.png", "a_img1.png", "b_img0.png", "b_img1.png"]


def test_voc_round_trip(items, tmp_path):
    out = write_voc(items, tmp_path / "voc", ["ship", "buoy"])
    r = import_dataset(out)
    assert r.format == "voc" and r.classes == ["ship", "buoy"]
    got = by_name(r)
    assert sorted(got) == expected_names()
    for it, name in zip(items, expected_names()):
        back = got[name]
        # VOC has boxes only: a polygon is written as its bounding box; scores are not part of VOC
        assert [(a.label, a.box()) for a in back.annotations] == [(a.label, a.box()) for a in it.annotations]
        assert back.split == it.split and (back.width, back.height) == (W, H)
        assert np.array_equal(read_image(back.path), read_image(it.path))
    assert [str(p) for p in r.problems if "no annotation" not in str(p)] == []


def test_voc_in_place_images(items, tmp_path):
    root = tmp_path / "ds"
    placed = []
    for it, name in zip(items, expected_names()):
        p = write_image(root / "images" / it.split / name, read_image(it.path))
        placed.append(DatasetItem(str(p), split=it.split, annotations=it.annotations, width=W, height=H))
    write_voc(placed, root, copy_images=False)
    assert not (root / "JPEGImages").exists()
    r = import_dataset(root, "voc")
    assert sorted(by_name(r)) == expected_names() and not r.problems


def test_yolo_round_trip(items, tmp_path):
    out = write_yolo(items, tmp_path / "yolo", ["ship", "buoy"])
    r = import_dataset(out)
    assert r.format == "yolo" and r.classes == ["ship", "buoy"] and not r.problems
    got = by_name(r)
    for it, name in zip(items, expected_names()):
        back = got[name]
        assert back.split == it.split
        assert [(a.kind, a.label, a.score) for a in back.annotations] == [(a.kind, a.label, a.score) for a in it.annotations]
        for a, b in zip(it.annotations, back.annotations):
            assert np.allclose(a.box(), b.box(), atol=1e-6)
            if a.kind == "polygon":
                assert np.allclose(a.geometry["points"], b.geometry["points"], atol=1e-6)


def test_yolo_data_yaml_is_ultralytics_style(items, tmp_path):
    import yaml

    out = write_yolo(items, tmp_path / "yolo")
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data["names"] == {0: "buoy", 1: "ship"}  # sorted when no class list is given
    assert (data["train"], data["val"], data["test"]) == ("images/train", "images/val", "images/test")
    assert (out / "labels" / "val" / "b_img0.txt").read_text() == ""  # background image: empty label file


@pytest.mark.parametrize("camtrap", [False, True])
def test_coco_round_trip(items, tmp_path, camtrap):
    if camtrap:
        for it, (species, loc) in zip(items, [("deer", "s1"), ("deer", "s1"), ("empty", "s2"), ("fox", "s2")]):
            it.label, it.meta = species, {"location": loc, "seq_id": "q1"}
    path = write_coco(items, tmp_path / "coco", ["ship", "buoy"], camtrap=camtrap)
    assert path.name == "annotations.json"
    r = import_dataset(tmp_path / "coco")
    assert r.format == ("coco_camtrap" if camtrap else "coco") and not r.problems
    got = by_name(r)
    for it, name in zip(items, expected_names()):
        back = got[name]
        assert geometry(back) == geometry(it)
        assert back.split == it.split
        if it.annotations and not camtrap:
            assert back.annotations[2].geometry["points"] == it.annotations[2].geometry["points"]
        if camtrap:
            assert back.meta["location"] == it.meta["location"]
    if camtrap:
        assert got["b_img0.png"].label == "empty"  # no boxes: the image-level species
    doc = json.loads(path.read_text())
    assert [c["id"] for c in doc["categories"]][:2] == [1, 2]


def test_labelme_round_trip(items, tmp_path):
    out = write_labelme(items, tmp_path / "lm")
    r = import_dataset(out)
    assert r.format == "labelme" and not r.problems
    got = by_name(r)
    for it, name in zip(items, expected_names()):
        assert geometry(got[name]) == geometry(it) and got[name].split == it.split
    doc = json.loads((out / "train" / "a_img0.json").read_text())
    assert doc["imagePath"] == "a_img0.png" and doc["imageData"] is None and doc["shapes"][0]["shape_type"] == "rectangle"


def test_mvtec_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    items = []
    for k, (split, label) in enumerate([("train", "good"), ("train", "good"), ("test", "good"), ("test", "crack"), ("test", "crack")]):
        p = write_image(tmp_path / "src" / f"{k}.png", rng.integers(0, 255, (H, W), dtype=np.uint8))
        mask = None
        if label == "crack" and k == 3:
            m = np.zeros((H, W), np.uint8)
            m[10:20, 5:25] = 1
            mask = str(write_image(tmp_path / "src" / f"{k}_m.png", m))
        items.append(DatasetItem(str(p), split=split, label=label, is_anomalous=label != "good", mask_path=mask))
    out = write_mvtec(items, tmp_path / "mv")
    r = import_dataset(out)
    assert r.format == "mvtec" and not r.problems
    back = sorted(r.items, key=lambda it: (it.split, it.label, Path(it.path).name))
    assert [(it.split, it.label, it.is_anomalous) for it in back] == [
        ("test", "crack", True), ("test", "crack", True), ("test", "good", False), ("train", "good", False), ("train", "good", False)]
    with_mask = [it for it in back if it.mask_path]
    assert len(with_mask) == 1 and read_mask(with_mask[0].mask_path).sum() == 200


def test_masks_binary_and_class_index(items, tmp_path):
    it = items[0]
    paths = write_masks(items, tmp_path / "masks")
    assert [p.name for p in paths] == [f"{Path(n).stem}_mask.png" for n in expected_names()]
    binary = read_mask(paths[0])
    assert binary.dtype == np.bool_ and np.array_equal(binary, rasterize(it) > 0)
    assert binary[3, 10] and binary[15, 50] and not binary[45, 2]
    assert not read_mask(paths[2]).any()  # no regions: an empty mask, still written
    idx = read_mask(write_masks(items, tmp_path / "idx", classes=["ship", "buoy"])[0])
    assert idx[15, 50] == 2 and idx[3, 10] == 1 and idx[45, 2] == 0
    assert (tmp_path / "idx" / "labels.txt").read_text().split() == ["_background_", "ship", "buoy"]


def test_writers_refuse_video_items_and_keep_old_files(items, tmp_path):
    out = write_voc(items, tmp_path / "voc")
    before = (out / "Annotations" / "a_img0.xml").read_text()
    with pytest.raises(ValueError, match="extract frames"):
        write_voc([DatasetItem("clip.mp4", kind="video")], out)
    broken = [DatasetItem(items[0].path, annotations=[]), DatasetItem(str(tmp_path / "gone.png"), width=W, height=H)]
    with pytest.raises(DataError, match="gone.png"):
        write_yolo(broken, tmp_path / "yolo")
    assert (out / "Annotations" / "a_img0.xml").read_text() == before
    leftovers = [p for p in out.rglob(".*") if p.is_file()]
    assert leftovers == []  # no temporary files left behind


def test_exports_copy_images_unless_linking_is_asked(items, tmp_path):
    import os

    src = Path(items[0].path)
    copied = write_yolo(items, tmp_path / "copy") / "images" / "train" / "a_img0.png"
    linked = write_yolo(items, tmp_path / "link", link_images=True) / "images" / "train" / "a_img0.png"
    assert copied.read_bytes() == src.read_bytes()
    assert not os.path.samefile(copied, src)  # editing the export in place never touches the original
    assert os.path.samefile(linked, src)
