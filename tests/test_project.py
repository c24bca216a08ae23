"""The project database: every table, reopening, migrations, bad files and a concurrent writer."""
from __future__ import annotations

import sqlite3
import threading

import numpy as np
import pytest

from anomaly_gui.core.project import schema as project_mod
from anomaly_gui.core.errors import DataError
from anomaly_gui.core.formats.base import Annotation, DatasetItem
from anomaly_gui.core.formats.common import box_annotation
from anomaly_gui.core.project import SCHEMA_VERSION, open_project


def sample_items() -> list[DatasetItem]:
    return [
        DatasetItem("/d/train/good/0.png", split="train", label="good", is_anomalous=False, width=32, height=24),
        DatasetItem("/d/test/cut/0.png", split="test", label="cut", is_anomalous=True, mask_path="/d/gt/cut/0_mask.png",
                    annotations=[box_annotation("cut", 1, 2, 10, 12)], meta={"note": "ü"}),
        DatasetItem("/d/clip.avi", kind="video", meta={"frames": 30, "fps": 10.0}),
        DatasetItem("/d/Test001/001.tif", split="test", kind="frame", group="Test001", frame_index=0, is_anomalous=None),
    ]


def test_items_round_trip_and_filters(tmp_project):
    ids = tmp_project.add_items(sample_items(), source="/d")
    assert len(ids) == 4 and len(set(ids)) == 4
    items = tmp_project.items()
    assert [it.path for it in items] == [it.path for it in sample_items()]
    cut = tmp_project.item(ids[1])
    assert cut.is_anomalous is True and cut.mask_path.endswith("0_mask.png") and cut.meta == {"note": "ü"}
    assert [(a.kind, a.label, a.box()) for a in cut.annotations] == [("box", "cut", (1.0, 2.0, 10.0, 12.0))]
    frame = tmp_project.item(ids[3])
    assert frame.frame_index == 0 and frame.group == "Test001" and frame.is_anomalous is None
    assert tmp_project.item(ids[2]).frame_index is None and tmp_project.item(ids[2]).kind == "video"
    assert [it.label for it in tmp_project.items(split="test")] == ["cut", ""]
    assert tmp_project.count_items(split="test") == 2 and tmp_project.count_items(group="Test001") == 1
    assert tmp_project.splits() == {"": {"": 1}, "test": {"": 1, "cut": 1}, "train": {"good": 1}}
    with_anns = tmp_project.items(ids=[ids[1]], with_annotations=True)
    assert len(with_anns[0].annotations) == 1
    tmp_project.set_split([ids[0]], "val")
    assert tmp_project.item(ids[0]).split == "val"
    tmp_project.set_item_size(ids[1], 64, 48)
    assert (tmp_project.item(ids[1]).width, tmp_project.item(ids[1]).height) == (64, 48)
    with pytest.raises(KeyError):
        tmp_project.item(9999)


def test_reimport_updates_items_and_keeps_user_annotations(tmp_project):
    ids = tmp_project.add_items(sample_items())
    tmp_project.add_annotation(ids[1], Annotation("polygon", "cut", {"points": [[0, 0], [5, 0], [5, 5]]}, source="user"))
    again = sample_items()
    again[1].label = "crack"
    again[1].annotations = [box_annotation("crack", 0, 0, 3, 3), box_annotation("crack", 4, 4, 8, 8)]
    assert tmp_project.add_items(again) == ids  # same path and frame: same item
    anns = tmp_project.annotations(ids[1])
    assert sorted((a.source, a.label) for a in anns) == [("import", "crack"), ("import", "crack"), ("user", "cut")]
    assert tmp_project.item(ids[1]).label == "crack" and tmp_project.count_items() == 4


