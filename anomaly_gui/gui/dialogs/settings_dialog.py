"""Preferences: every menu action with its shortcut, editable (QKeySequenceEdit), conflicts refused."""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QKeySequenceEdit,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from anomaly_gui.gui.shortcuts import (
    conflicts,
    default_shortcut,
    iter_actions,
    remember_defaults,
    save_shortcuts,
)

PORTABLE = QKeySequence.SequenceFormat.PortableText


class SettingsDialog(QDialog):
    """Shortcuts table: Menu | Action | Shortcut (click and press the keys; Backspace... clears via the ✕ button)."""

    def __init__(self, window: Any, parent: QWidget | None = None):
        super().__init__(parent or window)
        self.window_ = window
        self.setWindowTitle("Preferences — keyboard shortcuts")
        remember_defaults(window)
        self.rows = list(iter_actions(window))
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter actions…")
        self.filter_edit.textChanged.connect(self._filter)
        self.table = QTableWidget(len(self.rows), 4)
        self.table.setHorizontalHeaderLabels(["Menu", "Action", "Shortcut", ""])
        self.table.verticalHeader().setVisible(False)
        self.editors: dict[str, QKeySequenceEdit] = {}
        for r, (path, key, act) in enumerate(self.rows):
            for c, text in enumerate((path, act.text().replace("&", ""))):
                cell = QTableWidgetItem(text)
                cell.setFlags(cell.flags() & ~Qt.ItemFlag.ItemIsEditable)
                cell.setToolTip(key)
                self.table.setItem(r, c, cell)
            ed = QKeySequenceEdit(act.shortcut())
            ed.setMaximumSequenceLength(1)
            ed.keySequenceChanged.connect(lambda _s: self._check())
            self.editors[key] = ed
            self.table.setCellWidget(r, 2, ed)
            clear = QPushButton("✕")
            clear.setToolTip("No shortcut")
            clear.setFixedWidth(28)
            clear.clicked.connect(lambda _c=False, e=ed: e.clear())
            self.table.setCellWidget(r, 3, clear)
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        hh.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        hh.setSectionResizeMode(2, QHeaderView.ResizeMode.Fixed)
        self.table.setColumnWidth(2, 170)
        hh.setSectionResizeMode(3, QHeaderView.ResizeMode.Fixed)
        self.table.setColumnWidth(3, 34)
        self.warning = QLabel("")
        self.warning.setStyleSheet("color: #c62828;")
        self.warning.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
                                        | QDialogButtonBox.StandardButton.RestoreDefaults)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).clicked.connect(self.restore_defaults)
        lay = QVBoxLayout(self)
        lay.addWidget(self.filter_edit)
        lay.addWidget(self.table)
        lay.addWidget(self.warning)
        lay.addWidget(self.buttons)
        self.resize(640, 620)

    def chosen(self) -> dict[str, str]:
        return {key: ed.keySequence().toString(PORTABLE) for key, ed in self.editors.items()}

    def set_shortcut(self, key: str, text: str) -> None:
        self.editors[key].setKeySequence(QKeySequence(text))

    def restore_defaults(self) -> None:
        for _path, key, act in self.rows:
            self.editors[key].setKeySequence(default_shortcut(act))

    def _check(self) -> bool:
        clash = conflicts(self.chosen())
        names = {key: act.text().replace("&", "") for _p, key, act in self.rows}
        if clash:
            self.warning.setText("Used twice: " + "; ".join(
                f"{QKeySequence(seq).toString()} → {', '.join(names[k] for k in keys)}" for seq, keys in clash.items()))
        else:
            self.warning.setText("")
        ok = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        ok.setEnabled(not clash)
        return not clash

    def _filter(self, text: str) -> None:
        t = text.lower()
        for r, (path, key, act) in enumerate(self.rows):
            hay = f"{path} {act.text()} {key} {self.editors[key].keySequence().toString()}".lower()
            self.table.setRowHidden(r, bool(t) and t not in hay)

    def accept(self) -> None:
        if not self._check():
            return
        save_shortcuts(self.window_, self.chosen())
        super().accept()
