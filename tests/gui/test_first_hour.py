"""The smaller first-hour items, driven as a user would (pytest-qt, offscreen): several dropped folders all
imported, docks that follow the data with a layout per kind, the player opening a frame folder, deleting a
label class, the synthetic-anomalies dialog, engines offered best-first."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QMessageBox

from anomaly_gui.sample_data import ensure_sample_data

pytestmark = pytest.mark.gui
SAMPLE = ensure_sample_data()


def _drop(window, paths: list[Path]) -> None:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    window.dropEvent(QDropEvent(QPointF(400, 300), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                                Qt.KeyboardModifier.NoModifier))


def _wait_all_imports(qtbot, window, n: int, timeout: int = 60000) -> None:
    qtbot.waitUntil(lambda: len(window.state.project.imports()) >= n and not window.importer.busy()
                    and not window._import_queue, timeout=timeout)
    qtbot.wait(50)


def test_dropping_several_folders_imports_them_all(qtbot, window, wait_import):
    _drop(window, [SAMPLE / "product", SAMPLE / "sar"])
    _wait_all_imports(qtbot, window, 2)
    project = window.state.project
    assert [Path(r["root"]).name for r in project.imports()] == ["product", "sar"]
    assert {r["format"] for r in project.imports()} >= {"mvtec"}
    assert project.count_items() == 34 + 24
    # images of both kinds: the docks of both show
    shown = {pid for pid, d in window.docks.items() if d.isVisible()}
    assert {"review", "detection"} <= shown and "video_player" not in shown


def test_docks_follow_the_data_and_remember_a_layout_per_kind(qtbot, window, wait_import, tmp_path):
    from anomaly_gui.gui.dock_policy import project_profile

    window.open_project(tmp_path / "video.agproj")
    window.import_path(SAMPLE / "video" / "Test")
    wait_import(window)
    assert project_profile(window.state.project) == {"video"}
    docks = window.docks
    assert docks["video_player"].isVisible() and not docks["review"].isVisible() and not docks["cluster_view"].isVisible()
    assert not docks["review"].toggleViewAction().isChecked(), "the review dock waits in View ▸ Panels"
    # the analyst brings the Review dock back in the video project; a product project has its own layout
    docks["review"].toggleViewAction().trigger()
    assert docks["review"].isVisible()
    window.open_project(tmp_path / "fabric.agproj")
    window.import_path(SAMPLE / "product")
    wait_import(window)
    assert docks["review"].isVisible() and not docks["video_player"].isVisible()
    window.open_project(tmp_path / "video.agproj")
    qtbot.waitUntil(lambda: docks["video_player"].isVisible(), timeout=3000)
    assert docks["review"].isVisible(), "the video layout came back with the Review dock the analyst opened"
    window.open_project(tmp_path / "fabric.agproj")
    qtbot.waitUntil(lambda: not docks["video_player"].isVisible(), timeout=3000)


def test_player_opens_a_frame_folder_and_a_folder_of_clips(qtbot, window, monkeypatch, tmp_path):
    player = window.panels["video_player"]
    window.docks["video_player"].show()
    clip = SAMPLE / "video" / "Test" / "Test002"
    monkeypatch.setattr("PySide6.QtWidgets.QFileDialog.getExistingDirectory", lambda *a, **k: str(clip))
    menu = player.open_btn.menu()
    assert [a.text() for a in menu.actions()][1].startswith("Folder of frames")
    menu.actions()[1].trigger()
    assert player.clip is not None and player.clip.name == "Test002" and len(player.clip) == 60
    # a folder holding clip folders (UCSD Train/) opens its first clip and says so
    assert player.open_path(SAMPLE / "video" / "Train")
    assert player.clip.name == "Train001"
    # a folder without frames is refused with the folder's name, the clip stays
    monkeypatch.setattr(QMessageBox, "warning", lambda _p, _t, text: messages.append(text))
    messages: list[str] = []
    (tmp_path / "no_frames").mkdir()
    (tmp_path / "no_frames" / "notes.txt").write_text("no images here")
    assert not player.open_path(tmp_path / "no_frames")
    assert messages and "no_frames" in messages[0] and player.clip.name == "Train001"


def test_delete_a_label_class_with_or_without_its_shapes(qtbot, window, tmp_path, monkeypatch):
    window.open_project(tmp_path / "traps.agproj")
    window.import_path(SAMPLE / "camera_traps")
    qtbot.waitUntil(lambda: window.state.project.count_items() == 18 and not window.importer.busy(), timeout=30000)
    panel, project = window.panels["labeling"], window.state.project
    qtbot.waitUntil(lambda: panel.editor is not None, timeout=3000)
    assert {"boar", "deer", "fox"} <= set(project.label_classes())
    n_boar = sum(a.label == "boar" for anns in project.annotations_by_item().values() for a in anns)
    assert n_boar > 0
    panel.class_list.setCurrentItem(panel.class_list.findItems("boar", Qt.MatchFlag.MatchExactly)[0])
    assert panel.delete_class(with_shapes=True)
    assert "boar" not in project.label_classes()
    assert not any(a.label == "boar" for anns in project.annotations_by_item().values() for a in anns)
    panel.editor.stack.undo()
    assert "boar" in project.label_classes()
    assert sum(a.label == "boar" for anns in project.annotations_by_item().values() for a in anns) == n_boar
    # keeping the shapes: only the list entry goes
    panel.class_list.setCurrentItem(panel.class_list.findItems("fox", Qt.MatchFlag.MatchExactly)[0])
    n_fox = sum(a.label == "fox" for anns in project.annotations_by_item().values() for a in anns)
    assert panel.delete_class(with_shapes=False)
    assert "fox" not in project.label_classes()
    assert sum(a.label == "fox" for anns in project.annotations_by_item().values() for a in anns) == n_fox
    assert not panel.class_list.findItems("fox", Qt.MatchFlag.MatchExactly)


def test_synthetic_anomalies_dialog_writes_and_imports(qtbot, window, tmp_path):
    window.open_project(tmp_path / "traps.agproj")
    window.import_path(SAMPLE / "camera_traps")
    qtbot.waitUntil(lambda: window.state.project.count_items() == 18 and not window.importer.busy(), timeout=30000)
    window.actions_by_name["synthetic"].trigger()
    dlg = window.synthetic_dialog
    assert dlg.species.count() == 3 and dlg.backgrounds.currentData() is True  # empty frames as backgrounds
    for k in range(dlg.species.count()):  # paste only deer
        row = dlg.species.item(k)
        row.setCheckState(Qt.CheckState.Checked if row.data(Qt.ItemDataRole.UserRole) == "deer" else Qt.CheckState.Unchecked)
    dlg.n_images.setValue(4)
    out = tmp_path / "synthetic"
    dlg.out_edit.setText(str(out))
    qtbot.mouseClick(dlg.make_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dlg.result is not None or bool(dlg.last_error), timeout=30000)
    assert not dlg.last_error
    coco = json.loads(next(out.glob("*.json")).read_text())
    assert len(coco["images"]) == 4 and {c["name"] for c in coco["categories"]} >= {"deer"}
    assert (out / "synthetic_pastes.csv").is_file()
    qtbot.waitUntil(lambda: window.state.project.count_items() == 22 and not window.importer.busy(), timeout=30000)
    qtbot.waitUntil(lambda: "Imported 4" in dlg.status.text(), timeout=5000)
    synth = [it for it in window.state.project.items() if Path(it.path).parent.parent == out]
    assert len(synth) == 4 and {it.split for it in synth} == {"test"}
    # a second run into the same (now full) folder is refused: nothing is overwritten
    qtbot.mouseClick(dlg.make_button, Qt.MouseButton.LeftButton)
    assert "not empty" in dlg.last_error


def test_engines_are_offered_best_first_with_the_reason(qtbot, window, tmp_path):
    from anomaly_gui.engines.base import list_engines

    assert [e.name for e in list_engines("image")][0] == "patchcore"
    assert [e.name for e in list_engines("video")] == ["future_frame", "stacked_ae", "frame_ae", "convlstm_ae", "memae"]
    assert [e.name for e in list_engines("detection")][0] == "retinanet"
    window.open_project(tmp_path / "fabric.agproj")
    window.import_path(SAMPLE / "product")
    qtbot.waitUntil(lambda: window.state.project.count_items() == 34 and not window.importer.busy(), timeout=30000)
    tp = window.panels["train"]
    assert tp.engine_name() == "patchcore" and "screw 0.90" in tp.engine_desc.text()


def test_an_engine_whose_package_is_missing_is_greyed_with_the_command(qtbot, window, monkeypatch):
    import importlib.util

    from anomaly_gui.gui.detection_panel import DetectionPanel

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ultralytics" else real(name, *a))
    panel = DetectionPanel(window.state, None)
    qtbot.addWidget(panel)
    row = panel.engine_combo.findData("yolo")
    assert not panel.engine_combo.model().item(row).isEnabled()
    assert "pip install ultralytics" in panel.engine_combo.itemText(row)
    assert "pip install ultralytics" in panel.engine_combo.itemData(row, Qt.ItemDataRole.ToolTipRole)
    assert panel.engine_combo.currentData() == "retinanet"
    monkeypatch.setattr(importlib.util, "find_spec", real)
    assert window.panels["detection"].engine_combo.model().item(row).isEnabled(), "installed here: offered"
