"""The Detection dock's live mAP plot (one point per epoch, the y axis from 0)."""
from __future__ import annotations

from typing import Any

import pyqtgraph as pg
from PySide6.QtWidgets import QWidget


class MapCurve(pg.PlotWidget):
    """mAP@0.5 and mAP@0.5:0.95 per epoch, drawn as the log entries arrive."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent, background="#1e1e22")
        self.setMinimumHeight(150)
        self.showGrid(x=True, y=True, alpha=0.25)
        self.setLabel("bottom", "epoch")
        self.setLabel("left", "validation mAP")
        self.getViewBox().setLimits(yMin=0.0, yMax=1.0)
        self.setYRange(0, 1, padding=0)
        self.addLegend(offset=(-6, 6), labelTextSize="8pt")
        self.map50 = self.plot([], [], pen=pg.mkPen("#0a84ff", width=2), symbol="o", symbolSize=5, symbolBrush="#0a84ff", name="mAP@0.5")
        self.map5095 = self.plot([], [], pen=pg.mkPen("#ff9f0a", width=2), symbol="o", symbolSize=5, symbolBrush="#ff9f0a", name="mAP@0.5:0.95")
        self.entries: list[dict[str, Any]] = []

    def clear_curves(self) -> None:
        self.entries = []
        self.map50.setData([], [])
        self.map5095.setData([], [])

    def add_entry(self, entry: dict[str, Any]) -> None:
        if "map50" not in entry or not isinstance(entry.get("epoch"), (int, float)):
            return
        self.entries.append(entry)
        xs = [float(e["epoch"]) for e in self.entries]
        self.map50.setData(xs, [float(e.get("map50") or 0.0) for e in self.entries])
        self.map5095.setData(xs, [float(e.get("map50_95") or 0.0) for e in self.entries])
        # the axis starts at 0 and ends a little above the best value, so a poor run's curve is visible too
        best = max((float(e.get("map50") or 0.0) for e in self.entries), default=0.0)
        self.setYRange(0.0, min(1.0, max(0.05, 1.2 * best)), padding=0)
