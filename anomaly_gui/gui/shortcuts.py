"""Keyboard shortcuts of every menu action, changeable by the user and kept in QSettings.

Each action is known by a stable key: its objectName when set (`label.tool.rectangle`), otherwise
`<menu>/<text without &>`. The shortcut an action was built with is its default; the user's choices are
stored under `shortcuts/<key>` (an empty string means "no shortcut") in `gui.settings.app_settings()`,
which honours `ANOMALY_GUI_SETTINGS_DIR`. `install_shortcuts(window)` adds Edit ▸ Preferences… (Ctrl+,)
and applies the saved choices once every panel has added its actions.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMenu

from anomaly_gui.gui.settings import app_settings

GROUP = "shortcuts"
_DEFAULT = "anomaly_gui_default_shortcut"


def action_key(menu: str, action: QAction) -> str:
    name = action.objectName()
    return name if name else f"{menu}/{action.text().replace('&', '').rstrip('.…').strip()}"


def iter_actions(window: Any) -> Iterator[tuple[str, str, QAction]]:
    """(menu path, key, action) for every action in the window's menus, submenus included."""
    def walk(path: str, menu: QMenu) -> Iterator[tuple[str, str, QAction]]:
        for act in menu.actions():
            if act.isSeparator():
                continue
            sub = act.menu()
            if sub is not None:
                if sub is not getattr(window, "recent_menu", None):  # rebuilt from the recent files list
                    yield from walk(f"{path} ▸ {act.text().replace('&', '')}", sub)
                continue
            if not act.text() or act.property("anomaly_gui_dynamic"):
                continue
            yield path, action_key(path.split(" ▸ ")[0], act), act

    seen: set[int] = set()
    for name, menu in getattr(window, "menus", {}).items():
        for path, key, act in walk(name, menu):
            if id(act) in seen:
                continue
            seen.add(id(act))
            yield path, key, act


def default_shortcut(action: QAction) -> QKeySequence:
    """The shortcut the action had before any user choice."""
    value = action.property(_DEFAULT)
    return QKeySequence(value) if isinstance(value, str) else action.shortcut()


def remember_defaults(window: Any) -> None:
    for _path, _key, act in iter_actions(window):
        if act.property(_DEFAULT) is None:
            act.setProperty(_DEFAULT, act.shortcut().toString(QKeySequence.SequenceFormat.PortableText))


def saved_shortcuts() -> dict[str, str]:
    s = app_settings()
    s.beginGroup(GROUP)
    out = {k: str(s.value(k, "")) for k in s.childKeys()}
    s.endGroup()
    return out


def apply_saved(window: Any) -> int:
    """Set the user's shortcuts on the window's actions; returns how many were changed."""
    remember_defaults(window)
    saved = saved_shortcuts()
    n = 0
    for _path, key, act in iter_actions(window):
        if key in saved:
            act.setShortcut(QKeySequence(saved[key]))
            n += 1
    return n


def save_shortcuts(window: Any, chosen: dict[str, str]) -> None:
    """Store `chosen` ({key: portable text}); a choice equal to the default removes the override."""
    remember_defaults(window)
    actions = {key: act for _p, key, act in iter_actions(window)}
    s = app_settings()
    s.beginGroup(GROUP)
    for key, text in chosen.items():
        act = actions.get(key)
        if act is None:
            continue
        seq = QKeySequence(text)
        act.setShortcut(seq)
        if seq == default_shortcut(act):
            s.remove(key)
        else:
            s.setValue(key, seq.toString(QKeySequence.SequenceFormat.PortableText))
    s.endGroup()
    s.sync()


def conflicts(chosen: dict[str, str]) -> dict[str, list[str]]:
    """{shortcut: [keys]} for shortcuts given to more than one action."""
    by_seq: dict[str, list[str]] = {}
    for key, text in chosen.items():
        norm = QKeySequence(text).toString(QKeySequence.SequenceFormat.PortableText)
        if norm:
            by_seq.setdefault(norm, []).append(key)
    return {seq: keys for seq, keys in by_seq.items() if len(keys) > 1}


def install_shortcuts(window: Any) -> None:
    """Edit ▸ Preferences… and the saved shortcuts (applied now and once the window is complete)."""
    def open_settings() -> None:
        from anomaly_gui.gui.dialogs.settings_dialog import SettingsDialog

        window.settings_dialog = SettingsDialog(window)
        window.settings_dialog.open()

    act = QAction("&Preferences… (keyboard shortcuts)", window)
    act.setObjectName("edit.preferences")
    act.setShortcut(QKeySequence("Ctrl+,"))
    act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
    act.triggered.connect(lambda _c=False: open_settings())
    edit = window.menus["Edit"] if "Edit" in window.menus else window.menu("Edit")
    edit.addSeparator()
    edit.addAction(act)
    window.addAction(act)
    getattr(window, "actions_by_name", {})["edit.preferences"] = act
    apply_saved(window)
    QTimer.singleShot(0, lambda: apply_saved(window))