def test_annotations_verdicts_labels_zones_settings(tmp_project):
    ids = tmp_project.add_items(sample_items())
    a_id = tmp_project.add_annotation(ids[0], box_annotation("dent", 1, 1, 4, 4))
    tmp_project.update_annotation(a_id, label="scratch", geometry={"x1": 2, "y1": 2, "x2": 6, "y2": 6}, status="accepted")
    ann = tmp_project.annotations(ids[0])[0]
    assert (ann.label, ann.box(), ann.status) == ("scratch", (2.0, 2.0, 6.0, 6.0), "accepted")
    with pytest.raises(ValueError):
        tmp_project.update_annotation(a_id, item_id=3)
    tmp_project.delete_annotation(a_id)
    assert tmp_project.annotations(ids[0]) == []

    tmp_project.set_verdict(ids[0], "anomalous")
    tmp_project.set_verdict(ids[0], verified=True, note="checked twice")
    v = tmp_project.verdict(ids[0])
    assert (v.verdict, v.verified, v.note) == ("anomalous", True, "checked twice")
    assert tmp_project.verdict(ids[1]) is None and set(tmp_project.verdicts()) == {ids[0]}
    with pytest.raises(ValueError):
        tmp_project.set_verdict(ids[0], "maybe")

    tmp_project.set_label_class("ship", "#ff0000")
    tmp_project.set_label_class("ship", "#00ff00")
    assert tmp_project.label_classes() == {"ship": "#00ff00"}

    z = tmp_project.add_zone("door", [[0, 0], [10, 0], [10, 10]])
    z_item = tmp_project.add_zone("bench", [[1, 1], [2, 2], [1, 2]], item_id=ids[2])
    tmp_project.update_zone(z, name="gate")
    assert [zz["name"] for zz in tmp_project.zones(ids[2])] == ["gate", "bench"]
    assert [zz["name"] for zz in tmp_project.zones(ids[0])] == ["gate"]
    tmp_project.delete_zone(z_item)
    assert len(tmp_project.zones()) == 1

    tmp_project.set_setting("threshold", 0.42)
    tmp_project.set_setting("layout", {"docks": ["a", "b"]})
    assert tmp_project.setting("threshold") == 0.42 and tmp_project.setting("layout") == {"docks": ["a", "b"]}
    assert tmp_project.setting("missing", "dflt") == "dflt"


def test_runs_scores_and_cached_maps(tmp_project):
    ids = tmp_project.add_items(sample_items())
    run = tmp_project.create_run("patchcore", "image", {"k": 3}, name="first")
    assert run.status == "created" and run.params == {"k": 3} and run.title == "first"
    assert tmp_project.run_dir(run.id).is_dir()
    tmp_project.update_run(run.id, status="done", metrics={"image_auroc": 0.93}, threshold=1.5, min_area=12.0)
    tmp_project.append_run_log(run.id, {"epoch": 1, "loss": 0.5})
    tmp_project.append_run_log(run.id, {"epoch": 2, "loss": 0.25})
    r = tmp_project.run(run.id)
    assert (r.status, r.metrics, r.threshold, r.min_area) == ("done", {"image_auroc": 0.93}, 1.5, 12.0)
    assert [e["loss"] for e in r.log] == [0.5, 0.25]
    with pytest.raises(ValueError):
        tmp_project.update_run(run.id, engine="other")

    maps = [np.linspace(0, 3, 12, dtype=np.float32).reshape(3, 4), None]
    tmp_project.save_scores(run.id, ids[:2], [0.1, 2.5], maps, [{"regions": 0}, {"regions": 2}])
    scores = tmp_project.scores(run.id)
    assert scores[ids[0]].score == pytest.approx(0.1) and scores[ids[1]].extra == {"regions": 2}
    m = tmp_project.score_map(run.id, ids[0])
    assert m.dtype == np.float32 and np.allclose(m, maps[0], atol=2e-3)  # cached as float16
    assert tmp_project.score_map(run.id, ids[1]) is None
    tmp_project.save_scores(run.id, [ids[0]], [0.2])  # a new score without a map keeps the cached map
    assert tmp_project.scores(run.id)[ids[0]].score == pytest.approx(0.2)
    assert tmp_project.score_map(run.id, ids[0]) is not None

    other = tmp_project.create_run("ae", "image", {})
    assert [x.id for x in tmp_project.runs(task="image")] == [run.id, other.id] and tmp_project.runs(task="video") == []
    tmp_project.add_annotation(ids[0], box_annotation("det", 0, 0, 1, 1), run_id=run.id)
    assert len(tmp_project.annotations_by_item(run_id=run.id)[ids[0]]) == 1
    tmp_project.delete_run(run.id)
    assert tmp_project.scores(run.id) == {} and not tmp_project.run_dir(run.id).exists()
    assert tmp_project.annotations(ids[0]) == []  # model annotations go with their run
    tmp_project.remove_items([ids[1]])
    assert tmp_project.count_items() == 3 and tmp_project.annotations(ids[1]) == []


def test_reopen_restores_everything(tmp_path):
    path = tmp_path / "p.agproj"
    with open_project(path) as proj:
        ids = proj.add_items(sample_items(), source="/d")
        proj.set_verdict(ids[1], "normal", verified=True)
        run = proj.create_run("patchcore", "image", {"k": 1})
        proj.update_run(run.id, status="done", threshold=0.7)
        proj.save_scores(run.id, ids[:1], [0.3], [np.ones((2, 2), np.float32)])
        proj.add_zone("z", [[0, 0], [1, 0], [1, 1]])
        proj.set_setting("opacity", 0.6)
        proj.set_label_class("cut", "#123456")
        proj.record_import("/d", "mvtec", 4, ["/d/x.png: empty file"])
    with open_project(path) as proj:
        assert [it.path for it in proj.items()] == [it.path for it in sample_items()]
        assert proj.item(ids[1]).annotations[0].label == "cut"
        assert proj.verdict(ids[1]).verified and proj.run(run.id).threshold == 0.7
        assert np.array_equal(proj.score_map(run.id, ids[0]), np.ones((2, 2), np.float32))
        assert proj.zones()[0]["name"] == "z" and proj.setting("opacity") == 0.6
        assert proj.label_classes() == {"cut": "#123456"}
        imp = proj.imports()[0]
        assert (imp["format"], imp["n_items"], imp["problems"]) == ("mvtec", 4, ["/d/x.png: empty file"])
        assert proj.schema_version == SCHEMA_VERSION
        assert proj.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_open_project_adds_suffix_and_cache_folder(tmp_path):
    with open_project(tmp_path / "inspection") as proj:
        assert proj.path.name == "inspection.agproj" and proj.cache_dir.is_dir()


