"""Exports: every annotation format re-imports to exactly what was exported; scores tables; atomic writes."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.export import ExportExistsError, export_annotations, export_scores
from anomaly_gui.core.export.masks import (
    annotation_mask,
    mask_geometry,
    rle_decode,
    rle_encode,
)
from anomaly_gui.core.formats.base import Annotation, import_dataset

FORMATS = ("voc", "yolo", "coco", "labelme")


def _annotate(proj) -> dict[int, list[Annotation]]:
    """Shapes of every kind on the first three items; returns what was stored per item id."""
    ids = proj.item_ids()
    m = np.zeros((48, 64), bool)
    m[5:15, 40:52] = True
    shapes = {
        ids[0]: [Annotation("box", "scratch", {"x1": 3, "y1": 4.5, "x2": 30.25, "y2": 40}, source="user"),
                 Annotation("polygon", "crack", {"points": [[10, 10], [50, 12.125], [30, 44]]}, source="user"),
                 Annotation("point", "tip", {"x": 5, "y": 6}, source="user")],
        ids[1]: [Annotation("mask", "crack", mask_geometry(m), source="user"),
                 Annotation("box", "scratch", {"x1": 1, "y1": 1, "x2": 9, "y2": 9}, source="import")],
        ids[2]: [Annotation("box", "scratch", {"x1": 2, "y1": 2, "x2": 8, "y2": 8}, source="model", status="rejected"),
                 Annotation("box", "crack", {"x1": 20, "y1": 20, "x2": 28, "y2": 30}, source="model", status="accepted"),
                 Annotation("box", "crack", {"x1": 40, "y1": 5, "x2": 60, "y2": 15}, source="model")],
    }
    for iid, anns in shapes.items():
        proj.add_annotations(iid, anns)
    return shapes


def _expected(fmt: str, ann: Annotation, size: tuple[int, int]) -> list[tuple[str, str, dict]]:
    """What format `fmt` can carry of one analyst annotation."""
    if ann.kind == "point":
        return [("point", ann.label, ann.geometry)] if fmt == "labelme" else []
    if ann.kind == "mask":
        m = annotation_mask(ann, size)
        ys, xs = np.nonzero(m)
        if fmt == "voc":
            return [("box", ann.label, {"x1": xs.min(), "y1": ys.min(), "x2": xs.max() + 1, "y2": ys.max() + 1})]
        return [("mask-polygon", ann.label, {})]
    if ann.kind == "polygon" and fmt == "voc":
        x1, y1, x2, y2 = ann.box()
        return [("box", ann.label, {"x1": x1, "y1": y1, "x2": x2, "y2": y2})]
    return [(ann.kind, ann.label, ann.geometry)]


def _same_geometry(kind: str, got: dict, want: dict) -> bool:
    if kind == "box":
        return all(abs(float(got[k]) - float(want[k])) < 1e-6 for k in ("x1", "y1", "x2", "y2"))
    if kind == "polygon":
        return np.allclose(np.asarray(got["points"], float), np.asarray(want["points"], float), atol=1e-6)
    return abs(got["x"] - want["x"]) < 1e-6 and abs(got["y"] - want["y"]) < 1e-6


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_then_reimport_gives_back_what_was_exported(scored_project, tmp_path, fmt):
    proj = scored_project
    shapes = _annotate(proj)
    out = tmp_path / f"out_{fmt}"
    result = export_annotations(proj, fmt, out)
    assert result.n_items == 12
    back = import_dataset(out, fmt)
    assert not back.problems, back.problems
    assert len(back.items) == 12
    by_name = {Path(it.path).stem: it for it in back.items}
    items = {it.id: it for it in proj.items()}
    for iid, anns in shapes.items():
        src = items[iid]
        stem = Path(src.path).stem  # names are unique here, so the writers keep them
        got = [a for a in by_name[stem].annotations]
        analyst = [a for a in anns if a.status != "rejected" and not (a.source == "model" and a.status != "accepted")]
        want = [e for a in analyst for e in _expected(fmt, a, (64, 48))]
        assert [(g.kind, g.label) for g in got] == [("polygon" if k == "mask-polygon" else k, lab) for k, lab, _ in want]
        for g, (kind, _lab, geom) in zip(got, want):
            if kind == "mask-polygon":  # the polygon fills exactly the painted pixels
                ann_mask = next(a for a in analyst if a.kind == "mask")
                assert (annotation_mask(g, (64, 48)) == annotation_mask(ann_mask, (64, 48))).all()
            else:
                assert _same_geometry(kind, g.geometry, geom), (fmt, kind, g.geometry, geom)
    # items without shapes come back without shapes
    assert sum(len(it.annotations) for it in back.items) == sum(len(_expected(fmt, a, (64, 48)))
                                                              for anns in shapes.values() for a in anns
                                                              if a.status != "rejected" and not (a.source == "model" and a.status != "accepted"))


def test_mask_pngs_match_the_shapes(scored_project, tmp_path):
    from anomaly_gui.core.export.masks import read_mask_png

    proj = scored_project
    shapes = _annotate(proj)
    out = tmp_path / "masks"
    result = export_annotations(proj, "masks", out, only_annotated=True)
    assert result.n_items == 3
    classes = (out / "classes.txt").read_text().split()
    index = json.loads((out / "items.json").read_text())
    paths = {v: k for k, v in index.items()}
    for iid, anns in shapes.items():
        item = proj.item(iid)
        stem = paths[item.path]
        analyst = [a for a in anns if a.kind != "point" and a.status != "rejected" and not (a.source == "model" and a.status != "accepted")]
        want = np.zeros((48, 64), bool)
        for a in analyst:
            want |= annotation_mask(a, (64, 48))
        assert (read_mask_png(out / "masks" / f"{stem}.png") == want).all()
        from anomaly_gui.core.imageio import read_image

        cls = read_image(out / "class_masks" / f"{stem}.png")
        for a in analyst:  # the last painted shape wins where shapes overlap
            only = annotation_mask(a, (64, 48)) & ~np.logical_or.reduce(
                [annotation_mask(b, (64, 48)) for b in analyst[analyst.index(a) + 1:]] or [np.zeros((48, 64), bool)])
            assert (cls[only] == classes.index(a.label) + 1).all()


def test_rle_round_trip_and_validation():
    rng = np.random.default_rng(0)
    for shape in ((1, 1), (7, 5), (32, 48)):
        m = rng.random(shape) > 0.5
        assert (rle_decode(rle_encode(m)) == m).all()
    full = np.ones((4, 4), bool)
    assert rle_encode(full)["counts"][0] == 0
    with pytest.raises(ValueError):
        rle_decode({"size": [2, 2], "counts": [1, 1]})


def test_existing_target_is_kept_unless_overwrite_and_failed_export_changes_nothing(scored_project, tmp_path, monkeypatch):
    from anomaly_gui.core.export import annotations as ann_mod

    proj = scored_project
    _annotate(proj)
    out = tmp_path / "voc"
    export_annotations(proj, "voc", out)
    marker = out / "mine.txt"
    marker.write_text("keep me")
    with pytest.raises(ExportExistsError):
        export_annotations(proj, "voc", out)
    assert marker.read_text() == "keep me"

    def broken(items, classes, folder, result):
        (folder / "half.txt").write_text("half")
        raise DataError(folder / "half.txt", "disk full (simulated)")

    monkeypatch.setitem(ann_mod.EXPORTERS, "voc", broken)
    with pytest.raises(DataError):
        export_annotations(proj, "voc", out, overwrite=True)
    assert marker.read_text() == "keep me"  # the good export is still there
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary leftovers
    monkeypatch.undo()
    export_annotations(proj, "voc", out, overwrite=True)
    assert not marker.exists() and (out / "Annotations").is_dir()


def test_unwritable_place_is_reported_with_its_name(scored_project, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(DataError, match="a_file"):
        export_scores(scored_project, blocker / "scores.csv")
    with pytest.raises(DataError, match="a_file"):
        export_annotations(scored_project, "yolo", blocker / "yolo")


def test_scores_csv_and_json(scored_project, tmp_path):
    proj = scored_project
    first = proj.item_ids()[0]
    proj.set_verdict(first, verdict="anomalous", verified=True, note="looks odd")
    r = export_scores(proj, tmp_path / "s.csv")
    assert r.n_items == 12
    rows = list(csv.DictReader((tmp_path / "s.csv").open()))
    assert len(rows) == 12
    by_id = {int(x["item_id"]): x for x in rows}
    assert by_id[first]["verdict"] == "anomalous" and by_id[first]["verified"] == "True"
    assert by_id[first]["truth"] == "True" and by_id[first]["truth_source"] == "analyst"
    assert by_id[first]["outcome"] == "FN"  # the analyst says anomalous, the model says normal
    bad = [x for x in rows if x["label"] == "bad"]
    assert all(x["predicted"] == "True" and int(x["n_regions"]) == 1 for x in bad)
    assert all(float(x["defect_area"]) == pytest.approx(192.0) for x in bad)  # 12x16 image pixels
    export_scores(proj, tmp_path / "s.json", min_area=300)  # blobs of 192 px are removed
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["min_area"] == 300 and doc["threshold"] == 0.6
    assert doc["confusion"] == {"tp": 0, "fp": 0, "tn": 5, "fn": 7}
    assert doc["metrics"]["image_auroc"] is not None and len(doc["items"]) == 12
    with pytest.raises(ExportExistsError):
        export_scores(proj, tmp_path / "s.json")


def test_cli_export(scored_project, tmp_path, capsys):
    from anomaly_gui.cli import main

    _annotate(scored_project)
    path = str(scored_project.path)
    assert main(["export", path, "--format", "coco", "--out", str(tmp_path / "c"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_items"] == 12 and out["format"] == "coco"
    assert main(["export", path, "--format", "coco", "--out", str(tmp_path / "c")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "missing.agproj"), "--format", "csv", "--out", str(tmp_path / "x.csv")]) == 2
    assert not (tmp_path / "missing.agproj").exists()


def test_round_trip_on_real_mvtec_images(tmp_project, tmp_path):
    import os

    from anomaly_gui.core.importer import import_into_project

    data = Path(os.environ.get("ANOMALY_GUI_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
    root = data / "mvtec_screw"
    if not root.is_dir():
        pytest.skip(f"real dataset mvtec_screw not found at {root}")
    import_into_project(tmp_project, root)
    test_items = tmp_project.items(split="test")
    picked = [test_items[0], test_items[-1]]  # a good/000.png and a defect/xxx.png: same file names elsewhere
    m = np.zeros((1024, 1024), bool)
    m[400:460, 500:620] = True
    tmp_project.add_annotations(picked[0].id, [Annotation("polygon", "thread", {"points": [[100.5, 200], [300, 210.25], [250, 400]]}, source="user")])
    tmp_project.add_annotations(picked[1].id, [Annotation("box", "scratch", {"x1": 10, "y1": 20, "x2": 512.5, "y2": 700}, source="user"),
                                               Annotation("mask", "scratch", mask_geometry(m), source="user")])
    for fmt in ("coco", "labelme"):
        export_annotations(tmp_project, fmt, tmp_path / fmt, only_annotated=True)
        back = import_dataset(tmp_path / fmt, fmt)
        assert not back.problems and len(back.items) == 2
        got = sorted(((a.kind, a.label, round(a.box()[0], 6)) for it in back.items for a in it.annotations))
        assert got == [("box", "scratch", 10.0), ("polygon", "scratch", 500.0), ("polygon", "thread", 100.5)]
        poly = next(a for it in back.items for a in it.annotations if a.label == "scratch" and a.kind == "polygon")
        assert (annotation_mask(poly, (1024, 1024)) == m).all()
