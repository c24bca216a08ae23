"""Space / ← / → (and Ctrl+← / → for segments) drive the video player wherever focus is in its window,
unless a text field has it (an editor keeps its keys for the text cursor).

An application-wide event filter: a key press whose focus widget lies in the player's window is handed to
the player when it holds a clip and is shown; text inputs (line edits, text edits, spin boxes, editable
combo boxes) and other windows (dialogs) keep their keys.
"""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtWidgets import QAbstractSpinBox, QApplication, QComboBox, QLineEdit, QPlainTextEdit, QTextEdit, QWidget

PLAYER_KEYS = {Qt.Key.Key_Space, Qt.Key.Key_Left, Qt.Key.Key_Right}


def is_text_input(w: QWidget | None) -> bool:
    """Whether `w` edits text (where Space and the arrows belong to the editor)."""
    if w is None:
        return False
    if isinstance(w, (QLineEdit, QTextEdit, QPlainTextEdit, QAbstractSpinBox)):
        return not (isinstance(w, (QTextEdit, QPlainTextEdit)) and w.isReadOnly())
    return isinstance(w, QComboBox) and w.isEditable()


class PlayerKeys(QObject):
    """Installed on the QApplication by the video player (`install(player)`)."""

    def __init__(self, player: Any):
        super().__init__(player)
        self.player = player

    @classmethod
    def install(cls, player: Any) -> "PlayerKeys":
        keys = cls(player)
        app = QApplication.instance()
        if app is not None:
            app.installEventFilter(keys)
        return keys

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt naming)
        if event.type() != QEvent.Type.KeyPress or event.key() not in PLAYER_KEYS:  # type: ignore[attr-defined]
            return False
        mods = event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier  # type: ignore[attr-defined]
        if mods not in (Qt.KeyboardModifier.NoModifier, Qt.KeyboardModifier.ControlModifier):
            return False
        player = self.player
        focus = QApplication.focusWidget()
        if player.clip is None or not player.isVisible() or focus is None or focus is player:
            return False  # the player's own keyPressEvent handles keys while it has focus
        if focus.window() is not player.window() or is_text_input(focus) or event.isAutoRepeat() and event.key() == Qt.Key.Key_Space:  # type: ignore[attr-defined]
            return False
        if obj is not focus:
            return False  # one key press reaches the filter once per receiver: act on the focus widget's
        player.keyPressEvent(event)
        return event.isAccepted()
