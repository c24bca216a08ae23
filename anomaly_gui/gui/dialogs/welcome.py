"""The page shown in the viewer's place while nothing is open: a demo per kind of imagery, import, open."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QLayout, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout, QWidget


class WelcomePage(QWidget):
    """Big, friendly start page with Open sample data / Import folder / Open project buttons."""

    sampleRequested = Signal()
    demoRequested = Signal(str)  # domain: product, sar, wildlife, video
    importRequested = Signal()
    openRequested = Signal()
    recentRequested = Signal(str)  # project path

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("welcomePage")
        self.setStyleSheet(
            "QWidget#welcomePage { background: #1e1e22; }"
            "QLabel { color: #e8e8e8; }"
            "QLabel#hint { color: #9a9aa0; }"
            "QPushButton { padding: 8px 18px; font-size: 14px; }"
            "QPushButton#demoButton { padding: 10px 12px; font-size: 13px; text-align: left; }"
        )
        title = QLabel("<h1>anomaly_gui</h1>")
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.hint = QLabel(
            "Find anomalies in product images, SAR scenes, camera-trap photos and video.<br>"
            "Start with the bundled sample data, import a dataset folder (MVTec AD, VOC, YOLO, COCO,"
            " image folders, videos), or drop a folder anywhere on this window."
        )
        self.hint.setObjectName("hint")
        self.hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.hint.setWordWrap(True)
        self.sample_button = QPushButton("Open sample data")
        self.import_button = QPushButton("Import folder…")
        self.open_button = QPushButton("Open project…")
        self.sample_button.clicked.connect(self.sampleRequested)
        self.import_button.clicked.connect(self.importRequested)
        self.open_button.clicked.connect(self.openRequested)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for b in (self.import_button, self.open_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        self.sample_button.hide()  # the demo buttons below open the same sample data, one domain each
        from anomaly_gui.gui.demo import DEMOS

        self.demo_title = QLabel("Try a demo: each opens the bundled sample data as its own project and trains a "
                                 "small model on first open (about a minute on a CPU)")
        self.demo_title.setObjectName("hint")
        self.demo_title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.demo_title.setWordWrap(True)
        self.demo_buttons: dict[str, QPushButton] = {}
        grid = QGridLayout()  # two by two: fits beside the docks on a laptop screen
        grid.setHorizontalSpacing(10)
        grid.setVerticalSpacing(10)
        for k, (domain, spec) in enumerate(DEMOS.items()):
            b = QPushButton(f"{spec.title}\n{spec.short}")
            b.setObjectName("demoButton")
            b.setToolTip(spec.blurb)
            b.setMinimumWidth(b.fontMetrics().horizontalAdvance(spec.short) + 40)
            b.clicked.connect(lambda _c=False, d=domain: self.demoRequested.emit(d))
            self.demo_buttons[domain] = b
            grid.addWidget(b, k // 2, k % 2)
        demos = QHBoxLayout()
        demos.addStretch(1)
        demos.addLayout(grid)
        demos.addStretch(1)
        self.recent_title = QLabel("Recent projects")
        self.recent_title.setObjectName("hint")
        self.recent = QListWidget()
        self.recent.setObjectName("recentProjects")
        self.recent.setMinimumWidth(280)
        self.recent.setMaximumWidth(560)
        self.recent.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.recent.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.recent.setStyleSheet("QListWidget#recentProjects { background: #26262b; border: 1px solid #3a3a40; }")
        self.recent.itemActivated.connect(lambda it: self.recentRequested.emit(it.data(Qt.ItemDataRole.UserRole)))
        recent_row = QHBoxLayout()
        recent_row.addStretch(1)
        col = QVBoxLayout()
        col.addWidget(self.recent_title)
        col.addWidget(self.recent)
        recent_row.addLayout(col, 4)
        recent_row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addStretch(2)
        layout.addWidget(title)
        layout.addWidget(self.hint)
        layout.addSpacing(18)
        layout.addWidget(self.demo_title)
        layout.addSpacing(6)
        layout.addLayout(demos)
        layout.addSpacing(18)
        layout.addLayout(buttons)
        layout.addSpacing(24)
        layout.addLayout(recent_row)
        layout.addStretch(3)
        # the page sits in the viewer's stack: its size must not push the docks aside once a project is open
        layout.setSizeConstraint(QLayout.SizeConstraint.SetNoConstraint)
        self.set_recent([])

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt naming)
        return QSize(200, 150)

    def set_recent(self, paths: list[str]) -> None:
        """Recent project files (double-click or Enter opens one); hidden when there are none."""
        self.recent.clear()
        for p in paths:
            item = QListWidgetItem(f"{Path(p).stem}   ·   {Path(p).parent}")
            item.setData(Qt.ItemDataRole.UserRole, p)
            item.setToolTip(p)
            self.recent.addItem(item)
        rows = min(len(paths), 6)
        self.recent.setFixedHeight(max(1, rows) * (self.recent.fontMetrics().height() + 6) + 8)
        self.recent.setVisible(bool(paths))
        self.recent_title.setVisible(bool(paths))

    def set_hint(self, html: str) -> None:
        self.hint.setText(html)
