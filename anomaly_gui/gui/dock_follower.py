"""Keeps the main window's docks in step with the open project's kind of imagery (`gui.dock_policy`).

`DockFollower(window)` listens to the project and its items; when the profile changes it saves the
layout of the old profile (QSettings `layout/<profile>`) and restores the new one's, or lays out the
profile's defaults: its docks shown, the others hidden (View ▸ Panels brings them back), the main dock
raised and given room (the video player and the cluster map get about half the window's height).
"""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import QByteArray, QObject, Qt, QTimer

from anomaly_gui.gui import settings as app_settings_mod
from anomaly_gui.gui.dock_policy import dock_wanted, main_docks, profile_key, project_profile

LAYOUT_VERSION = 1
#: docks that hold a plot or a player: at least this fraction of the window height when they are the main one
TALL_DOCKS = {"video_player": 0.55, "cluster_view": 0.5}


class DockFollower(QObject):
    def __init__(self, window: Any):
        super().__init__(window)
        self.window = window
        self.profile: frozenset[str] = frozenset()
        self._pending = QTimer(self)
        self._pending.setSingleShot(True)
        self._pending.setInterval(0)
        self._pending.timeout.connect(self.update)
        window.state.projectChanged.connect(lambda _p: self.update())
        window.state.itemsChanged.connect(self._pending.start)  # an import adds items in batches

    @property
    def key(self) -> str:
        return profile_key(self.profile)

    def update(self) -> None:
        """Follow the project's profile (nothing happens while it stays the same)."""
        new = project_profile(self.window.state.project)
        if new == self.profile:
            return
        if self.profile:
            self.save()
        self.profile = new
        if not new:
            return
        saved = app_settings_mod.app_settings().value(f"layout/{profile_key(new)}")
        if not (isinstance(saved, QByteArray) and self.window.restoreState(saved, LAYOUT_VERSION)):
            self.apply_default()
        QTimer.singleShot(0, self.tidy_tab_bars)

    def tidy_tab_bars(self) -> None:
        """Hide tab bars Qt leaves behind when docks of a tab group were hidden (a live tab bar lists only
        shown docks, so a bar naming a hidden dock is stale), then the stale copies."""
        from PySide6.QtWidgets import QTabBar

        hidden = {d.windowTitle() for d in self.window.docks.values() if not d.isVisible()}
        for bar in self.window.findChildren(QTabBar, options=Qt.FindChildOption.FindDirectChildrenOnly):
            if any(bar.tabText(i) in hidden for i in range(bar.count())):
                bar.hide()
        self.window.hide_stale_tab_bars()

    def save(self) -> None:
        """Remember the current layout for the current profile."""
        if not self.profile:
            return
        s = app_settings_mod.app_settings()
        s.setValue(f"layout/{self.key}", self.window.saveState(LAYOUT_VERSION))
        s.sync()

    def welcome_layout(self) -> None:
        """No project yet (a first start): only the dataset browser beside the welcome page; the feature
        docks come with the first project, chosen by its kind of imagery (all stay in View ▸ Panels)."""
        for pid, dock in self.window.docks.items():
            dock.setVisible(pid == "browser")
        QTimer.singleShot(0, self.tidy_tab_bars)

    def apply_default(self) -> None:
        """The profile's docks shown, the others hidden, the main docks raised and sized."""
        docks = self.window.docks
        for pid, dock in docks.items():
            dock.setVisible(dock_wanted(pid, self.profile))
        for pid in main_docks(self.profile):
            if pid in docks:
                docks[pid].show()
                docks[pid].raise_()
        QTimer.singleShot(0, self.apply_sizes)
        QTimer.singleShot(0, self.tidy_tab_bars)

    def apply_sizes(self) -> None:
        docks, h, w = self.window.docks, max(self.window.height(), 600), max(self.window.width(), 900)
        # side docks wide enough for their sliders and plots (Qt shrinks them when docks are hidden / shown)
        for area, width in ((Qt.DockWidgetArea.RightDockWidgetArea, max(440, int(0.3 * w))),
                            (Qt.DockWidgetArea.LeftDockWidgetArea, max(320, int(0.22 * w)))):
            shown = [d for d in docks.values() if d.isVisible() and not d.isFloating()
                     and self.window.dockWidgetArea(d) == area]
            main = [docks[p] for p in main_docks(self.profile) if p in docks and docks[p] in shown]
            if shown and (main or shown)[0].width() < width - 20:
                self.window.resizeDocks([(main or shown)[0]], [width], Qt.Orientation.Horizontal)
        for pid in main_docks(self.profile):
            frac = TALL_DOCKS.get(pid)
            dock = docks.get(pid)
            if frac and dock is not None and not dock.isFloating() and dock.isVisible() and dock.height() < frac * h - 40:
                self.window.resizeDocks([dock], [int(frac * h)], Qt.Orientation.Vertical)

    def give_room(self, pid: str, frac: float = 0.5) -> None:
        """Show and raise dock `pid` and make it at least `frac` of the window's height (never a strip)."""
        dock = self.window.docks.get(pid)
        if dock is None:
            return
        dock.show()
        dock.raise_()
        h = max(self.window.height(), 600)
        if not dock.isFloating() and dock.height() < frac * h - 40:
            self.window.resizeDocks([dock], [int(frac * h)], Qt.Orientation.Vertical)
