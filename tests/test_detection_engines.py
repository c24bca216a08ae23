"""Detectors on real HRSID SAR chips (tiny CPU settings): training end to end, progress, validation mAP
per epoch, cancel, model files that never unpickle, offline behaviour, bad training data per file."""
from __future__ import annotations

import math
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from anomaly_gui.core.errors import DataError, WeightsUnavailableError
from anomaly_gui.core.formats.base import Annotation, DatasetItem, import_dataset
from anomaly_gui.engines.base import Cancelled, Engine, RunContext, get_engine
from tests.conftest import shared_dataset

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hrsid_items() -> list[DatasetItem]:
    torch.set_num_threads(1)  # oversubscribed CI cores: one thread avoids OpenMP spin-waits
    res = import_dataset(shared_dataset("hrsid_ships"))
    items = sorted(res.items, key=lambda it: (not it.annotations, it.path))  # chips with ships first
    assert len(items) >= 22 and all(it.annotations for it in items[:10])
    return items


def _boxes(results) -> list[np.ndarray]:
    return [np.array([a.box() + (a.score,) for a in r.boxes]).reshape(-1, 5) for r in results]


@pytest.fixture
def no_network(monkeypatch):
    """Every connection attempt fails, as on an offline machine; the attempts are recorded."""
    attempts: list[object] = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network is unreachable (test)")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


def test_yolo_trains_offline_and_model_file_round_trips(hrsid_items, tmp_path, no_network, monkeypatch):
    pytest.importorskip("ultralytics")
    monkeypatch.setattr("anomaly_gui.engines.yolo.EPOCH_IMAGES", 8)  # no repeated chips: a short test
    eng = get_engine("yolo")(device="cpu", epochs=2, imgsz=160, batch=4, mosaic=0.0)
    logs, progress = [], []
    train = [DatasetItem(path=it.path, annotations=it.annotations, width=it.width, height=it.height)
             for it in hrsid_items[:8]]
    eng.fit(train, RunContext(log=logs.append, progress=lambda d, t, m: progress.append((d, t))))
    epochs = [e for e in logs if "epoch" in e]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert all(0.0 <= e["map50"] <= 1.0 and math.isfinite(e["loss"]) for e in epochs)
    assert progress and progress[-1][0] == progress[-1][1]
    assert eng.stats["classes"] == ["0"] and eng.stats["n_val"] >= 1
    # the user's folder is untouched (ultralytics writes labels.cache beside the labels it reads)
    assert not list(Path(hrsid_items[0].path).parent.parent.rglob("*.cache"))
    path = eng.save(tmp_path / "yolo.agm")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:  # a plain safetensors file: nothing to unpickle
        assert "anomaly_gui" in f.metadata()
    loaded = Engine.load(path, device="cpu")
    test = hrsid_items[20:22]
    a, b = eng.score(test), loaded.score(test)
    for x, y in zip(_boxes(a), _boxes(b)):
        assert x.shape == y.shape and np.allclose(x, y, atol=1e-3)
    assert loaded.classes == ["0"]


