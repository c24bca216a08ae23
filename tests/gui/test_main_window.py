"""The main window as a user meets it: welcome page, import in a worker, keyboard, overlays, zoom, screenshot."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from conftest import pixel_std  # tests/gui/conftest.py
from tests.conftest import shared_dataset

pytestmark = pytest.mark.gui


def test_welcome_page_menus_and_status_bar(window):
    assert window.windowTitle() == "anomaly_gui"
    assert window.viewer.show_placeholder is not None
    assert window.welcome.isVisible(), "no project: the welcome page replaces the empty viewer"
    assert set(window.menus) >= {"File", "Edit", "View", "Tools", "Help"}
    file_actions = [a.text().replace("&", "") for a in window.menus["File"].actions()]
    for text in ("New project…", "Open project…", "Import dataset folder…", "Import video file…",
                 "Open sample data", "Quit"):
        assert text in file_actions
    assert "CPU" in window.device_label.text() or "GPU" in window.device_label.text()
    assert window.count_label.text() == "no project"
    panel_toggles = [a.text() for a in window.panels_menu.actions()]
    assert "Dataset" in panel_toggles
    assert len(panel_toggles) == len(window.docks), "every dock has a View toggle"
    avail = window.screen().availableGeometry()
    assert window.width() >= min(1000, int(avail.width() * 0.9)), "a sensible default size, capped by the screen"
    assert window.minimumSizeHint().height() < 700, "docks scroll instead of forcing a huge window"
    assert pixel_std(window.grab().toImage()) > 5


def test_import_real_mvtec_leather_navigate_toggle_zoom(window, qtbot, wait_import, tmp_path):
    root = shared_dataset("mvtec_leather")
    assert window.open_project(tmp_path / "leather.agproj")
    assert window.import_path(root)
    result = wait_import(window)
    assert result is not None and result.format == "mvtec"
    project = window.state.project
    n = project.count_items()
    assert n == len(result.items) > 10
    assert window.count_label.text().startswith(f"{n} items")
    assert window.browser.model.rowCount() == n
    # masks without images are reported at the end, the rest imported
    if result.problems:
        assert window.importer.problems_dialog is not None and window.importer.problems_dialog.isVisible()
        assert window.isActiveWindow(), "the problem list does not take the keyboard away"
        window.importer.problems_dialog.close()
    # the first item is shown
    first = window.state.current_item
    assert first == window.browser.model.item_id(0)
    assert window.viewer.image is not None and window.viewer.image.shape[:2] == (1024, 1024)
    assert not window.welcome.isVisible()
    # D / A move through items even while the viewer has the focus
    window.viewer.view.setFocus()
    qtbot.keyClick(window.viewer.view, Qt.Key.Key_D)
    second = window.browser.model.item_id(1)
    assert window.state.current_item == second
    assert window.item_label.text() == project.item(second).name
    qtbot.keyClick(window.viewer.view, Qt.Key.Key_A)
    assert window.state.current_item == first
    qtbot.keyClick(window.viewer.view, Qt.Key.Key_A)
    assert window.state.current_item == first, "A on the first item stays there"
    # an item with a ground-truth mask gets the "gt" contour layer
    with_mask = next(it for it in project.items() if it.mask_path)
    window.state.set_current_item(with_mask.id)
    assert window.viewer.layer_item_count("gt") == 1
    gt_layer = window.viewer.layer("gt")
    assert gt_layer.isVisible()
    window.viewer.set_heatmap(np.random.default_rng(0).random((32, 32)), levels=(0.0, 1.0))
    assert window.viewer.heatmap_item.isVisible()
    qtbot.keyClick(window.viewer.view, Qt.Key.Key_T)
    assert not window.state.show_heatmap and not window.state.show_contours and not window.state.show_boxes
    assert not gt_layer.isVisible() and not window.viewer.heatmap_item.isVisible()
    qtbot.keyClick(window.viewer.view, Qt.Key.Key_T)
    assert gt_layer.isVisible() and window.viewer.heatmap_item.isVisible()
    # zoom with the keyboard, fit with Ctrl+F
    fit_scale = window.viewer.view_scale()
    qtbot.keyClick(window.viewer.view, Qt.Key.Key_Equal, Qt.KeyboardModifier.ControlModifier)
    assert window.viewer.view_scale() > fit_scale * 1.1
    qtbot.keyClick(window.viewer.view, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert window.viewer.view_scale() == pytest.approx(fit_scale, rel=0.02)
    assert window.zoom_label.text() == f"{fit_scale * 100:.0f} %"
    # the screenshot is not blank
    img = window.grab().toImage()
    assert img.width() == window.width() > 600 and pixel_std(img) > 10
    # reopening the project restores the items
    path = project.path
    window.state.set_project(None)
    assert window.welcome.isVisible()
    assert window.open_project(path)
    assert window.state.project.count_items() == n
    assert window.state.current_item is not None


def test_drop_folder_with_corrupt_images(window, qtbot, wait_import, image_folder, tmp_path):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(image_folder))])
    drop = QDropEvent(QPointF(400, 300), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    window.dropEvent(drop)
    result = wait_import(window)
    assert result is not None and result.format == "folder"
    project = window.state.project
    assert project is not None, "a project was made for the dropped folder"
    assert Path(project.path).parent == Path.home() / ".anomaly_gui" / "projects"
    names = {Path(it.path).name for it in project.items()}
    assert "garbage.png" not in names
    assert any("garbage.png" in str(p) for p in result.problems)
    dlg = window.importer.problems_dialog
    assert dlg is not None and dlg.isVisible() and "garbage.png" in dlg.text.toPlainText()
    # a truncated file is either reported by the import or, if its header passed, when it is shown
    trunc = next((it for it in project.items() if Path(it.path).name == "truncated.png"), None)
    if trunc is None:
        assert any("truncated.png" in str(p) for p in result.problems)
    else:
        window.state.set_current_item(trunc.id)
        assert window.viewer.image is None
        assert "truncated.png" in window.presenter.error
        assert "cannot show" in window.viewer.info_label.text()
    qtbot.keyClick(window.viewer.view, Qt.Key.Key_D)
    qtbot.keyClick(window.viewer.view, Qt.Key.Key_A)
    qtbot.keyClick(window.viewer.view, Qt.Key.Key_A)
    assert window.viewer.image is not None


@pytest.mark.parametrize("target", ["viewer", "grid"])
def test_drop_on_a_child_widget_reaches_the_window(window, qtbot, wait_import, image_folder, target):
    from PySide6.QtGui import QDragEnterEvent
    from PySide6.QtWidgets import QApplication

    widget = window.viewer.view.viewport() if target == "viewer" else window.browser.grid.viewport()
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(image_folder))])
    pos = QPointF(widget.width() / 2, widget.height() / 2)
    enter = QDragEnterEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, enter)
    assert enter.isAccepted()
    drop = QDropEvent(pos, Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, drop)
    result = wait_import(window)
    assert result is not None and window.state.project.count_items() == len(result.items) > 0


def test_import_failure_shows_error_and_app_goes_on(window, qtbot, wait_import, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    assert window.open_project(tmp_path / "p.agproj")
    window.import_path(empty)
    assert wait_import(window) is None
    assert "no known dataset layout" in window.importer.last_error
    assert window.importer.error_dialog is not None and window.importer.error_dialog.isVisible()
    assert window.state.project.count_items() == 0
    assert window.import_path(tmp_path / "missing") is False
    assert window.last_error_dialog.isVisible()


def test_cancel_import_adds_nothing(window, qtbot, wait_import, tmp_path):
    from conftest import write_png

    rng = np.random.default_rng(1)
    for i in range(150):
        write_png(tmp_path / "many" / f"{i:03d}.png", rng.integers(0, 255, (16, 16), dtype=np.uint8))
    assert window.open_project(tmp_path / "p.agproj")
    window.import_path(tmp_path / "many")
    from PySide6.QtWidgets import QPushButton

    window.importer.progress_dialog.findChild(QPushButton).click()  # the dialog's Cancel button
    assert wait_import(window) is None
    assert window.importer.last_error == "cancelled"
    assert window.state.project.count_items() == 0


def test_sample_data_through_the_worker(window, qtbot, wait_import):
    pytest.importorskip("anomaly_gui.sample_data")
    window.open_sample_data()
    result = wait_import(window, timeout=120000)
    assert result is not None and len(result.items) > 0
    assert window.state.project.count_items() == len(result.items)
    assert window.viewer.image is not None


def test_layout_and_recent_projects_persist(qtbot, tmp_path):
    from anomaly_gui.gui.main_window import MainWindow
    from anomaly_gui.gui.state import AppState

    win = MainWindow(AppState())
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    assert win.open_project(tmp_path / "a.agproj")
    win.docks["browser"].hide()
    win.close()
    win.state.project.close()

    win2 = MainWindow(AppState())
    qtbot.addWidget(win2)
    win2.show()
    qtbot.waitExposed(win2)
    assert not win2.docks["browser"].isVisible(), "the dock layout came back from QSettings"
    win2._fill_recent_menu()
    recent = [a.toolTip() for a in win2.recent_menu.actions()]
    assert str((tmp_path / "a.agproj").resolve()) in recent
    # the welcome page lists it too; activating it opens the project
    assert win2.welcome.recent.count() == 1
    win2.welcome.recent.itemActivated.emit(win2.welcome.recent.item(0))
    assert win2.state.project is not None and win2.state.project.path == (tmp_path / "a.agproj").resolve()
    win2.actions_by_name["reset_layout"].trigger()
    assert win2.docks["browser"].isVisible()
    win2.close()
    win2.state.project.close()


def test_run_app_opens_project_and_imports(tmp_path, image_folder):
    """`anomaly-gui gui PROJECT --import PATH` end to end through its own event loop (in a subprocess:
    quitting a QApplication must not leak into the other tests)."""
    import json
    import os
    import subprocess
    import sys

    script = tmp_path / "drive.py"
    script.write_text(f"""
import json, sys
from PySide6.QtCore import QTimer
from anomaly_gui.gui.app import make_application, run_app
from anomaly_gui.gui.main_window import MainWindow
app = make_application()
seen = {{}}
def poll():
    win = next((w for w in app.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()), None)
    if win is None or win.importer.busy() or win.importer.last_result is None:
        QTimer.singleShot(50, poll)
        return
    seen.update(title=win.windowTitle(), items=win.state.project.count_items(), shown=win.viewer.image is not None)
    win.close()
    app.quit()
QTimer.singleShot(50, poll)
code = run_app({str(tmp_path / "cli.agproj")!r}, {str(image_folder)!r})
print(json.dumps({{"code": code, **seen}}))
""")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["code"] == 0 and out["title"] == "cli — anomaly_gui"
    assert out["items"] > 0 and out["shown"]
