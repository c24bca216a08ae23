"""Legend of the cluster view: one row per species with a colour swatch, count, visibility checkbox
and an opacity slider; and the k-distance plot with a draggable eps line."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import QHeaderView, QSlider, QTreeWidget, QTreeWidgetItem, QWidget


class SpeciesLegend(QTreeWidget):
    """Rows: [checkbox + swatch + name, count, opacity slider]. Emits `changed` on any edit."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setColumnCount(3)
        self.setHeaderLabels(["Species", "n", "Opacity"])
        self.setRootIsDecorated(False)
        self.setUniformRowHeights(True)
        self.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.header().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.header().resizeSection(2, 90)
        self.setMinimumWidth(220)
        self.sliders: dict[str, QSlider] = {}
        self._rows: dict[str, QTreeWidgetItem] = {}
        self.itemChanged.connect(lambda *_: self.changed.emit())

    def set_species(self, names: list[str], counts: dict[str, int], colors: dict[str, QColor]) -> None:
        """Rebuild the rows; visibility and opacity of species already listed are kept."""
        old = {n: (self.is_visible(n), self.opacity(n)) for n in self._rows}
        self.blockSignals(True)
        self.clear()
        self._rows, self.sliders = {}, {}
        for name in names:
            row = QTreeWidgetItem([name or "(no label)", str(counts.get(name, 0)), ""])
            row.setFlags(row.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            vis, op = old.get(name, (True, 0.85))
            row.setCheckState(0, Qt.CheckState.Checked if vis else Qt.CheckState.Unchecked)
            pm = QPixmap(12, 12)
            pm.fill(colors.get(name, QColor("#888888")))
            row.setIcon(0, QIcon(pm))
            row.setToolTip(0, f"{name}: {counts.get(name, 0)} point(s); untick to hide")
            self.addTopLevelItem(row)
            slider = QSlider(Qt.Orientation.Horizontal)
            slider.setRange(5, 100)
            slider.setValue(int(round(op * 100)))
            slider.setToolTip(f"Opacity of {name}")
            slider.valueChanged.connect(lambda _v: self.changed.emit())
            self.setItemWidget(row, 2, slider)
            self._rows[name] = row
            self.sliders[name] = slider
        self.blockSignals(False)

    def is_visible(self, name: str) -> bool:
        row = self._rows.get(name)
        return row is None or row.checkState(0) == Qt.CheckState.Checked

    def set_visible(self, name: str, on: bool) -> None:
        self._rows[name].setCheckState(0, Qt.CheckState.Checked if on else Qt.CheckState.Unchecked)

    def opacity(self, name: str) -> float:
        s = self.sliders.get(name)
        return 0.85 if s is None else s.value() / 100.0


class KDistancePlot(pg.PlotWidget):
    """Sorted k-distance curve with a horizontal eps line the user drags; emits `epsChanged(eps)`."""

    epsChanged = Signal(float)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent, background="#1e1e1e")
        self.setMinimumHeight(110)
        self.setLabel("left", "k-distance")
        self.setLabel("bottom", "points (sorted)")
        self.getPlotItem().hideButtons()
        self.setMouseEnabled(x=False, y=False)
        self.curve = self.plot([], [], pen=pg.mkPen("#76b7b2", width=2))
        self.line = pg.InfiniteLine(angle=0, movable=True, pen=pg.mkPen("#ffcc00", width=2),
                                    label="eps={value:.3g}", labelOpts={"position": 0.15, "color": "#ffcc00"})
        self.line.setToolTip("Drag to choose DBSCAN eps: points above the knee become noise (anomalies)")
        self.addItem(self.line)
        self.line.sigPositionChangeFinished.connect(lambda ln: self.epsChanged.emit(float(ln.value())))

    def set_curve(self, kdist: np.ndarray, eps: float) -> None:
        self.curve.setData(np.arange(len(kdist)), kdist)
        self.line.setValue(float(eps))
        if len(kdist):
            self.line.setBounds((0.0, float(kdist.max()) * 1.5 + 1e-9))

    def set_eps(self, eps: float) -> None:
        self.line.setValue(float(eps))