def test_yolo_default_network_is_the_imagenet_mobilenet_offline(hrsid_items, mobilenet_weights, no_network, monkeypatch, tmp_path):
    """The default model is MobileNetV2 (ImageNet weights read from disk, nothing downloaded: the network is
    unreachable here) with a stride-4 head; training starts from those weights, the input size follows the
    chips (800 px HRSID chips stay 800 px), and the model file rebuilds the network without the yaml file."""
    pytest.importorskip("ultralytics")
    no_network.clear()  # (a first import of ultralytics checks whether it is online, as the app never does: see ultralytics_offline)
    from anomaly_gui.engines.backbones import read_state_dict
    from anomaly_gui.engines.yolo.backbone import MOBILENET_MODEL

    monkeypatch.setenv("ANOMALY_GUI_WEIGHTS", str(mobilenet_weights))
    monkeypatch.setattr("anomaly_gui.engines.yolo.EPOCH_IMAGES", 4)
    eng = get_engine("yolo")(device="cpu", epochs=1, batch=2, mosaic=0.0, freeze_blocks=2)
    assert eng.params.model == MOBILENET_MODEL and eng.params.imgsz == 0
    eng.params.imgsz, eng.params.crop = 256, 96  # the automatic size is checked below, training stays small
    train = [DatasetItem(path=it.path, annotations=it.annotations, width=it.width, height=it.height) for it in hrsid_items[:4]]
    eng.fit(train)
    assert eng.stats["pretrained_backbone"] == str(mobilenet_weights) and not no_network
    # a pretrained backbone: one optimizer step per batch with our optimizer and lr0 (ultralytics' own
    # schedule summed 8 batches per step and its 'auto' optimizer ignored lr0), a short warm-up
    sched = eng.stats["schedule"]
    assert (sched["optimizer"], sched["lr0"], sched["accumulate"], sched["warmup_epochs"]) == ("SGD", 0.01, 1, 0.5)
    # trained on 96-px crops around ships and background, detects on whole chips at 256 px
    assert (eng.stats["train_imgsz"], eng.stats["crop"], eng.stats["imgsz"]) == (96, 96, 256)
    net = eng._yolo.model
    assert [int(s) for s in net.stride] == [4, 8, 16]
    ref = read_state_dict(mobilenet_weights)
    for name in ("features.1.conv.0.0.weight", "features.13.conv.2.weight"):  # stem and last kept block
        got = net.state_dict()["model.0.m." + name[len("features."):]].float().flatten()
        want = ref[name].float().flatten()
        assert torch.nn.functional.cosine_similarity(got, want, dim=0) > 0.9, name  # started there, moved a little
    # freeze_blocks=2: blocks 0-1 (weights and BatchNorm statistics) stay ImageNet's (up to the float16 of
    # ultralytics' best-epoch checkpoint), later blocks are trained
    state = net.state_dict()
    for name in ("features.1.conv.0.0.weight", "features.1.conv.0.1.running_mean", "features.0.0.weight"):
        assert torch.equal(state["model.0.m." + name[len("features."):]].half(), ref[name].half()), name
    assert not torch.equal(state["model.0.m.13.conv.2.weight"].half(), ref["features.13.conv.2.weight"].half())
    from anomaly_gui.engines.detection_common import check_training_items

    auto = get_engine("yolo")(device="cpu")._imgsz(check_training_items(train))
    assert auto == 800
    back = Engine.load(eng.save(tmp_path / "y.agm"), device="cpu")
    x, y = _boxes(eng.score(hrsid_items[20:21])), _boxes(back.score(hrsid_items[20:21]))
    assert x[0].shape == y[0].shape and np.allclose(x[0], y[0], atol=1e-3)


def test_yolo_cancel_and_missing_weights(hrsid_items):
    pytest.importorskip("ultralytics")
    eng = get_engine("yolo")(device="cpu", epochs=3, imgsz=128, batch=2, mosaic=0.0)
    with pytest.raises(Cancelled):
        eng.fit(hrsid_items[:4], RunContext(is_cancelled=lambda: True))
    with pytest.raises(WeightsUnavailableError, match="not found"):
        get_engine("yolo")(device="cpu", model="/nowhere/best.pt").fit(hrsid_items[:4])


def test_yolo_fine_tunes_a_users_pt(hrsid_items, tmp_path, no_network, monkeypatch):
    """A user's own ultralytics .pt (made here from yolov8n.yaml, with recognisable weights) is the start
    of training: after one epoch at a tiny learning rate the network still carries those weights."""
    pytest.importorskip("ultralytics")
    from anomaly_gui.engines.yolo import ultralytics_offline

    ultralytics_offline()
    from ultralytics import YOLO

    torch.manual_seed(0)
    mine = YOLO("yolov8n.yaml", task="detect")
    key = "model.4.cv1.conv.weight"
    with torch.no_grad():
        mine.model.state_dict()[key].mul_(3.0).add_(0.05)  # far from any fresh initialisation
    ref = mine.model.state_dict()[key].detach().clone().float()
    pt = tmp_path / "mine.pt"
    mine.save(str(pt))
    monkeypatch.setattr("anomaly_gui.engines.yolo.EPOCH_IMAGES", 4)
    eng = get_engine("yolo")(device="cpu", model=str(pt), epochs=1, imgsz=128, batch=2, mosaic=0.0, lr0=1e-6)
    train = [DatasetItem(path=it.path, annotations=it.annotations, width=it.width, height=it.height) for it in hrsid_items[:4]]
    logs = []
    eng.fit(train, RunContext(log=logs.append))
    assert eng.stats["source_model"] == str(pt) and any("fine-tuning from" in str(e.get("message", "")) for e in logs)
    assert eng.stats["schedule"]["lr0"] == 1e-6  # the user's learning rate is the one used
    got = eng._yolo.model.state_dict()[key].float().cpu()
    assert torch.allclose(got, ref, atol=2e-2), float((got - ref).abs().max())
    fresh = YOLO("yolov8n.yaml", task="detect").model.state_dict()[key].float()
    assert not torch.allclose(fresh, ref, atol=2e-2)


