"""The Detection panel's restricted zones: the zone list (rename in place, select, delete), drawing a zone
on the image with the `ZoneTool` (for every image or only the current one) and showing the current item's
zones. A mixin of `DetectionPanel`, which provides `state`, `tabs`, `zone_tool` and `refresh`."""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QGroupBox, QHBoxLayout, QListWidget, QListWidgetItem, QPushButton, QVBoxLayout


class ZonesMixin:
    """Zone list and zone drawing. Mixed into `DetectionPanel` (a QWidget)."""

    def _build_zone_box(self) -> QGroupBox:
        box = QGroupBox("Restricted zones")
        zl = QVBoxLayout(box)
        self.zone_list = QListWidget()
        self.zone_list.setObjectName("zoneList")
        self.zone_list.itemChanged.connect(self._on_zone_renamed)
        self.zone_list.currentItemChanged.connect(self._on_zone_list_selection)
        zl.addWidget(self.zone_list)
        row = QHBoxLayout()
        self.draw_zone_button = QPushButton("Draw zone")
        self.draw_zone_button.setToolTip("Click vertices on the image; double-click or Enter closes the polygon")
        self.draw_zone_button.clicked.connect(self.start_zone)
        self.delete_zone_button = QPushButton("Delete zone")
        self.delete_zone_button.clicked.connect(lambda: self._delete_zone(self._selected_zone()))
        self.zone_scope = QComboBox()
        self.zone_scope.addItems(["all images", "this image"])
        self.zone_scope.setToolTip("A new zone applies to every image, or only to the current one")
        row.addWidget(self.draw_zone_button)
        row.addWidget(self.delete_zone_button)
        row.addWidget(self.zone_scope)
        zl.addLayout(row)
        return box

    def _connect_zone_tool(self) -> None:
        if self.zone_tool is not None:
            self.zone_tool.zoneDrawn.connect(self._on_zone_drawn)
            self.zone_tool.zoneEdited.connect(self._on_zone_edited)
            self.zone_tool.deleteRequested.connect(self._delete_zone)
            self.zone_tool.zoneSelected.connect(self._on_zone_selected)

    # -- zones --------------------------------------------------------------------------------------
    def start_zone(self) -> None:
        if self.zone_tool is None or self.state.current_item is None:
            self.state.message.emit("Open an image to draw a zone on it")
            return
        self.tabs.setCurrentIndex(2)
        self.zone_tool.start()

    def _on_zone_drawn(self, points: list) -> None:
        project = self.state.project
        if project is None:
            return
        n = len(project.zones()) + 1
        item_id = self.state.current_item if self.zone_scope.currentIndex() == 1 else None
        project.add_zone(f"Zone {n}", points, item_id=item_id)
        self.state.message.emit(f"Zone {n} saved ({len(points)} vertices)")

    def _on_zone_edited(self, zone_id: int, points: list) -> None:
        if self.state.project is not None:
            self.state.project.update_zone(zone_id, polygon=points)

    def _delete_zone(self, zone_id: int | None) -> None:
        if self.state.project is not None and zone_id is not None:
            self.state.project.delete_zone(int(zone_id))

    def _selected_zone(self) -> int | None:
        item = self.zone_list.currentItem()
        return None if item is None else int(item.data(Qt.ItemDataRole.UserRole))

    def _on_zone_selected(self, zone_id: Any) -> None:
        for k in range(self.zone_list.count()):
            if self.zone_list.item(k).data(Qt.ItemDataRole.UserRole) == zone_id:
                self.zone_list.setCurrentRow(k)

    def _on_zone_list_selection(self, *_: Any) -> None:
        if self.zone_tool is not None and self.zone_tool.selected != self._selected_zone():
            self.zone_tool.select(self._selected_zone())

    def _on_zone_renamed(self, item: QListWidgetItem) -> None:
        if self.state.project is not None:
            name = item.text().split("  (")[0].strip()
            if name:
                self.state.project.update_zone(int(item.data(Qt.ItemDataRole.UserRole)), name=name)

    def _on_zones_changed(self) -> None:
        project = self.state.project
        self.zone_list.blockSignals(True)
        self.zone_list.clear()
        for z in (project.zones() if project is not None else []):
            scope = "all images" if z["item_id"] is None else f"item {z['item_id']}"
            item = QListWidgetItem(f"{z['name']}  ({scope}, {len(z['polygon'])} vertices)")
            item.setData(Qt.ItemDataRole.UserRole, z["id"])
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)
            self.zone_list.addItem(item)
        self.zone_list.blockSignals(False)
        self.refresh()

    def _show_zones(self) -> None:
        if self.zone_tool is None:
            return
        project, item_id = self.state.project, self.state.current_item
        self.zone_tool.show_zones(project.zones(int(item_id)) if project is not None and item_id is not None else [])
