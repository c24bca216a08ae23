"""About and keyboard-shortcut dialogs."""
from __future__ import annotations

import platform
from typing import Iterable

from PySide6 import __version__ as pyside_version
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from anomaly_gui import __version__


class AboutDialog(QDialog):
    """Version, environment and where to find help."""

    def __init__(self, device: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("About anomaly_gui")
        import pyqtgraph
        import torch

        text = QLabel(
            f"<h3>anomaly_gui {__version__}</h3>"
            "<p>Find anomalies in product images, SAR scenes, camera-trap photos and surveillance video:"
            " browse a dataset, train on normal data, tune the threshold and minimum defect area with live"
            " overlays, review, correct and export.</p>"
            f"<p>Device: {device}<br>Python {platform.python_version()} · PySide6 {pyside_version} ·"
            f" pyqtgraph {pyqtgraph.__version__} · torch {torch.__version__}</p>"
            "<p>Command line: <code>anomaly-gui --help</code></p>"
        )
        text.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(text)
        layout.addWidget(buttons)
        self.resize(460, 260)


class ShortcutsDialog(QDialog):
    """Every menu action that has a shortcut, read from the menus (so panels' shortcuts appear too)."""

    def __init__(self, actions: Iterable[tuple[str, QAction]], parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Keyboard shortcuts")
        rows = [(menu, a.text().replace("&", ""), a.shortcut().toString()) for menu, a in actions
                if not a.shortcut().isEmpty()]
        self.table = QTableWidget(len(rows), 3)
        self.table.setHorizontalHeaderLabels(["Menu", "Action", "Shortcut"])
        for r, values in enumerate(rows):
            for c, v in enumerate(values):
                self.table.setItem(r, c, QTableWidgetItem(v))
        self.table.resizeColumnsToContents()
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setVisible(False)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(buttons)
        self.resize(520, 480)
