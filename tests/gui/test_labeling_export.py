"""File ▸ Export… / Export report… and Tools ▸ Retrain on corrections, used from the window."""
from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtWidgets import QMessageBox

pytestmark = pytest.mark.gui


def _open_scored(window, scored_project) -> Path:
    path = Path(scored_project.path)
    scored_project.close()
    assert window.open_project(path)
    return path


def test_export_report_from_the_menu_asks_before_replacing(window, qtbot, scored_project, tmp_path, monkeypatch):
    _open_scored(window, scored_project)
    opened: list[str] = []
    monkeypatch.setattr("anomaly_gui.gui.export_dialog.QDesktopServices.openUrl", lambda url: opened.append(url.toLocalFile()))
    window.actions_by_name["file.export_report"].trigger()
    dlg = window.export_dialog
    qtbot.addWidget(dlg)
    assert dlg.kind_format() == ("report", "html")
    out = tmp_path / "r.html"
    dlg.path_edit.setText(str(out))
    assert dlg.start()
    qtbot.waitUntil(lambda: dlg.result is not None or bool(dlg.last_error), timeout=60000)
    assert out.is_file() and "Items (12)" in out.read_text()
    assert opened == [str(out)]
    first = out.stat().st_mtime_ns
    qtbot.waitUntil(lambda: dlg.export_button.isEnabled(), timeout=5000)

    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.No)
    dlg.result = None
    assert not dlg.start()
    assert "not replaced" in dlg.last_error and out.stat().st_mtime_ns == first

    blocker = tmp_path / "file"
    blocker.write_text("x")
    dlg.path_edit.setText(str(blocker / "r.html"))
    assert not dlg.start() and "file" in dlg.last_error


def test_export_annotations_from_the_dialog(window, qtbot, scored_project, tmp_path):
    from anomaly_gui.core.formats.base import Annotation, import_dataset

    iid = scored_project.item_ids()[0]
    scored_project.add_annotation(iid, Annotation("box", "blob", {"x1": 1, "y1": 2, "x2": 30, "y2": 40}, source="user"))
    _open_scored(window, scored_project)
    window.actions_by_name["file.export"].trigger()
    dlg = window.export_dialog
    qtbot.addWidget(dlg)
    k = next(i for i in range(dlg.what.count()) if dlg.what.itemData(i) == ("annotations", "yolo"))
    dlg.what.setCurrentIndex(k)
    assert dlg.split_combo.isVisibleTo(dlg) and not dlg.gallery_spin.isVisibleTo(dlg)
    dlg.only_annotated.setChecked(True)
    dlg.path_edit.setText(str(tmp_path / "yolo"))
    assert dlg.start()
    qtbot.waitUntil(lambda: dlg.result is not None or bool(dlg.last_error), timeout=30000)
    assert not dlg.last_error
    back = import_dataset(tmp_path / "yolo", "yolo")
    assert len(back.items) == 1 and back.items[0].annotations[0].box() == pytest.approx((1, 2, 30, 40))


def test_retrain_on_corrections_builds_the_split_and_starts_training(window, qtbot, scored_project, monkeypatch):
    from anomaly_gui.gui.export_dialog import retrain_on_corrections

    proj = scored_project
    good = [it.id for it in proj.items() if not it.is_anomalous]
    for i in good[:4]:
        proj.set_verdict(i, verdict="normal", verified=True)
    _open_scored(window, scored_project)
    started: list[str] = []
    panel = window.panels["train"]
    monkeypatch.setattr(panel, "start", lambda: started.append(panel.name_edit.text()))
    messages: list[str] = []
    window.state.message.connect(messages.append)
    counts = retrain_on_corrections(window, confirm=False)  # the run's engine ("brightness") is not installed
    assert counts == {"train": 3, "val": 1, "labels": 4, "masks": 0}
    splits = {it.id: it.split for it in window.state.project.items()}
    assert sorted(splits[i] for i in good[:4]) == ["train", "train", "train", "val"]
    assert started == [] and "choose an engine" in messages[-1]
    run = window.state.project.create_run("patchcore", "image", {})
    window.state.set_current_run(run.id)
    retrain_on_corrections(window, confirm=False)
    assert started == ["patchcore on corrections"] and panel.engine_name() == "patchcore"
