"""Batch scoring of large scenes (tiles as units, merged per scene) and of video (frame ranges with context):
the same boxes / frame scores / maps as the engine gives over the whole scene or clip."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from anomaly_gui.core.formats.base import DatasetItem
from anomaly_gui.engines.base import get_engine

from tests.conftest import shared_dataset

pytest.importorskip("pyarrow")

from anomaly_gui.batch import score_batch, shards  # noqa: E402
from anomaly_gui.batch.scoring import parse_boxes  # noqa: E402


def _sorted_boxes(rows) -> np.ndarray:
    a = np.array([[*b[:5]] for b in rows], np.float64).reshape(-1, 5)
    return a[np.lexsort(a.T[::-1])]


@pytest.mark.slow
def test_large_scene_tiles_merge_to_the_engines_boxes(tmp_path, mobilenet_weights, monkeypatch):
    import torch

    from anomaly_gui.core.formats.base import import_dataset
    from anomaly_gui.core.tiling import synthetic_scene, tile_grid

    torch.set_num_threads(1)
    monkeypatch.setenv("ANOMALY_GUI_WEIGHTS", str(mobilenet_weights.parent))
    chips = [it for it in import_dataset(shared_dataset("hrsid_ships")).items if it.annotations][:2]
    # every box kept (min confidence 0): a real cross-tile merge to compare
    eng = get_engine("retinanet")(device="cpu", epochs=1, crops_per_epoch=4, batch=2, tile=400, min_confidence=0.0)
    eng.fit([DatasetItem(path=it.path, annotations=it.annotations) for it in chips])
    model = eng.save(tmp_path / "det.agm")
    scene = tmp_path / "scenes" / "scene.tif"
    scene.parent.mkdir()
    synthetic_scene(scene, size=1000, n_ships=6)
    expected = eng.score([DatasetItem(path=str(scene))])[0]
    assert expected.boxes
    out = tmp_path / "out"
    summary = score_batch(scene.parent, model, out, threshold=0.5, batch_size=4, device="cpu")
    n_tiles = len(tile_grid(1000, 1000, 400, 66))
    assert summary["units"] == n_tiles and summary["scenes_merged"] == 1 and summary["errors"] == 0
    assert len(shards.read_rows(out, shards.TILES)) == n_tiles
    (row,) = shards.latest_results(out)
    assert row["kind"] == "scene" and row["path"] == str(scene)
    got = _sorted_boxes(parse_boxes(row["boxes"]))
    want = _sorted_boxes([[*a.box(), a.score] for a in expected.boxes])
    assert got.shape == want.shape and np.allclose(got, want, atol=1e-3)
    assert row["score"] == pytest.approx(expected.score, abs=1e-6)
    assert row["verdict"] is (expected.score >= 0.5)
    # a rerun finds every tile written and merges the same scene again
    again = score_batch(scene.parent, model, out, threshold=0.5, device="cpu")
    assert again["scored_now"] == 0 and again["results"] == 1


def test_video_frame_ranges_with_context_equal_the_whole_clip(tmp_path):
    import torch

    from anomaly_gui.batch.importer import import_results
    from anomaly_gui.core import postprocess as pp
    from anomaly_gui.core.project import open_project
    from anomaly_gui.gui.review_model import ReviewData

    torch.set_num_threads(1)
    ped2 = shared_dataset("ucsd_ped2")
    clip = tmp_path / "Test001"
    clip.mkdir()
    for p in sorted((ped2 / "Test" / "Test001").iterdir())[:36]:
        shutil.copy(p, clip / p.name)
    train = [DatasetItem(path=str(p), kind="frame", group="Train001", frame_index=k)
             for k, p in enumerate(sorted((ped2 / "Train" / "Train001").iterdir())[:24])]
    eng = get_engine("stacked_ae")(device="cpu", window=4, width=32, height=32, epochs=1, batch_size=8)
    eng.fit(train)
    model = eng.save(tmp_path / "video.agm")
    frames = sorted(clip.iterdir())
    items = [DatasetItem(path=str(p), kind="frame", group="Test001", frame_index=k) for k, p in enumerate(frames)]
    whole = eng.score(items)
    errors = np.array([r.extra["frame_error"] for r in whole])
    maps16 = [r.map.astype(np.float16).astype(np.float32) for r in whole]
    threshold = float(np.median([m.max() for m in maps16]))
    out = tmp_path / "out"
    summary = score_batch(clip, model, out, threshold=threshold, frames_per_unit=10, device="cpu")
    assert summary["units"] == 4 and summary["results"] == 36 and summary["errors"] == 0
    rows = {r["frame_index"]: r for r in shards.latest_results(out)}
    assert sorted(rows) == list(range(36))
    for k in range(36):
        r = rows[k]
        assert r["path"] == str(frames[k])
        assert r["score"] == pytest.approx(errors[k], rel=1e-4, abs=1e-6), k  # range edges see the same windows
        assert r["verdict"] is pp.postprocess(maps16[k], threshold, 0.0).anomalous
    # imported, the frames get the clip's normalised score, as the app's own run stores it
    with open_project(tmp_path / "p.agproj") as proj:
        imported = import_results(proj, out)
        data = ReviewData(proj, imported.run_id)
        by_path = {it.id: it.path for it in proj.items()}
        got = {by_path[int(i)]: float(s) for i, s in zip(data.item_ids, data.scores)}
        for k, p in enumerate(frames):
            assert got[str(p)] == pytest.approx(whole[k].score, abs=1e-5)
        assert all(it.kind == "frame" and it.group == "Test001" for it in proj.items())
    # a video file: frames keyed path#i; imported as one video item with its peak frame, as the app stores it
    import cv2

    avi = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(avi), cv2.VideoWriter_fourcc(*"MJPG"), 10, (360, 240))
    for p in frames:
        writer.write(cv2.imread(str(p)))
    writer.release()
    want = eng.score([DatasetItem(path=str(avi), kind="video")])[0]
    out2 = tmp_path / "out_video"
    summary = score_batch(avi, model, out2, threshold=threshold, frames_per_unit=16, device="cpu")
    assert summary["units"] == 3 and summary["results"] == 36
    rows = sorted(shards.latest_results(out2), key=lambda r: r["frame_index"])
    assert [r["key"] for r in rows] == [f"{avi}#{k}" for k in range(36)]
    assert np.allclose([r["score"] for r in rows], want.extra["frame_errors"], rtol=1e-4, atol=1e-6)
    with open_project(tmp_path / "v.agproj") as proj:
        imported = import_results(proj, out2)
        (item,) = proj.items()
        assert item.kind == "video" and item.path == str(avi)
        score = proj.scores(imported.run_id)[item.id]
        assert score.score == pytest.approx(want.score, abs=1e-5)
        assert score.extra["peak_frame"] == want.extra["peak_frame"]