def test_non_project_files_give_data_error(tmp_path):
    junk = tmp_path / "notes.agproj"
    junk.write_text("these are my notes, not a database\n" * 50)
    with pytest.raises(DataError, match="notes.agproj"):
        open_project(junk)
    assert junk.read_text().startswith("these are my notes")  # nothing overwritten


def test_foreign_sqlite_file_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "photos.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE albums (id INTEGER PRIMARY KEY, name TEXT)")
    db.execute("INSERT INTO albums(name) VALUES ('holidays')")
    db.commit()
    db.close()
    with pytest.raises(DataError, match="another program"):
        open_project(path)
    db = sqlite3.connect(path)
    assert [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")] == ["albums"]
    db.close()


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "future.agproj"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 5}")
    db.close()
    with pytest.raises(DataError, match="newer"):
        open_project(path)


def test_migration_upgrades_an_old_project_and_keeps_its_data(tmp_path, monkeypatch):
    path = tmp_path / "old.agproj"
    with open_project(path) as proj:
        proj.add_items(sample_items())
    extra = "ALTER TABLE items ADD COLUMN reviewer TEXT NOT NULL DEFAULT ''"
    monkeypatch.setattr(project_mod, "MIGRATIONS", [*project_mod.MIGRATIONS, extra])
    monkeypatch.setattr(project_mod, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with open_project(path) as proj:
        assert proj.schema_version == SCHEMA_VERSION + 1
        assert proj.count_items() == 4
        cols = [r[1] for r in proj.db.execute("PRAGMA table_info(items)")]
        assert "reviewer" in cols


def test_failed_migration_rolls_back(tmp_path, monkeypatch):
    path = tmp_path / "p.agproj"
    with open_project(path) as proj:
        proj.add_items(sample_items()[:1])
    monkeypatch.setattr(project_mod, "MIGRATIONS", [*project_mod.MIGRATIONS, "ALTER TABLE nope ADD COLUMN x"])
    monkeypatch.setattr(project_mod, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises((DataError, sqlite3.Error)):
        open_project(path)
    monkeypatch.undo()
    with open_project(path) as proj:
        assert proj.schema_version == SCHEMA_VERSION and proj.count_items() == 1


def test_concurrent_writer_thread(tmp_path):
    with open_project(tmp_path / "c.agproj") as proj:
        ids = proj.add_items([DatasetItem(f"/d/{i}.png") for i in range(60)])
        run = proj.create_run("x", "image", {})
        errors: list[BaseException] = []

        def writer() -> None:
            try:
                for chunk in range(0, 60, 5):
                    part = ids[chunk:chunk + 5]
                    proj.save_scores(run.id, part, [float(i) for i in part], [np.full((4, 4), i, np.float32) for i in part])
                    proj.add_annotation(part[0], box_annotation("w", 0, 0, 1, 1), run_id=run.id)
            except BaseException as exc:  # the assertion below reports it
                errors.append(exc)

        t = threading.Thread(target=writer)
        t.start()
        reads = 0
        while t.is_alive() or reads < 5:  # the GUI thread keeps reading and writing meanwhile
            proj.items()
            proj.set_verdict(ids[reads % 60], "normal")
            reads += 1
        t.join()
        assert errors == []
        assert len(proj.scores(run.id)) == 60 and len(proj.annotations_by_item(run_id=run.id)) == 12
        assert float(proj.score_map(run.id, ids[-1])[0, 0]) == float(ids[-1])


def test_listeners_hear_every_kind_of_change(tmp_project):
    topics: list[str] = []
    tmp_project.add_listener(topics.append)
    ids = tmp_project.add_items(sample_items()[:1])
    tmp_project.add_annotation(ids[0], box_annotation("a", 0, 0, 1, 1))
    tmp_project.set_verdict(ids[0], "normal")
    run = tmp_project.create_run("x", "image", {})
    tmp_project.save_scores(run.id, ids, [1.0])
    tmp_project.add_zone("z", [[0, 0], [1, 1], [0, 1]])
    tmp_project.set_label_class("a", "#fff")
    assert topics == ["items", "annotations", "verdicts", "runs", "scores", "zones", "labels"]
