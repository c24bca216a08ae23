"""Format readers on small layouts written in tmp_path: items, labels, masks, boxes, and per-file problems."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.formats.base import detect_format, get_format, import_dataset, list_formats
from anomaly_gui.core.imageio import write_image, write_text


def img(path: Path, w: int = 40, h: int = 30, value: int = 120, gray: bool = False) -> Path:
    arr = np.full((h, w) if gray else (h, w, 3), value, np.uint8)
    arr[h // 3, w // 3] = 255 - value
    return write_image(path, arr)


def corrupt(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return path


def problems_about(result, name: str) -> list[str]:
    return [str(p) for p in result.problems if name in str(p)]


# -- MVTec AD ------------------------------------------------------------------------------------
def make_mvtec(root: Path) -> Path:
    for i in range(3):
        img(root / "train" / "good" / f"{i:03d}.png")
    img(root / "test" / "good" / "000.png")
    img(root / "test" / "cut" / "000.png")
    img(root / "test" / "cut" / "001.png")  # its mask is missing: no pixel metric, still anomalous
    write_image(root / "ground_truth" / "cut" / "000_mask.png", np.zeros((30, 40), np.uint8))
    write_image(root / "ground_truth" / "cut" / "007_mask.png", np.zeros((30, 40), np.uint8))  # orphan
    corrupt(root / "test" / "cut" / "002.png")
    return root


def test_mvtec_reader(tmp_path):
    root = make_mvtec(tmp_path / "bottle")
    assert detect_format(root).name == "mvtec"
    r = import_dataset(root)
    assert len(r.items) == 6
    by = {(it.split, it.label, Path(it.path).name): it for it in r.items}
    assert all(not it.is_anomalous and it.mask_path is None for it in r.items if it.label == "good")
    cut0, cut1 = by[("test", "cut", "000.png")], by[("test", "cut", "001.png")]
    assert cut0.is_anomalous and cut0.mask_path.endswith("000_mask.png")
    assert cut1.is_anomalous and cut1.mask_path is None
    assert cut0.width == 40 and cut0.height == 30
    assert r.classes == ["good", "cut"]
    assert problems_about(r, "002.png") and problems_about(r, "007_mask.png")
    assert r.meta["n_anomalous_without_mask"] == 1


def test_mvtec_without_ground_truth_folder(tmp_path):
    root = tmp_path / "ds"
    img(root / "train" / "good" / "a.png")
    img(root / "test" / "good" / "b.png")
    img(root / "test" / "scratch" / "c.png")
    r = import_dataset(root)
    assert r.format == "mvtec" and len(r.items) == 3 and not r.problems
    assert [it.is_anomalous for it in r.items] == [False, False, True]


# -- plain folder --------------------------------------------------------------------------------
def test_folder_reader_labels_splits_and_normal_names(tmp_path):
    root = tmp_path / "photos"
    img(root / "ok" / "a.png")
    img(root / "Normal" / "b.jpg")
    img(root / "dent" / "deep" / "c.bmp")
    img(root / "train" / "ok" / "d.png")
    img(root / "loose.png")
    corrupt(root / "dent" / "bad.png")
    (root / "notes.txt").write_text("not an image")
    r = import_dataset(root)
    assert r.format == "folder"
    by = {Path(it.path).name: it for it in r.items}
    assert set(by) == {"a.png", "b.jpg", "c.bmp", "d.png", "loose.png"}
    assert by["a.png"].is_anomalous is False and by["b.jpg"].is_anomalous is False
    assert by["c.bmp"].label == "dent" and by["c.bmp"].is_anomalous is True
    assert by["d.png"].split == "train" and by["d.png"].label == "ok"
    assert by["loose.png"].label == "" and by["loose.png"].is_anomalous is None
    assert problems_about(r, "bad.png")


def test_folder_without_normal_label_leaves_truth_unknown(tmp_path):
    img(tmp_path / "cats" / "a.png")
    img(tmp_path / "dogs" / "b.png")
    r = import_dataset(tmp_path)
    assert {it.is_anomalous for it in r.items} == {None}
    assert r.classes == ["cats", "dogs"]
    single = import_dataset(tmp_path / "cats" / "a.png")
    assert len(single.items) == 1


# -- Pascal VOC ----------------------------------------------------------------------------------
def voc_xml(filename: str, objects: list[str], w: int | None = 40, h: int | None = 30) -> str:
    size = f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>" if w else ""
    return f"<annotation><filename>{filename}</filename>{size}{''.join(objects)}</annotation>"


def voc_obj(name: str, x1, y1, x2, y2, difficult: int = 0) -> str:
    return (f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
            f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>")


def make_voc(root: Path) -> Path:
    for stem in ("a", "b", "c", "e"):
        img(root / "JPEGImages" / f"{stem}.jpg")
    ann = root / "Annotations"
    write_text(ann / "a.xml", voc_xml("a.jpg", [voc_obj("ship", 2, 3, 20, 25), voc_obj("boat", 1.5, 2.5, 10.25, 12, difficult=1)]))
    write_text(ann / "b.xml", voc_xml("b.jpg", [voc_obj("ship", -5, 4, 60, 20),  # outside: clipped and reported
                                                "<object><name>ship</name></object>",  # no bndbox
                                                voc_obj("whale", 1, 1, 5, 5)], w=None))  # unknown class, size from header
    write_text(ann / "c.xml", "<annotation><filename>c.jpg</filename><object>")  # malformed
    write_text(ann / "d.xml", voc_xml("d.jpg", [voc_obj("ship", 1, 1, 5, 5)]))  # no image
    write_text(root / "ImageSets" / "Main" / "train.txt", "a\nb\n")
    write_text(root / "ImageSets" / "Main" / "val.txt", "e\n")
    write_text(root / "labels.txt", "ship\nboat\n")
    return root


def test_voc_reader(tmp_path):
    root = make_voc(tmp_path / "voc")
    assert detect_format(root).name == "voc"
    r = import_dataset(root)
    by = {Path(it.path).stem: it for it in r.items}
    assert set(by) == {"a", "b", "c", "e"}  # c (bad XML) and e (no XML) keep their image, without boxes
    a = by["a"].annotations
    assert [(x.label, x.box()) for x in a] == [("ship", (2.0, 3.0, 20.0, 25.0)), ("boat", (1.5, 2.5, 10.25, 12.0))]
    assert a[1].geometry.get("difficult") is True
    b = by["b"].annotations
    assert b[0].box() == (0.0, 4.0, 40.0, 20.0) and by["b"].width == 40
    assert [x.label for x in b] == ["ship", "whale"]
    assert by["a"].split == "train" and by["e"].split == "val" and by["c"].split == ""
    assert r.classes == ["ship", "boat", "whale"]  # the class list first, then the unknown classes seen
    msgs = [str(p) for p in r.problems]
    assert any("b.xml" in m and "clipped" in m for m in msgs)
    assert any("b.xml" in m and "bndbox" in m for m in msgs)
    assert any("b.xml" in m and "unknown class 'whale'" in m for m in msgs)
    assert any("c.xml" in m and "malformed XML" in m for m in msgs)
    assert any("d.xml" in m and "without image" in m for m in msgs)
    assert any("e.jpg" in m and "no annotation" in m for m in msgs)


# -- YOLO ----------------------------------------------------------------------------------------
def make_yolo(root: Path) -> Path:
    img(root / "images" / "train" / "a.png", 100, 50)
    img(root / "images" / "train" / "b.png", 100, 50)
    img(root / "images" / "val" / "c.png", 100, 50)
    corrupt(root / "images" / "val" / "d.png")
    write_text(root / "labels" / "train" / "a.txt", "0 0.5 0.5 0.2 0.4\n1 0.25 0.5 0.1 0.2 0.9\n")
    write_text(root / "labels" / "train" / "b.txt", "0 0.95 0.5 0.2 0.2\nzero 1 2 3 4\n7 0.5 0.5 0.1 0.1\n0 0.5\n")
    write_text(root / "labels" / "val" / "c.txt", "1 0.1 0.1 0.5 0.1 0.5 0.5\n")
    write_text(root / "labels" / "train" / "orphan.txt", "0 0.5 0.5 0.1 0.1\n")
    write_text(root / "data.yaml", "path: .\ntrain: images/train\nval: images/val\nnames:\n  0: ship\n  1: buoy\n")
    return root


def test_yolo_reader_with_yaml(tmp_path):
    root = make_yolo(tmp_path / "yolo")
    assert detect_format(root).name == "yolo"
    r = import_dataset(root)
    by = {Path(it.path).stem: it for it in r.items}
    assert set(by) == {"a", "b", "c"} and r.classes == ["ship", "buoy"]
    a = by["a"].annotations
    assert a[0].label == "ship" and a[0].box() == pytest.approx((40.0, 15.0, 60.0, 35.0))
    assert a[1].label == "buoy" and a[1].score == pytest.approx(0.9) and a[1].box() == pytest.approx((20, 20, 30, 30))
    assert [x.box() for x in by["b"].annotations] == [pytest.approx((85.0, 20.0, 100.0, 30.0))]  # clipped
    poly = by["c"].annotations[0]
    assert poly.kind == "polygon" and np.allclose(poly.geometry["points"], [[10, 5], [50, 5], [50, 25]])
    assert by["a"].split == "train" and by["c"].split == "val"
    msgs = [str(p) for p in r.problems]
    for needle in ("b.txt: line 1: box reaches outside", "b.txt: line 2: not numbers", "b.txt: line 3: class id 7",
                   "b.txt: line 4: expected", "d.png", "orphan.txt: label file without an image"):
        assert any(needle in m for m in msgs), needle


def test_yolo_flat_without_yaml_and_malformed_yaml(tmp_path):
    root = tmp_path / "flat"
    img(root / "images" / "x.jpg", 80, 80)
    write_text(root / "labels" / "x.txt", "0 0.5 0.5 0.5 0.25\n")
    r = import_dataset(root)
    assert r.format == "yolo" and r.items[0].annotations[0].label == "0"
    assert r.items[0].annotations[0].box() == pytest.approx((20, 30, 60, 50))
    write_text(root / "classes.txt", "vessel\n")
    assert import_dataset(root).items[0].annotations[0].label == "vessel"
    write_text(root / "data.yaml", "names: [a, b\ntrain: [")
    r = import_dataset(root, "yolo")
    assert any("data.yaml" in str(p) and "malformed YAML" in str(p) for p in r.problems)
    assert len(r.items) == 1  # falls back to images/ + labels/


# -- COCO ----------------------------------------------------------------------------------------
def coco_doc(**extra_image) -> dict:
    return {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30, **extra_image},
                   {"id": 2, "file_name": "b.jpg", "width": 40, "height": 30, **extra_image},
                   {"id": 3, "file_name": "missing.jpg", "width": 40, "height": 30}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 3, 10, 5]},
                        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [30, 20, 20, 20], "score": 0.5},
                        {"id": 3, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10],
                         "segmentation": [[1, 1, 9, 1, 9, 9]]},
                        {"id": 4, "image_id": 99, "category_id": 1, "bbox": [0, 0, 1, 1]},
                        {"id": 5, "image_id": 1, "category_id": 7, "bbox": [0, 0, 1, 1]},
                        {"id": 6, "image_id": 1, "category_id": 1, "bbox": "oops"}],
        "categories": [{"id": 1, "name": "car"}, {"id": 2, "name": "person"}],
    }


def test_coco_reader(tmp_path):
    img(tmp_path / "images" / "a.jpg")
    img(tmp_path / "images" / "b.jpg")
    write_text(tmp_path / "annotations" / "instances_val.json", json.dumps(coco_doc()))
    write_text(tmp_path / "annotations" / "broken_train.json", '{"images": [ {"id": 1, "annotations": ')
    assert detect_format(tmp_path).name == "coco"
    r = import_dataset(tmp_path)
    by = {Path(it.path).name: it for it in r.items}
    assert set(by) == {"a.jpg", "b.jpg"}
    a = by["a.jpg"]
    assert [(x.kind, x.label) for x in a.annotations] == [("box", "car"), ("box", "person"), ("polygon", "car")]
    assert a.annotations[0].box() == (2.0, 3.0, 12.0, 8.0)
    assert a.annotations[1].box() == (30.0, 20.0, 40.0, 30.0) and a.annotations[1].score == 0.5
    assert by["b.jpg"].annotations == [] and by["b.jpg"].label == "empty"
    assert a.split == "val" and r.classes == ["car", "person"]
    msgs = [str(p) for p in r.problems]
    for needle in ("missing.jpg", "unknown image_id", "unknown category_id 7", "bbox must be", "clipped",
                   "broken_train.json: malformed JSON"):
        assert any(needle in m for m in msgs), needle
    # the JSON file itself as the root
    assert len(import_dataset(tmp_path / "annotations" / "instances_val.json").items) == 2


def test_coco_camera_traps_json(tmp_path):
    img(tmp_path / "a.jpg")
    img(tmp_path / "b.jpg")
    doc = coco_doc(location="site7", seq_id="s1", datetime="2024-01-01 10:00:00")
    doc["categories"].append({"id": 3, "name": "empty"})
    doc["annotations"] = [{"id": 1, "image_id": 1, "category_id": 2},  # image-level species, no box
                          {"id": 2, "image_id": 2, "category_id": 3}]
    write_text(tmp_path / "cct.json", json.dumps(doc))
    assert detect_format(tmp_path).name == "coco_camtrap"
    r = import_dataset(tmp_path)
    by = {Path(it.path).name: it for it in r.items}
    assert by["a.jpg"].label == "person" and by["a.jpg"].annotations == []
    assert by["b.jpg"].label == "empty" and by["a.jpg"].meta["location"] == "site7"


# -- camera-trap folders -------------------------------------------------------------------------
def test_camera_trap_folder_names_and_manifest(tmp_path):
    sw = tmp_path / "Southwest"
    for name in ("IMAG0001_deer.JPG", "2021-05-28_SYFR0041_coyote.jpg", "testdataowl.JPG", "B013_IMG_0005_empty.jpeg"):
        img(sw / name)
    jag = tmp_path / "Jaguar"
    img(jag / "RL 5_001.jpg", 200, 100)
    img(jag / "RL 6_002.jpg", 200, 100)
    write_text(jag / "reid_manifest.csv",
               "filepath,frame,filename,max_detection_conf,category,conf,bbox_x,bbox_y,bbox_w,bbox_h\n"
               "/x/RL 5_001.jpg,0,RL 5_001.jpg,0.9,1,0.9,0.25,0.5,0.5,0.25\n"
               "/x/RL 5_001.jpg,0,RL 5_001.jpg,0.9,2,0.4,0.0,0.0,0.1,0.1\n"
               "/x/gone.jpg,0,gone.jpg,0.9,1,0.9,0.1,0.1,0.1,0.1\n"
               "/x/RL 6_002.jpg,0,RL 6_002.jpg,0.9,1,high,0.1,0.1,0.1,0.1\n")
    assert detect_format(sw).name == "camtrap"
    assert detect_format(tmp_path).name == "camtrap"
    r = import_dataset(tmp_path)
    by = {Path(it.path).name: it for it in r.items}
    assert by["IMAG0001_deer.JPG"].label == "deer" and by["testdataowl.JPG"].label == "owl"
    assert by["B013_IMG_0005_empty.jpeg"].label == "empty"
    j = by["RL 5_001.jpg"]
    assert j.label == "jaguar"  # species folder
    assert [(a.label, a.box(), a.score) for a in j.annotations] == [("jaguar", (50.0, 50.0, 150.0, 75.0), 0.9),
                                                                    ("person", (0.0, 0.0, 20.0, 10.0), 0.4)]
    msgs = [str(p) for p in r.problems]
    assert any("reid_manifest.csv" in m and "gone.jpg" in m for m in msgs)
    assert any("reid_manifest.csv: line 5" in m for m in msgs)


def test_species_subfolders(tmp_path):
    img(tmp_path / "deer" / "1.jpg")
    img(tmp_path / "fox" / "2.jpg")
    r = import_dataset(tmp_path)
    assert r.format == "camtrap" and sorted(it.label for it in r.items) == ["deer", "fox"]


# -- video files ---------------------------------------------------------------------------------
def write_video(path: Path, n: int = 12, size: tuple[int, int] = (64, 48), fps: float = 10.0) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for t in range(n):
        frame = np.full((size[1], size[0], 3), 20 * t % 255, np.uint8)
        vw.write(frame)
    vw.release()
    return path


def test_video_reader(tmp_path):
    write_video(tmp_path / "normal" / "cam1.avi")
    write_video(tmp_path / "test" / "cam2.avi", n=7, size=(32, 24), fps=5)
    (tmp_path / "test" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    assert detect_format(tmp_path).name == "video"
    r = import_dataset(tmp_path)
    by = {Path(it.path).name: it for it in r.items}
    assert set(by) == {"cam1.avi", "cam2.avi"}
    assert by["cam1.avi"].kind == "video" and by["cam1.avi"].meta["frames"] == 12
    assert by["cam1.avi"].meta["fps"] == pytest.approx(10.0) and by["cam1.avi"].is_anomalous is False
    assert (by["cam2.avi"].meta["width"], by["cam2.avi"].meta["height"], by["cam2.avi"].split) == (32, 24, "test")
    assert problems_about(r, "broken.mp4")
    one = import_dataset(tmp_path / "normal" / "cam1.avi")
    assert one.format == "video" and len(one.items) == 1


# -- UCSD frame folders --------------------------------------------------------------------------
def make_ucsd(root: Path, gt: str = "json") -> Path:
    for t in range(1, 4):
        img(root / "Train" / "Train001" / f"{t:03d}.tif", gray=True)
    for c in (1, 2):
        for t in range(1, 6):
            img(root / "Test" / f"Test{c:03d}" / f"{t:03d}.tif", gray=True)
            mask = np.zeros((30, 40), np.uint8)
            if c == 1 and t >= 3:
                mask[5:10, 5:10] = 255
            write_image(root / "Test" / f"Test{c:03d}_gt" / f"{t:03d}.bmp", mask)
    if gt == "json":
        write_text(root / "Test" / "frame_gt.json", json.dumps({"anomalous_frames": {"Test001": [[3, 5]], "Test002": [[1, 1], [5, 5]]}}))
    elif gt == "m":
        write_text(root / "Test" / "UCSDped2.m", "TestVideoFile = {};\nTestVideoFile{end+1}.gt_frame = [3:5];\n"
                                                  "TestVideoFile{end+1}.gt_frame = [1:1, 5];\n")
    return root


@pytest.mark.parametrize("gt", ["json", "m", "masks"])
def test_ucsd_frames(tmp_path, gt):
    root = make_ucsd(tmp_path / "ped", gt)
    assert detect_format(root).name == "frames"
    r = import_dataset(root)
    train = [it for it in r.items if it.split == "train"]
    assert len(train) == 3 and all(it.kind == "frame" and it.is_anomalous is False for it in train)
    t1 = sorted((it for it in r.items if it.group == "Test001"), key=lambda it: it.frame_index)
    assert [it.frame_index for it in t1] == [0, 1, 2, 3, 4]
    assert [it.is_anomalous for it in t1] == [False, False, True, True, True]
    assert all(it.mask_path and it.mask_path.endswith(f"{it.frame_index + 1:03d}.bmp") for it in t1)
    t2 = sorted((it for it in r.items if it.group == "Test002"), key=lambda it: it.frame_index)
    expected = [False] * 5 if gt == "masks" else [True, False, False, False, True]
    assert [it.is_anomalous for it in t2] == expected
    assert t1[2].label == "anomalous" and t1[0].label == "normal"


def test_frames_bad_ground_truth_is_reported(tmp_path):
    root = make_ucsd(tmp_path / "ped", gt="none")
    write_text(root / "Test" / "frame_gt.json", "{not json")
    corrupt(root / "Test" / "Test002" / "003.tif")
    r = import_dataset(root)
    assert any("frame_gt.json" in str(p) for p in r.problems)
    assert any("003.tif" in str(p) for p in r.problems)
    assert len(r.items) == 3 + 10 - 1


# -- labelme -------------------------------------------------------------------------------------
def test_labelme_reader(tmp_path):
    img(tmp_path / "a.png")
    img(tmp_path / "b.png")
    write_text(tmp_path / "a.json", json.dumps({"shapes": [
        {"label": "scratch", "points": [[1, 2], [11, 12]], "shape_type": "rectangle"},
        {"label": "dent", "points": [[1, 1], [5, 1], [5, 5]], "shape_type": "polygon"},
        {"label": "c", "points": [[10, 10], [13, 14]], "shape_type": "circle"},
        {"label": "", "points": [[1, 1]], "shape_type": "point"}], "imagePath": "a.png", "imageData": None}))
    write_text(tmp_path / "b.json", '{"shapes": [')
    assert detect_format(tmp_path).name == "labelme"
    r = import_dataset(tmp_path)
    assert len(r.items) == 1
    anns = r.items[0].annotations
    assert [(a.kind, a.label) for a in anns] == [("box", "scratch"), ("polygon", "dent"), ("box", "c")]
    assert anns[2].box() == (5.0, 5.0, 15.0, 15.0)
    assert problems_about(r, "b.json") and any("shape 4" in str(p) for p in r.problems)


# -- detection and errors ------------------------------------------------------------------------
def test_every_reader_is_registered():
    names = {r.name for r in list_formats()}
    assert {"mvtec", "folder", "voc", "yolo", "coco", "coco_camtrap", "camtrap", "video", "frames", "labelme"} <= names
    assert get_format("voc").name == "voc"
    with pytest.raises(KeyError):
        get_format("nope")


def test_bad_roots(tmp_path):
    with pytest.raises(DataError, match="path not found"):
        detect_format(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no known dataset layout"):
        import_dataset(tmp_path / "empty")


def test_ucsd_is_not_mvtec_and_mvtec_is_not_frames(tmp_path):
    assert not get_format("mvtec").detect(make_ucsd(tmp_path / "u"))
    assert not get_format("frames").detect(make_mvtec(tmp_path / "m"))
    assert not get_format("frames").detect(make_voc(tmp_path / "v"))


def test_large_coco_json_is_detected(tmp_path):
    """'annotations' and 'categories' written after a long image list are still found."""
    img(tmp_path / "images" / "a.jpg")
    images = [{"id": i, "file_name": "images/a.jpg" if i == 0 else f"images/missing_{i}.jpg", "width": 40, "height": 30}
              for i in range(3000)]
    doc = {"images": images, "annotations": [{"id": 1, "image_id": 0, "category_id": 1, "bbox": [1, 1, 5, 5]}],
           "categories": [{"id": 1, "name": "car"}]}
    write_text(tmp_path / "big.json", json.dumps(doc))
    assert (tmp_path / "big.json").stat().st_size > 200_000
    assert detect_format(tmp_path).name == "coco"


def test_progress_is_reported(tmp_path):
    root = make_mvtec(tmp_path / "m")
    calls: list[tuple[int, int, str]] = []
    import_dataset(root, progress=lambda done, total, msg: calls.append((done, total, msg)))
    assert calls and calls[-1][0] == calls[-1][1] == 7 and all(isinstance(c[2], str) for c in calls)


def test_vocdevkit_with_two_years(tmp_path):
    make_voc(tmp_path / "VOCdevkit" / "VOC2007")
    other = tmp_path / "VOCdevkit" / "VOC2012"
    img(other / "JPEGImages" / "z.jpg")
    write_text(other / "Annotations" / "z.xml", voc_xml("z.jpg", [voc_obj("dog", 1, 1, 9, 9)]))
    r = import_dataset(tmp_path / "VOCdevkit")
    assert r.format == "voc"
    assert sorted(Path(it.path).stem for it in r.items) == ["a", "b", "c", "e", "z"]
    assert r.classes == ["ship", "boat", "dog", "whale"]


def test_folder_visa_like_images_and_masks(tmp_path):
    root = tmp_path / "candle"
    img(root / "Data" / "Images" / "Normal" / "0000.JPG")
    img(root / "Data" / "Images" / "Anomaly" / "000.JPG")
    img(root / "Data" / "Images" / "Anomaly" / "001.JPG")
    write_image(root / "Data" / "Masks" / "Anomaly" / "000.png", np.full((30, 40), 255, np.uint8))
    r = import_dataset(root)
    assert r.format == "folder" and len(r.items) == 3  # masks are not items
    by = {Path(it.path).name: it for it in r.items}
    assert by["0000.JPG"].label == "Normal" and by["0000.JPG"].is_anomalous is False
    assert by["000.JPG"].label == "Anomaly" and by["000.JPG"].is_anomalous is True
    assert by["000.JPG"].mask_path.endswith("Masks/Anomaly/000.png") and by["001.JPG"].mask_path is None


def test_mvtec_ad2_layout(tmp_path):
    root = tmp_path / "can"
    img(root / "train" / "good" / "000_regular.png")
    img(root / "validation" / "good" / "000_regular.png")
    img(root / "test_public" / "good" / "000_regular.png")
    img(root / "test_public" / "bad" / "000_regular.png")
    write_image(root / "test_public" / "ground_truth" / "bad" / "000_regular_mask.png", np.full((30, 40), 255, np.uint8))
    img(root / "test_private" / "000.png")
    assert detect_format(root).name == "mvtec"
    r = import_dataset(root)
    assert not r.problems
    got = sorted((it.split, it.label, it.is_anomalous, bool(it.mask_path)) for it in r.items)
    assert got == [("test", "", None, False), ("test", "bad", True, True), ("test", "good", False, False),
                   ("train", "good", False, False), ("val", "good", False, False)]


def test_shanghaitech_like_frames_with_npy_labels(tmp_path):
    root = tmp_path / "shanghaitech"
    for t in range(6):
        img(root / "testing" / "frames" / "01_0014" / f"{t:03d}.jpg", gray=True)
        img(root / "training" / "frames" / "01_001" / f"{t:03d}.jpg", gray=True)
    (root / "testing" / "test_frame_mask").mkdir(parents=True)
    np.save(root / "testing" / "test_frame_mask" / "01_0014.npy", np.array([0, 1, 1, 0, 1, 0]))
    assert detect_format(root).name == "frames"
    r = import_dataset(root)
    test = sorted((it for it in r.items if it.split == "test"), key=lambda it: it.frame_index)
    assert [it.is_anomalous for it in test] == [False, True, True, False, True, False]
    assert {it.group for it in r.items} == {"01_0014", "01_001"} and not r.problems


def test_megadetector_batch_json(tmp_path):
    img(tmp_path / "cam" / "a.jpg", 200, 100)
    img(tmp_path / "cam" / "b.jpg", 200, 100)
    doc = {"images": [{"file": "cam/a.jpg", "max_detection_conf": 0.95, "detections": [
                          {"category": "1", "conf": 0.95, "bbox": [0.1, 0.2, 0.5, 0.5], "classifications": [["3", 0.8]]},
                          {"category": "2", "conf": 0.3, "bbox": [0.0, 0.0, 0.1, 0.1]},
                          {"category": "1", "conf": 0.5, "bbox": [0.1]}]},
                      {"file": "cam/b.jpg", "detections": []},
                      {"file": "cam/gone.jpg", "detections": []}],
           "detection_categories": {"1": "animal", "2": "person", "3": "vehicle"},
           "classification_categories": {"3": "Ocelot"}}
    write_text(tmp_path / "md_output.json", json.dumps(doc))
    assert detect_format(tmp_path).name == "camtrap"
    r = import_dataset(tmp_path)
    by = {Path(it.path).name: it for it in r.items}
    a = by["a.jpg"]
    assert [(x.label, x.box(), x.score) for x in a.annotations] == [("ocelot", (20.0, 20.0, 120.0, 70.0), 0.95),
                                                                    ("person", (0.0, 0.0, 20.0, 10.0), 0.3)]
    assert a.label == "ocelot" and by["b.jpg"].annotations == []
    msgs = [str(p) for p in r.problems]
    assert any("detection 3 malformed" in m for m in msgs) and any("gone.jpg" in m for m in msgs)


def test_unreadable_folder_becomes_data_error(tmp_path, monkeypatch):
    import anomaly_gui.core.formats.mvtec as mvtec

    root = make_mvtec(tmp_path / "m")

    def denied(folder, recursive=False):
        raise PermissionError(13, "Permission denied", str(folder))

    monkeypatch.setattr(mvtec, "list_images", denied)
    with pytest.raises(DataError, match="Permission denied") as info:
        import_dataset(root)
    assert str(root) in str(info.value.path)


def test_truncated_images_are_reported_at_import(tmp_path):
    img(tmp_path / "ok" / "a.png")
    img(tmp_path / "ok" / "b.jpg")
    for name in ("a.png", "b.jpg"):
        data = (tmp_path / "ok" / name).read_bytes()
        (tmp_path / "ng" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "ng" / name).write_bytes(data[: len(data) * 2 // 3])
    (tmp_path / "ok" / "c.jpg").write_bytes((tmp_path / "ok" / "b.jpg").read_bytes() + b"camera trailer " * 50)
    r = import_dataset(tmp_path)
    assert sorted(f"{Path(it.path).parent.name}/{Path(it.path).name}" for it in r.items) == ["ok/a.png", "ok/b.jpg", "ok/c.jpg"]
    msgs = [str(p) for p in r.problems]
    assert len(msgs) == 2 and all("truncated" in m and "/ng/" in m for m in msgs)


def test_mvtec_root_with_several_categories(tmp_path):
    make_mvtec(tmp_path / "mvtec_ad" / "bottle")
    make_mvtec(tmp_path / "mvtec_ad" / "cable")
    (tmp_path / "mvtec_ad" / "license.txt").write_text("CC BY-NC-SA 4.0")
    r = import_dataset(tmp_path / "mvtec_ad")
    assert r.format == "mvtec" and len(r.items) == 12
    assert {it.group for it in r.items} == {"bottle", "cable"} and r.meta["categories"] == ["bottle", "cable"]
    assert sum(1 for it in r.items if it.mask_path) == 2
