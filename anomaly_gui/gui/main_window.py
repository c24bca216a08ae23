"""The main window: viewer in the centre, dataset browser and registered panels in docks.

Contract for other features:
- `MainWindow(state)`; public: `window.state`, `window.viewer` (`gui.viewer.ImageViewer`, the central
  widget), `window.browser` (`gui.browser.DatasetBrowser`, left dock), `window.menus: dict[str, QMenu]`
  (File, Edit, View, Tools, Help; `window.menu(name)` makes a new top-level menu before Help),
  `window.docks: dict[panel_id, QDockWidget]`, `window.panels: dict[panel_id, QWidget]`,
  `window.open_project(path)`, `window.import_path(path)` (worker + progress dialog, see
  `gui.import_dialog`), `window.importer` (the `ImportRunner`).
- Panels come from `gui.panels.discover_panels()`: one dock each (area left / right / bottom; docks of
  one area are tabbed), a toggle in View ▸ Panels, their `actions()` in the menu named by `menu`.
- Dock layout and window geometry persist in QSettings (`gui.settings.app_settings`, which honours
  `ANOMALY_GUI_SETTINGS_DIR`). Recent projects live there too.
- Keys: A / D previous / next item (window-wide, also with the viewer focused), T toggles overlays,
  Ctrl+F fits, Ctrl+= / Ctrl+- zoom, Ctrl+1 actual pixels, Ctrl+O open, Ctrl+I import.
- Drop folders or files on the window to import them, one after the other (a `.agproj` file is opened instead).
- Docks follow the data (`gui.dock_follower`): a project shows the docks its imagery uses, one layout per kind.
- Demos (`gui.demo`): `window.open_demo(domain)` opens a sample data set as its own project and trains a
  small run on first open; the welcome page and File ▸ Open demo offer the four domains.
- Status bar: device (`engines.device.device_label()`), item counts, current item, pixel under the
  cursor and `state.message` texts.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence, QShowEvent
from PySide6.QtWidgets import QDockWidget, QFileDialog, QFrame, QLabel, QMainWindow, QMenu, QScrollArea, QTabBar, QWidget

from anomaly_gui.core.errors import AnomalyGuiError
from anomaly_gui.core.project import PROJECT_SUFFIX, open_project
from anomaly_gui.gui import settings as app_settings_mod
from anomaly_gui.gui.batch_import import BatchImporter
from anomaly_gui.gui.browser import DatasetBrowser
from anomaly_gui.gui.dialogs import AboutDialog, ShortcutsDialog, WelcomePage
from anomaly_gui.gui.dock_follower import DockFollower
from anomaly_gui.gui.import_dialog import ImportRunner
from anomaly_gui.gui.panels import discover_panels
from anomaly_gui.gui.state import AppState
from anomaly_gui.gui.viewer import ImageViewer
from anomaly_gui.gui.viewer_item import ItemPresenter
from anomaly_gui.gui.workers import JOBS

log = logging.getLogger(__name__)
LAYOUT_VERSION = 1
_AREAS = {
    "left": Qt.DockWidgetArea.LeftDockWidgetArea,
    "right": Qt.DockWidgetArea.RightDockWidgetArea,
    "bottom": Qt.DockWidgetArea.BottomDockWidgetArea,
    "top": Qt.DockWidgetArea.TopDockWidgetArea,
}
MENU_NAMES = ("File", "Edit", "View", "Tools", "Help")


class MainWindow(QMainWindow):
    """See the module docstring for what other features can rely on."""

    def __init__(self, state: AppState | None = None):
        super().__init__()
        self.state = state or AppState()
        self.setObjectName("mainWindow")
        self.resize(1400, 900)
        self.setAcceptDrops(True)
        self.setDockOptions(QMainWindow.DockOption.AllowTabbedDocks | QMainWindow.DockOption.AllowNestedDocks)
        self.menus: dict[str, QMenu] = {}
        self.docks: dict[str, QDockWidget] = {}
        self.panels: dict[str, QWidget] = {}
        self.panel_errors: dict[str, str] = {}
        self.actions_by_name: dict[str, QAction] = {}
        self._shown_once = False
        self._first_in_area: dict[str, QDockWidget] = {}
        # first to hear of a new project: it saves the old project's dock layout before panels react
        self.dock_follower = DockFollower(self)
        self._setup_viewer()
        self._setup_browser()
        self.presenter.neighbors = self.browser.neighbors
        self._setup_menus()
        self._setup_panels()
        self._setup_status_bar()
        self.importer = ImportRunner(self.state, self)
        self.batch_importer = BatchImporter(self.state, self)
        self.importer.finished.connect(self._on_import_finished)
        self.state.projectChanged.connect(self._on_project_changed)
        self.state.itemsChanged.connect(self._update_counts)
        self.state.currentItemChanged.connect(self._on_current_item)
        self.state.message.connect(self._show_message)
        self._default_layout: QByteArray | None = self.saveState(LAYOUT_VERSION)
        self._import_queue: list[Path] = []
        self.restore_layout()
        if not self._restored_state and self.state.project is None:
            self.dock_follower.welcome_layout()  # a first start: the welcome page has the room
        self._on_project_changed(self.state.project)

    # -- setup -------------------------------------------------------------------------------------
    def _setup_viewer(self) -> None:
        self.viewer = ImageViewer(self.state, self)
        self.presenter = ItemPresenter(self.state, self.viewer)
        self.welcome = WelcomePage()
        self.welcome.sampleRequested.connect(self.open_sample_data)
        self.welcome.demoRequested.connect(self.open_demo)
        self.welcome.importRequested.connect(self.choose_import_folder)
        self.welcome.openRequested.connect(self.choose_open_project)
        self.welcome.recentRequested.connect(self.open_project)
        self.viewer.set_placeholder(self.welcome)
        self.setCentralWidget(self.viewer)

    def _setup_browser(self) -> None:
        self.browser = DatasetBrowser(self.state, self)
        dock = QDockWidget("Dataset", self)
        dock.setObjectName("dock_browser")
        dock.setWidget(self.browser)
        dock.setMinimumWidth(300)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)
        self.docks["browser"] = dock

    def _add_action(self, menu: str, name: str, text: str, slot: Any, shortcut: str | QKeySequence | None = None,
                    tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        if tip:
            action.setStatusTip(tip)
            action.setToolTip(tip)
        action.triggered.connect(lambda _checked=False: slot())
        self.menus[menu].addAction(action)
        self.addAction(action)  # shortcuts work whatever has focus in the window
        self.actions_by_name[name] = action
        return action

    def _setup_menus(self) -> None:
        bar = self.menuBar()
        for name in MENU_NAMES:
            self.menus[name] = bar.addMenu(f"&{name}")
        std = QKeySequence.StandardKey
        self._add_action("File", "new_project", "&New project…", self.choose_new_project, std.New)
        self._add_action("File", "open_project", "&Open project…", self.choose_open_project, std.Open)
        self.recent_menu = self.menus["File"].addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        self._fill_recent_menu()
        self.menus["File"].addSeparator()
        self._add_action("File", "import_folder", "&Import dataset folder…", self.choose_import_folder, "Ctrl+I",
                         "MVTec AD, VOC, YOLO, COCO, camera traps, frame folders or plain image folders")
        self._add_action("File", "import_video", "Import &video file…", self.choose_import_video)
        self._add_action("File", "import_batch", "Import &batch results…", lambda: self.batch_importer.choose(),
                         tip="Load the Parquet output of `anomaly-gui score` into the project as a run")
        self._add_action("File", "open_sample", "Open &sample data", self.open_sample_data)
        from anomaly_gui.gui.demo import DEMOS

        demo_menu = self.menus["File"].addMenu("Open &demo")
        for domain, spec in DEMOS.items():
            act = demo_menu.addAction(spec.title, lambda d=domain: self.open_demo(d))
            act.setStatusTip(spec.blurb)
            self.actions_by_name[f"demo_{domain}"] = act
        self.menus["File"].addSeparator()
        self._add_action("File", "quit", "&Quit", self.close, std.Quit)

        v = "View"
        self._add_action(v, "prev_item", "&Previous item", lambda: self.browser.move(-1), "A")
        self._add_action(v, "next_item", "&Next item", lambda: self.browser.move(+1), "D")
        self.menus[v].addSeparator()
        self._add_action(v, "fit", "&Fit to window", self.viewer.fit, "Ctrl+F")
        self._add_action(v, "zoom_in", "Zoom &in", lambda: self.viewer.zoom_by(1.25), "Ctrl+=")
        self._add_action(v, "zoom_out", "Zoom &out", lambda: self.viewer.zoom_by(0.8), "Ctrl+-")
        self._add_action(v, "actual_pixels", "&Actual pixels (100%)", self.viewer.actual_pixels, "Ctrl+1")
        self._add_action(v, "toggle_overlays", "&Toggle overlays", self.toggle_overlays, "T",
                         "Show or hide heatmap, contours and boxes")
        self._add_action(v, "clear_filter", "Show &all items (clear filter)", lambda: self.state.set_filter(None))
        self.menus[v].addSeparator()
        self.panels_menu = self.menus[v].addMenu("&Panels")
        self.panels_menu.addAction(self.docks["browser"].toggleViewAction())
        self._add_action(v, "reset_layout", "&Reset layout", self.reset_layout)

        self._add_action("Tools", "synthetic", "Make &synthetic anomalies…", self.open_synthetic_dialog,
                         tip="Paste animal crops of the project onto background images: a labelled test set")

        self._add_action("Help", "shortcuts", "&Keyboard shortcuts", self.show_shortcuts, "F1")
        self._add_action("Help", "about", "&About anomaly_gui", self.show_about)

    def menu(self, name: str) -> QMenu:
        """The top-level menu `name`, made (before Help) when it does not exist yet."""
        if name not in self.menus:
            self.menus[name] = QMenu(f"&{name}", self)
            self.menuBar().insertMenu(self.menus["Help"].menuAction(), self.menus[name])
        return self.menus[name]

    def _setup_panels(self) -> None:
        first_in_area: dict[str, QDockWidget] = {}
        for cls in discover_panels():
            pid = str(cls.panel_id)
            try:
                panel = cls(self.state, self)
            except (AnomalyGuiError, ImportError, RuntimeError, TypeError, ValueError, AttributeError) as exc:
                # one broken panel must not take the app down; say which and why
                log.exception("panel %s could not be created", pid)
                self.panel_errors[pid] = f"{type(exc).__name__}: {exc}"
                continue
            dock = QDockWidget(str(cls.title), self)
            dock.setObjectName(f"dock_{pid}")
            # a scroll area lets a panel with a large minimum size shrink with its dock (it scrolls), so
            # no panel can push the window past the screen
            scroll = QScrollArea()
            scroll.setObjectName(f"scroll_{pid}")
            scroll.setWidgetResizable(True)
            scroll.setFrameShape(QFrame.Shape.NoFrame)
            scroll.setWidget(panel)
            dock.setWidget(scroll)
            area = str(getattr(cls, "area", "right"))
            if area in first_in_area:
                self.tabifyDockWidget(first_in_area[area], dock)  # docks of one area share it as tabs
            else:
                self.addDockWidget(_AREAS.get(area, Qt.DockWidgetArea.RightDockWidgetArea), dock)
                first_in_area[area] = dock
            self.docks[pid] = dock
            self.panels[pid] = panel
            self.panels_menu.addAction(dock.toggleViewAction())
            actions = getattr(panel, "actions", None)
            menu_name = getattr(cls, "menu", None)
            if menu_name and callable(actions):
                menu = self.menu(str(menu_name))
                for act in actions():
                    menu.addAction(act)
                    self.addAction(act)
        for dock in first_in_area.values():
            dock.raise_()
        self._first_in_area = first_in_area

    def _apply_default_sizes(self) -> None:
        """Dock sizes of the default layout (applied once shown, when no saved layout exists)."""
        self.resizeDocks([self.docks["browser"]], [430], Qt.Orientation.Horizontal)
        if "right" in self._first_in_area:
            self.resizeDocks([self._first_in_area["right"]], [420], Qt.Orientation.Horizontal)
        if "bottom" in self._first_in_area:
            self.resizeDocks([self._first_in_area["bottom"]], [max(180, self.height() // 4)], Qt.Orientation.Vertical)

    def _setup_status_bar(self) -> None:
        from anomaly_gui.engines.device import device_label

        sb = self.statusBar()
        self.pixel_label = QLabel("")
        self.zoom_label = QLabel("")
        self.zoom_label.setToolTip("Zoom (Ctrl+F fits, Ctrl+1 is 100 %)")
        self.item_label = QLabel("")
        self.count_label = QLabel("")
        self.device_label = QLabel(device_label())
        self.device_label.setToolTip("Device used for training and scoring")
        for w in (self.pixel_label, self.zoom_label, self.item_label, self.count_label, self.device_label):
            w.setContentsMargins(6, 0, 6, 0)
            sb.addPermanentWidget(w)
        self.viewer.mouseMoved.connect(lambda x, y: self.pixel_label.setText(self.viewer.pixel_text(x, y)))
        self.viewer.view_box.sigRangeChanged.connect(self._update_zoom_label)

    def _update_zoom_label(self, *_: object) -> None:
        self.zoom_label.setText(f"{self.viewer.view_scale() * 100:.0f} %" if self.viewer.image is not None else "")

    # -- layout persistence ---------------------------------------------------------------------------
    def restore_layout(self) -> None:
        s = app_settings_mod.app_settings()
        geometry = s.value("window/geometry")
        layout = s.value("window/state")
        self._restored_geometry = isinstance(geometry, QByteArray) and self.restoreGeometry(geometry)
        self._restored_state = isinstance(layout, QByteArray) and self.restoreState(layout, LAYOUT_VERSION)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._shown_once:
            return
        self._shown_once = True
        screen = self.screen()
        if not self._restored_geometry and screen is not None:
            avail = screen.availableGeometry()
            w, h = min(1400, int(avail.width() * 0.95)), min(900, int(avail.height() * 0.92))
            self.resize(w, h)
            self.move(avail.x() + (avail.width() - w) // 2, avail.y() + (avail.height() - h) // 2)
        if not self._restored_state:
            QTimer.singleShot(0, self._apply_default_sizes)
        QTimer.singleShot(0, self.hide_stale_tab_bars)

    def hide_stale_tab_bars(self) -> None:
        """Hide dock tab bars Qt left behind (tabifying two areas leaves a visible duplicate in Qt 6).

        For each group of tabbed docks the tab bar in use sits against the dock shown; copies elsewhere
        with the same tabs are stale.
        """
        by_tabs: dict[tuple[str, ...], list[QTabBar]] = {}
        for bar in self.findChildren(QTabBar, options=Qt.FindChildOption.FindDirectChildrenOnly):
            if bar.isVisible() and bar.count():
                by_tabs.setdefault(tuple(bar.tabText(i) for i in range(bar.count())), []).append(bar)
        shown = {d.windowTitle(): d for d in self.docks.values() if d.isVisible() and not d.isFloating()}
        for bars in by_tabs.values():
            if len(bars) < 2:
                continue
            dock = next((shown[t] for t in (bars[0].tabText(i) for i in range(bars[0].count())) if t in shown
                         and not shown[t].visibleRegion().isEmpty()), None)
            if dock is None:
                continue
            g = dock.geometry()
            keep = min(bars, key=lambda b: min(abs(b.y() - g.bottom() - 1), abs(b.geometry().bottom() + 1 - g.y())))
            for b in bars:
                if b is not keep:
                    b.hide()

    def save_layout(self) -> None:
        self.dock_follower.save()
        s = app_settings_mod.app_settings()
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState(LAYOUT_VERSION))
        s.sync()

    def reset_layout(self) -> None:
        if self._default_layout is not None:
            self.restoreState(self._default_layout, LAYOUT_VERSION)
        for dock in self.docks.values():
            dock.show()
        self._apply_default_sizes()
        if self.dock_follower.profile:
            self.dock_follower.apply_default()
        QTimer.singleShot(0, self.hide_stale_tab_bars)

    # -- projects ---------------------------------------------------------------------------------------
    def open_project(self, path: str | Path) -> bool:
        """Open (or create) a project file; errors are shown, the current project stays open."""
        try:
            project = open_project(path)
        except AnomalyGuiError as exc:
            self._error("Cannot open project", str(exc))
            return False
        self.state.set_project(project)
        app_settings_mod.add_recent_project(project.path)
        return True

    def choose_new_project(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "New project", str(app_settings_mod.data_home()),
                                              f"Projects (*{PROJECT_SUFFIX})")
        if path:
            p = Path(path)
            if p.exists():
                self._error("Project exists", f"{p} already exists; use Open project.")
                return
            self.open_project(p if p.suffix else p.with_suffix(PROJECT_SUFFIX))

    def choose_open_project(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open project", "", f"Projects (*{PROJECT_SUFFIX})")
        if path:
            self.open_project(path)

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = app_settings_mod.recent_projects()
        for p in recent:
            act = self.recent_menu.addAction(Path(p).name)
            act.setToolTip(p)
            act.setStatusTip(p)
            act.triggered.connect(lambda _c=False, p=p: self.open_project(p))
        if not recent:
            self.recent_menu.addAction("(none)").setEnabled(False)
        else:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear list", app_settings_mod.clear_recent_projects)

    # -- import ------------------------------------------------------------------------------------------
    def import_path(self, path: str | Path) -> bool:
        """Import a dataset folder or file in a worker (a project is made first when none is open)."""
        path = Path(path)
        if not path.exists():
            self._error("Import", f"{path}: not found")
            return False
        if self.importer.busy():
            self._show_message("An import is already running; wait for it or cancel it")
            return False
        if self.state.project is None and not self.open_project(_fresh_project_path(path)):
            return False
        self.importer.start(path)
        return True

    def choose_import_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Import dataset folder")
        if path:
            self.import_path(path)

    def choose_import_video(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import video file", "",
                                              "Videos (*.mp4 *.avi *.mov *.mkv *.m4v *.mpg *.mpeg *.wmv *.webm)")
        if path:
            self.import_path(path)

    def open_sample_data(self) -> None:
        """Open (making it once) a project on the bundled sample data."""
        try:
            from anomaly_gui.sample_data import ensure_sample_data
        except ImportError as exc:
            self._error("Sample data", f"the sample data module is not available ({exc})")
            return
        try:
            root = Path(ensure_sample_data())
        except (AnomalyGuiError, OSError) as exc:
            self._error("Sample data", str(exc))
            return
        target = root / "product" if (root / "product").is_dir() else root
        proj = app_settings_mod.data_home() / "sample.agproj"
        fresh = not proj.exists()
        if self.open_project(proj) and (fresh or self.state.project.count_items() == 0):  # type: ignore[union-attr]
            self.import_path(target)

    def open_demo(self, domain: str, project: str | Path | None = None) -> bool:
        """Open the demo project of `domain` (product, sar, wildlife, video); see `gui.demo`."""
        from anomaly_gui.gui.demo import DemoController

        if getattr(self, "demo", None) is None:
            self.demo = DemoController(self)
            for signal, hook in ((self.demo.ready, getattr(self, "demo_ready_hook", None)),
                                 (self.demo.failed, getattr(self, "demo_failed_hook", None))):
                if hook is not None:
                    signal.connect(hook)
        return self.demo.open(domain, project)

    def _on_import_finished(self, result: Any) -> None:
        if result is not None and self.state.current_item is None:
            self.browser.move(0)
        if self._import_queue:
            QTimer.singleShot(0, self._next_queued_import)

    def _next_queued_import(self) -> None:
        if self._import_queue and not self.importer.busy():
            self.import_path(self._import_queue.pop(0))

    # -- drag and drop ----------------------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        urls = event.mimeData().urls()
        if urls and all(u.isLocalFile() for u in urls):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        if not paths:
            event.ignore()
            return
        event.acceptProposedAction()
        self.import_paths(paths)

    def import_paths(self, paths: list[Path]) -> None:
        """Open a dropped project file, or import every dropped path one after the other (into one project)."""
        projects = [p for p in paths if p.suffix == PROJECT_SUFFIX]
        if projects:
            self.open_project(projects[0])
            if len(paths) > 1:
                self._show_message(f"Opened {projects[0].name}; drop data folders separately to import them")
            return
        first, rest = paths[0], list(paths[1:])
        if self.import_path(first):
            self._import_queue.extend(rest)
            if rest:
                self._show_message(f"Importing {len(paths)} paths, one after the other")

    # -- state followers ---------------------------------------------------------------------------------
    def _on_project_changed(self, project: Any) -> None:
        self.setWindowTitle(f"{Path(project.path).stem} — anomaly_gui" if project is not None else "anomaly_gui")
        self._update_counts()
        if project is not None and project.count_items() > 0 and self.state.current_item is None:
            self.browser.move(0)
        self._update_placeholder()

    def _update_counts(self) -> None:
        project = self.state.project
        if project is None:
            self.count_label.setText("no project")
        else:
            parts = [f"{split or '-'} {sum(v.values())}" for split, v in project.splits().items()]
            n = project.count_items()
            self.count_label.setText(f"{n} items" + (f" ({', '.join(parts)})" if parts else ""))
        self._update_placeholder()

    def _update_placeholder(self) -> None:
        project = self.state.project
        empty = project is None or project.count_items() == 0
        if empty:
            self.welcome.set_recent(app_settings_mod.recent_projects() if project is None else [])
            self.welcome.set_hint(
                "Find anomalies in product images, SAR scenes, camera-trap photos and video.<br>"
                + ("Start with the bundled sample data, import a dataset folder (MVTec AD, VOC, YOLO, COCO,"
                   " image folders, videos), or drop a folder anywhere on this window." if project is None else
                   f"Project <b>{Path(project.path).name}</b> is empty: import a dataset folder or drop one here.")
            )
        self.viewer.show_placeholder(empty)

    def _on_current_item(self, item_id: Any) -> None:
        item = self.presenter.item
        self.item_label.setText(item.name if item is not None else "")
        if item is None and self.state.project is not None:
            self._update_placeholder()

    def _show_message(self, text: str) -> None:
        self.statusBar().showMessage(text, 8000)

    def toggle_overlays(self) -> None:
        on = not self.viewer.overlays_visible()
        self.state.set_display(show_heatmap=on, show_contours=on, show_boxes=on)
        self._show_message("Overlays shown" if on else "Overlays hidden (T to show)")

    def _error(self, title: str, text: str) -> None:
        from PySide6.QtWidgets import QMessageBox

        log.error("%s: %s", title, text)
        box = QMessageBox(QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.Ok, self)
        box.open()
        self.last_error_dialog = box
        self._show_message(text)

    def open_synthetic_dialog(self) -> None:
        from anomaly_gui.gui.synthetic_dialog import open_synthetic_dialog

        open_synthetic_dialog(self)

    def show_about(self) -> None:
        self.about_dialog = AboutDialog(self.device_label.text(), self)
        self.about_dialog.open()

    def show_shortcuts(self) -> None:
        acts = [(name, a) for name, menu in self.menus.items() for a in menu.actions()]
        self.shortcuts_dialog = ShortcutsDialog(acts, self)
        self.shortcuts_dialog.open()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.save_layout()
        JOBS.cancel_all(3000)
        self.browser.shutdown()
        self.presenter.prefetcher.shutdown()
        super().closeEvent(event)


def _fresh_project_path(data_path: Path) -> Path:
    """A new project file under the app's data folder, named after the dataset."""
    folder = app_settings_mod.data_home() / "projects"
    stem = data_path.stem or "project"
    candidate = folder / f"{stem}{PROJECT_SUFFIX}"
    n = 2
    while candidate.exists():
        candidate = folder / f"{stem}-{n}{PROJECT_SUFFIX}"
        n += 1
    return candidate
