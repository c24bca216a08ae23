"""Readers on the real datasets in ../shared/data (skipped without them) and on the bundled sample data."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from anomaly_gui.core.formats.base import detect_format, import_dataset
from anomaly_gui.core.formats.yolo import write_yolo
from anomaly_gui.core.imageio import image_size, read_image
from anomaly_gui.sample_data import REPO_SAMPLE, ensure_sample_data
from tests.conftest import shared_dataset


@pytest.mark.parametrize("name, fmt", [("mvtec_leather", "mvtec"), ("mvtec_screw", "mvtec"), ("ucsd_ped2", "frames"),
                                       ("hrsid_ships", "yolo"), ("camera_traps", "camtrap"),
                                       ("camera_traps/Southwest", "camtrap"), ("camera_traps/Jaguar", "camtrap")])
def test_real_datasets_are_detected(name, fmt):
    assert detect_format(shared_dataset(name)).name == fmt


def test_mvtec_leather_missing_masks_are_unknown_not_normal():
    r = import_dataset(shared_dataset("mvtec_leather"))
    counts = Counter((it.split, it.label) for it in r.items)
    assert counts[("train", "good")] == 4 and counts[("test", "good")] == 4 and counts[("test", "glue")] == 4
    anomalous = [it for it in r.items if it.is_anomalous]
    assert len(anomalous) == 20
    with_mask = [it for it in anomalous if it.mask_path]
    assert 0 < len(with_mask) < len(anomalous)  # the subset has masks for some test images only
    for it in with_mask:
        assert Path(it.mask_path).stem == Path(it.path).stem + "_mask"
        assert Path(it.mask_path).parent.name == it.label
    assert all(it.mask_path is None for it in r.items if not it.is_anomalous)
    assert all(it.width == 1024 and it.height == 1024 for it in r.items)
    # masks of other images of the full dataset are reported, never attached to the wrong image
    assert all("mask without a matching test image" in str(p) for p in r.problems)


def test_mvtec_screw_image_level_only():
    r = import_dataset(shared_dataset("mvtec_screw"))
    assert Counter((it.split, it.label) for it in r.items) == {("train", "good"): 60, ("test", "good"): 10, ("test", "defect"): 10}
    assert not any(it.mask_path for it in r.items) and not r.problems


def test_ucsd_ped2_frame_ranges():
    r = import_dataset(shared_dataset("ucsd_ped2"))
    clips = Counter(it.group for it in r.items)
    assert clips == {"Train001": 120, "Train002": 150, "Train003": 150, "Test001": 180, "Test002": 180, "Test003": 150} or \
        set(clips) >= {"Train001", "Test001", "Test002", "Test003"}
    t1 = {it.frame_index: it for it in r.items if it.group == "Test001"}
    assert t1[59].is_anomalous is False and t1[60].is_anomalous is True and t1[179].is_anomalous is True  # [61, 180], 1-based
    assert all(it.mask_path for it in t1.values())
    t3 = {it.frame_index: it for it in r.items if it.group == "Test003"}
    assert t3[0].is_anomalous and t3[145].is_anomalous and not t3[146].is_anomalous  # [1, 146]
    assert all(it.is_anomalous is False for it in r.items if it.split == "train")
    assert (t1[0].width, t1[0].height) == (360, 240)


def test_hrsid_boxes_sit_on_ship_pixels(tmp_path):
    root = shared_dataset("hrsid_ships")
    r = import_dataset(root)
    assert len(r.items) == 26 and not r.problems
    n_boxes = 0
    for it in r.items[:8]:
        mask = read_image(root / "masks" / (Path(it.path).stem + ".png"))
        mask = (mask if mask.ndim == 2 else mask.max(axis=2)) > 0
        for a in it.annotations:
            x1, y1, x2, y2 = (int(round(v)) for v in a.box())
            inside = mask[y1:y2, x1:x2]
            # the YOLO boxes were derived from these masks: ship pixels touch all four sides of the box
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
            n_boxes += 1
    assert n_boxes > 0
    # the real labels survive a YOLO export unchanged
    back = import_dataset(write_yolo(r.items, tmp_path / "out", r.classes))
    orig = {Path(it.path).name: [a.box() for a in it.annotations] for it in r.items}
    for it in back.items:
        assert np.allclose(orig[Path(it.path).name], [a.box() for a in it.annotations], atol=1e-6)


def test_camera_traps_species_and_megadetector_boxes():
    root = shared_dataset("camera_traps")
    r = import_dataset(root)
    by = {Path(it.path).name: it for it in r.items}
    assert by["IMAG0031_wolf.JPG"].label == "wolf" and by["testdataowl.JPG"].label == "owl"
    assert by["B013_IMG_0005_empty.jpeg"].label == "empty"
    jag = [it for it in r.items if Path(it.path).parent.name == "Jaguar"]
    assert len(jag) == 6 and all(it.label == "jaguar" and len(it.annotations) >= 1 for it in jag)
    it = by["AREAS 17_20051011_0438.jpg"]
    w, h = image_size(it.path)
    box = it.annotations[0].box()
    assert box == pytest.approx((0.3192 * w, 0.4825 * h, (0.3192 + 0.3123) * w, (0.4825 + 0.2114) * h), rel=1e-3)
    assert it.annotations[0].score == pytest.approx(0.9628, abs=1e-4)
    assert [p for p in r.problems if "not present" not in str(p)] == []


def test_sample_data_subsets():
    root = ensure_sample_data()
    expected = {"product": "mvtec", "video": "frames", "sar": "yolo", "camera_traps": "coco_camtrap"}
    for name, fmt in expected.items():
        r = import_dataset(root / name)
        assert r.format == fmt and not r.problems, (name, r.problems[:3])
    prod = import_dataset(root / "product")
    assert Counter(it.split for it in prod.items) == {"train": 20, "test": 14}
    defects = [it for it in prod.items if it.is_anomalous]
    assert len(defects) == 8 and all(it.mask_path and read_image(it.mask_path).any() for it in defects)
    video = import_dataset(root / "video")
    test = [it for it in video.items if it.split == "test"]
    assert 0 < sum(bool(it.is_anomalous) for it in test) < len(test)
    for it in test:  # the frame ranges agree with the masks
        assert bool(it.is_anomalous) == bool(read_image(it.mask_path).any())
    sar_voc = import_dataset(root / "sar", "voc")
    sar_yolo = import_dataset(root / "sar")
    voc_boxes = {Path(it.path).name: [a.box() for a in it.annotations] for it in sar_voc.items}
    assert sum(len(v) for v in voc_boxes.values()) > 10
    for it in sar_yolo.items:
        assert np.allclose(voc_boxes[Path(it.path).name], [a.box() for a in it.annotations], atol=1e-6) or not it.annotations
    cams = import_dataset(root / "camera_traps")
    assert {it.label for it in cams.items} == {"deer", "fox", "boar", "empty"}
    assert all(it.annotations for it in cams.items if it.label != "empty")


def test_sample_generator_is_deterministic(tmp_path):
    from anomaly_gui.sample_data import make_sar

    make_sar(tmp_path / "a", np.random.default_rng([7, 2]))
    make_sar(tmp_path / "b", np.random.default_rng([7, 2]))
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files and all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)


def test_committed_sample_data_is_small():
    if not REPO_SAMPLE.is_dir():
        pytest.skip("no committed sample_data/ in this checkout")
    size = sum(p.stat().st_size for p in REPO_SAMPLE.rglob("*") if p.is_file())
    assert size < 10e6


def test_ensure_sample_data_generates_when_not_bundled(tmp_path, monkeypatch):
    """An installed package has no sample_data/ beside it: the same data is made under the home folder."""
    import anomaly_gui.sample_data as sd

    monkeypatch.setattr(sd, "REPO_SAMPLE", tmp_path / "not_there")
    monkeypatch.setenv("ANOMALY_GUI_SAMPLE_DIR", str(tmp_path / "home_sample"))
    root = sd.ensure_sample_data()
    assert root == tmp_path / "home_sample" and (root / "SAMPLE_DATA_VERSION").is_file()
    stamp_time = (root / "SAMPLE_DATA_VERSION").stat().st_mtime_ns
    assert sd.ensure_sample_data() == root and (root / "SAMPLE_DATA_VERSION").stat().st_mtime_ns == stamp_time  # made once
    if not REPO_SAMPLE.is_dir():
        return
    # the committed copy is what the script makes (pixels; encoders may differ in bytes)
    files = sorted(p.relative_to(REPO_SAMPLE) for p in REPO_SAMPLE.rglob("*") if p.is_file() and p.name != "SAMPLE_DATA_VERSION")
    made = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file() and p.name != "SAMPLE_DATA_VERSION")
    assert files == made
    for rel in files:
        if rel.suffix in (".png", ".jpg"):
            a, b = read_image(REPO_SAMPLE / rel), read_image(root / rel)
            assert a.shape == b.shape and np.abs(a.astype(int) - b).max() <= (3 if rel.suffix == ".jpg" else 0), rel
        elif rel.suffix in (".txt", ".yaml", ".xml"):
            assert (REPO_SAMPLE / rel).read_text() == (root / rel).read_text(), rel


def test_sample_product_defects_are_findable():
    """A colour-deviation baseline (no learning) separates the sample defects and points inside their masks."""
    import cv2
    from sklearn.metrics import roc_auc_score

    r = import_dataset(ensure_sample_data() / "product")
    train = np.stack([read_image(it.path).astype(np.float32) for it in r.items if it.split == "train"])
    mean_colour = train.reshape(-1, 3).mean(0)
    labels, scores = [], []
    for it in (x for x in r.items if x.split == "test"):
        dev = np.linalg.norm(read_image(it.path).astype(np.float32) - mean_colour, axis=2)
        dev = cv2.GaussianBlur(dev, (0, 0), 4)
        labels.append(int(it.is_anomalous))
        scores.append(float(dev.max()))
        if it.mask_path:
            y, x = np.unravel_index(int(dev.argmax()), dev.shape)
            mask = read_image(it.mask_path) > 0
            assert mask[max(0, y - 8):y + 9, max(0, x - 8):x + 9].any(), it.path
    assert roc_auc_score(labels, scores) == 1.0


def test_camera_traps_survive_coco_camtrap_and_voc_export(tmp_path):
    from anomaly_gui.core.formats.coco import write_coco
    from anomaly_gui.core.formats.voc import write_voc

    r = import_dataset(shared_dataset("camera_traps"))
    want = {Path(it.path).name: (it.label, [(a.label, a.box(), a.score) for a in it.annotations]) for it in r.items}
    back = import_dataset(write_coco(r.items, tmp_path / "cct", camtrap=True).parent)
    assert back.format == "coco_camtrap" and not back.problems
    assert {Path(it.path).name: (it.label, [(a.label, a.box(), a.score) for a in it.annotations]) for it in back.items} == want
    voc = import_dataset(write_voc(r.items, tmp_path / "voc"))
    boxes = {Path(it.path).name: [(a.label, a.box()) for a in it.annotations] for it in voc.items}
    assert boxes == {k: [(lbl, box) for lbl, box, _ in v[1]] for k, v in want.items()}


def test_generator_never_replaces_foreign_folders(tmp_path):
    from anomaly_gui.core.errors import DataError
    from anomaly_gui.sample_data import generate

    (tmp_path / "product").mkdir()
    (tmp_path / "product" / "my_photo.png").write_bytes(b"precious")
    with pytest.raises(DataError, match="refusing"):
        generate(tmp_path)
    assert (tmp_path / "product" / "my_photo.png").read_bytes() == b"precious"