@pytest.mark.parametrize("detector", ["retinanet", "fcos"])
def test_retinanet_pretrained_learns_and_round_trips(hrsid_items, mobilenet_weights, tmp_path, detector):
    eng = get_engine("retinanet")(device="cpu", epochs=4, crop=128, crops_per_epoch=8, batch=4, lr=0.003, patience=0,
                                  backbone_weights=str(mobilenet_weights), detector=detector)
    scenes: dict[str, DatasetItem] = {}  # one chip per SAR scene: validation is held out by scene (issue 12)
    for it in hrsid_items[:20]:
        scenes.setdefault(Path(it.path).name.split("_")[0], it)
    train = [DatasetItem(path=it.path, annotations=it.annotations, width=800, height=800) for it in list(scenes.values())[:5]]
    logs = []
    eng.fit(train, RunContext(log=logs.append))
    assert eng.stats["pretrained_backbone"] == str(mobilenet_weights)
    losses = [e["loss"] for e in logs if "loss" in e]
    assert len(losses) == 4 and min(losses[1:]) < losses[0]  # the focal + box loss goes down (random crops: noisy)
    assert all("map50" in e and 0 <= e["map50"] <= 1 for e in logs if "loss" in e)
    # the run log says what box_refine=auto chose on the validation chips, with the figures it compared
    said = [e["message"] for e in logs if "box_refine auto" in str(e.get("message", ""))]
    assert len(said) == 1 and said[0].startswith(f"box_refine auto: {eng.stats['box_refine']} ") and "cfar" in said[0]
    path = eng.save(tmp_path / "r.agm")
    loaded = Engine.load(path, device="cpu")
    assert loaded.stats["detector"] == detector and type(loaded.model).__name__ == {"retinanet": "RetinaNet", "fcos": "FCOS"}[detector]
    a, b = eng.score(hrsid_items[20:21]), loaded.score(hrsid_items[20:21])
    assert np.allclose(_boxes(a)[0], _boxes(b)[0], atol=1e-4)
    assert all(box.source == "model" and box.kind == "box" for box in a[0].boxes)
    # a model file written before the box fusion existed was calibrated on NMS at 0.5, and still detects so
    from anomaly_gui.engines.modelfile import read_model_file, write_model_file

    tensors, meta = read_model_file(path)
    for key in ("box_merge", "merge_iou", "box_refine", "cfar_split"):
        del meta["params"][key]
    old = Engine.load(write_model_file(tmp_path / "old.agm", tensors, meta), device="cpu")
    assert (old.params.box_merge, old.params.merge_iou) == ("nms", 0.5) and eng.params.box_merge == "wbf"
    # ... and kept the learnt boxes (no CFAR refinement), whatever the fit decided today
    assert old.params.box_refine == "none" and not old._refining() and eng.params.box_refine == "auto"
    # a file from before the split of a box over several blobs snaps (when it does) to one blob, as it did
    meta["params"]["box_refine"] = "cfar"
    older = Engine.load(write_model_file(tmp_path / "old2.agm", tensors, meta), device="cpu")
    assert older._refining() and older.params.cfar_split is False and eng.params.cfar_split is True
    assert eng.stats["box_refine"] in ("cfar", "none") and loaded.stats["box_refine"] == eng.stats["box_refine"]


def test_retinanet_from_scratch_without_weights(hrsid_items, monkeypatch, tmp_path):
    import anomaly_gui.engines.backbones as backbones

    monkeypatch.setattr(backbones, "search_locations", lambda weights=None: [tmp_path / "no-weights-here"])
    eng = get_engine("retinanet")(device="cpu", epochs=1, crop=128, crops_per_epoch=2, batch=2, scale=0.5)
    logs = []
    eng.fit([DatasetItem(path=it.path, annotations=it.annotations) for it in hrsid_items[:2]], RunContext(log=logs.append))
    assert eng.stats["pretrained_backbone"] is None
    assert any("from scratch" in str(e.get("message", "")) for e in logs)
    # a scene larger than the tile is cut into tiles: progress tile by tile, boxes in scene coordinates
    from anomaly_gui.core.tiling import synthetic_scene, tile_grid

    synthetic_scene(tmp_path / "scene.tif", size=1000, n_ships=6)
    eng.params.tile, eng.params.min_confidence = 400, 0.0
    seen = []
    res = eng.score([DatasetItem(path=str(tmp_path / "scene.tif"))], RunContext(progress=lambda d, t, m: seen.append(m)))
    n_tiles = len(tile_grid(1000, 1000, 400, 66))
    assert sum("scene.tif: tile" in m for m in seen) == n_tiles
    assert all(0 <= v <= 1000 for b in res[0].boxes for v in b.box())
    with pytest.raises(WeightsUnavailableError, match="nowhere"):
        get_engine("retinanet")(device="cpu", backbone_weights="/nowhere/mnv2.pth").fit(hrsid_items[:2])
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsUnavailableError, match="bad.pth"):
        get_engine("retinanet")(device="cpu", backbone_weights=str(bad)).fit(hrsid_items[:2])


