"""Shortcuts: the usual keys are on menu actions, and the preferences dialog changes and keeps them."""
from __future__ import annotations

import pytest
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QDialogButtonBox

from anomaly_gui.gui.shortcuts import iter_actions, saved_shortcuts

pytestmark = pytest.mark.gui


def _by_shortcut(window) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for _path, key, act in iter_actions(window):
        s = act.shortcut().toString(QKeySequence.SequenceFormat.PortableText)
        if s:
            out.setdefault(s, []).append(key)
    return out


def test_usual_shortcuts_are_menu_actions_without_clashes(window):
    shortcuts = _by_shortcut(window)
    for key in ("A", "D", "Ctrl+S", "Ctrl+Z", "Ctrl+Shift+Z", "Del", "Ctrl+F", "T", "R", "P", "B", "X", "U", "F",
                "Ctrl+E", "Ctrl+Shift+E", "Ctrl+,"):
        assert key in shortcuts, f"no menu action on {key}"
    clashes = {k: v for k, v in shortcuts.items() if len(v) > 1}
    assert not clashes, clashes
    names = {key for _p, key, _a in iter_actions(window)}
    assert {"file.save", "file.export", "file.export_report", "tools.retrain_corrections", "edit.undo",
            "label.tool.rectangle", "label.next_unverified"} <= names


def test_preferences_change_a_shortcut_refuse_clashes_and_persist(window, qtbot):
    from anomaly_gui.gui.dialogs.settings_dialog import SettingsDialog

    dlg = SettingsDialog(window)
    qtbot.addWidget(dlg)
    ok = dlg.buttons.button(QDialogButtonBox.StandardButton.Ok)
    dlg.set_shortcut("label.tool.rectangle", "P")  # P is the polygon tool's
    assert not ok.isEnabled() and "Used twice" in dlg.warning.text()
    dlg.set_shortcut("label.tool.rectangle", "Ctrl+Alt+R")
    assert ok.isEnabled() and dlg.warning.text() == ""
    dlg.filter_edit.setText("rectangle")
    visible = [r for r in range(dlg.table.rowCount()) if not dlg.table.isRowHidden(r)]
    assert len(visible) == 1
    dlg.accept()
    act = window.actions_by_name["label.tool.rectangle"]
    assert act.shortcut().toString(QKeySequence.SequenceFormat.PortableText) == "Ctrl+Alt+R"
    assert saved_shortcuts() == {"label.tool.rectangle": "Ctrl+Alt+R"}

    # a new window (next start of the app) gets the user's choice; defaults can be restored
    from anomaly_gui.gui.main_window import MainWindow
    from anomaly_gui.gui.state import AppState

    other = MainWindow(AppState())
    qtbot.addWidget(other)
    qtbot.wait(10)
    assert other.actions_by_name["label.tool.rectangle"].shortcut().toString(QKeySequence.SequenceFormat.PortableText) == "Ctrl+Alt+R"
    dlg2 = SettingsDialog(other)
    qtbot.addWidget(dlg2)
    dlg2.restore_defaults()
    dlg2.accept()
    assert other.actions_by_name["label.tool.rectangle"].shortcut().toString() == "R"
    assert saved_shortcuts() == {}
    other.close()


def test_preferences_open_from_the_menu(window, qtbot):
    window.actions_by_name["edit.preferences"].trigger()
    dlg = window.settings_dialog
    assert dlg.isVisible() and dlg.table.rowCount() >= 30
    dlg.reject()