def test_bad_training_data_is_reported_per_file(tmp_path, hrsid_items):
    from anomaly_gui.engines.detection_common import check_training_items

    img = hrsid_items[0].path

    def item(path, *boxes):
        return DatasetItem(path=str(path), annotations=[Annotation("box", lab, {"x1": a, "y1": b, "x2": c, "y2": d})
                                                        for lab, a, b, c, d in boxes])

    items = [
        item(img, ("ship", -20, 10, 40, 60), ("ship", 790, 790, 900, 900)),  # outside: clipped
        item(img, ("ship", 100, 100, 100, 140)),  # empty: dropped
        item(tmp_path / "gone.jpg", ("ship", 0, 0, 5, 5)),  # image missing
        item(img, ("boat", 10, 10, 30, 30)),  # unknown class for a model of ships
    ]
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    items.append(item(tmp_path / "broken.jpg", ("ship", 0, 0, 5, 5)))
    data = check_training_items(items, classes=["ship"])
    text = "\n".join(data.problems)
    assert "outside the 800x800 image; clipped" in text and "is empty; dropped" in text
    assert "gone.jpg: image not found" in text and "'boat' is not one of the model's classes" in text
    assert "broken.jpg" in text
    assert len(data.items) == 3 and data.boxes[0].tolist() == [[0, 10, 40, 60], [790, 790, 800, 800]]
    with pytest.raises(DataError, match="nothing to learn"):
        get_engine("retinanet")(device="cpu", epochs=1).fit([item(tmp_path / "gone.jpg", ("ship", 0, 0, 5, 5))])


def _small_yolo_copy(tmp_path: Path, n: int = 12) -> Path:
    src = shared_dataset("hrsid_ships")
    dst = tmp_path / "ships"
    for sub in ("images", "labels"):
        (dst / sub).mkdir(parents=True)
    for img in sorted((src / "images").glob("*.jpg"))[:n]:
        shutil.copy(img, dst / "images" / img.name)
        shutil.copy(src / "labels" / f"{img.stem}.txt", dst / "labels" / f"{img.stem}.txt")
    return dst


def test_evaluate_cli_on_yolo_and_voc_with_bad_files(tmp_path, capsys):
    """`anomaly-gui evaluate` prints one JSON object; broken files are reported per file on stderr."""
    import json

    from anomaly_gui.cli import main
    from anomaly_gui.core.formats.voc import write_voc

    root = _small_yolo_copy(tmp_path)
    (root / "labels" / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")  # label without image
    (root / "labels" / sorted((root / "images").glob("*.jpg"))[0].stem).with_suffix(".txt").write_text(
        "0 0.5 0.5 0.1\n7 0.5 0.5 0.1 0.1\n0 1.4 0.5 0.2 0.2\n")  # short line, unknown class id, outside
    rc = main(["evaluate", str(root), "--engine", "retinanet", "--device", "cpu", "--param", "epochs=1",
               "--param", "crops_per_epoch=4", "--param", "scale=0.5", "--param", "pretrained=false", "--json"])
    out, err = capsys.readouterr()
    assert rc == 0
    res = json.loads(out)
    assert set(res) >= {"map50", "map50_95", "fit_seconds", "items_per_second", "n_train", "n_test", "engine", "device"}
    assert res["engine"] == "retinanet" and res["device"] == "cpu" and res["n_test"] >= 1
    assert res["steps"] == 1 and res["best_epoch"] in (0, 1)  # epochs=1 of one batch (4 crops of 8)
    assert isinstance(res["boxes_at_0.5"], int)
    assert 0.0 <= res["map50"] <= 1.0 and res["map50_95"] <= res["map50"]
    assert "orphan.txt" in err
    # the same items as Pascal VOC (written by the VOC writer), one XML damaged
    items = import_dataset(root).items
    voc = tmp_path / "voc"
    write_voc(items, voc)
    xmls = sorted(voc.rglob("*.xml"))
    xmls[0].write_text("<annotation><object><name>0</name><bndbox><xmin>1</xmin></bndbox></object></annotation>")
    res_voc = import_dataset(voc)
    assert any(xmls[0].name in str(p) for p in res_voc.problems)
    rc = main(["evaluate", str(voc), "--engine", "nope", "--json"])
    assert rc == 2
