"""Start the desktop app: `run_app(project, import_path) -> int` (called by `cli/gui.py`)."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

from anomaly_gui.gui.settings import APP, ORG

log = logging.getLogger(__name__)


def dark_palette() -> QPalette:
    """A calm dark Fusion palette (the viewer is dark; the rest matches it)."""
    pal = QPalette()
    roles = QPalette.ColorRole
    colors = {
        roles.Window: "#2b2b30", roles.WindowText: "#e6e6e6", roles.Base: "#232327",
        roles.AlternateBase: "#34343a", roles.ToolTipBase: "#3a3a40", roles.ToolTipText: "#f0f0f0",
        roles.Text: "#e6e6e6", roles.Button: "#36363c", roles.ButtonText: "#e6e6e6",
        roles.BrightText: "#ff453a", roles.Highlight: "#3d6ee0", roles.HighlightedText: "#ffffff",
        roles.Link: "#6ea8ff", roles.PlaceholderText: "#8a8a90", roles.Mid: "#404046", roles.Dark: "#1c1c20",
    }
    for role, color in colors.items():
        pal.setColor(role, QColor(color))
    for role in (roles.Text, roles.ButtonText, roles.WindowText):
        pal.setColor(QPalette.ColorGroup.Disabled, role, QColor("#7a7a80"))
    return pal


def make_application(argv: list[str] | None = None) -> QApplication:
    """The QApplication (reused when one exists, e.g. under pytest-qt), styled."""
    app = QApplication.instance()
    if app is None:
        app = QApplication(argv if argv is not None else sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setOrganizationName(ORG)
    app.setApplicationName(APP)
    app.setApplicationDisplayName("anomaly_gui")
    app.setStyle("Fusion")
    app.setPalette(dark_palette())
    return app


def run_app(project: Path | str | None = None, import_path: Path | str | None = None, demo: str | None = None,
            demo_project: Path | str | None = None, screenshot: Path | str | None = None) -> int:
    """Open the main window (on `project` when given, importing `import_path` into it, or on the `demo`
    domain) and run the event loop. `screenshot`: save the window to this PNG once ready, then quit."""
    _drop_foreign_qt_plugin_path()
    app = make_application()
    from anomaly_gui.gui.main_window import MainWindow
    from anomaly_gui.gui.state import AppState

    from anomaly_gui.gui.warmup import warm_up_imports

    warm_up_imports()  # before any job: a first import inside a worker froze the window for a second
    window = MainWindow(AppState())
    if project is not None:
        window.open_project(project)
    if import_path is not None:
        window.import_path(import_path)
    window.show()
    if screenshot is not None:
        _grab_when_ready(window, Path(screenshot), waiting_for_demo=demo is not None)
    if demo is not None:
        window.open_demo(demo, demo_project)
    code = app.exec()
    if window.state.project is not None:
        window.state.project.close()
    return int(code)


def _grab_when_ready(window: object, path: Path, waiting_for_demo: bool) -> None:
    """Save the window to `path` once the demo is ready (or at once without one), then quit."""
    import time

    from PySide6.QtCore import QTimer

    def grab() -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        window.grab().save(str(path))  # type: ignore[attr-defined]
        log.warning("screenshot saved to %s", path)
        QApplication.instance().quit()  # type: ignore[union-attr]

    def on_ready(domain: str) -> None:
        seconds = window.demo.seconds  # type: ignore[attr-defined]
        summary = window.demo.summary  # type: ignore[attr-defined]
        print(f"demo {domain} ready: {seconds:.1f} s after open, at {time.time():.3f} (epoch s)"
              + (f"; {summary}" if summary else ""), file=sys.stderr)
        QTimer.singleShot(2500, grab)  # let the layout settle and the video play a little

    def on_failed(message: str) -> None:
        print(f"demo failed: {message}", file=sys.stderr)
        QTimer.singleShot(500, grab)  # the window as it shows the failure, then quit

    if waiting_for_demo:
        window.demo_ready_hook = on_ready  # type: ignore[attr-defined]
        window.demo_failed_hook = on_failed  # type: ignore[attr-defined]
    else:
        QTimer.singleShot(2500, grab)


def _drop_foreign_qt_plugin_path() -> None:
    """opencv-python (pulled in by ultralytics) points QT_QPA_PLATFORM_PLUGIN_PATH at its own Qt plugins on
    import; PySide6 must use its own, or the xcb platform can fail on a desktop."""
    import os

    value = os.environ.get("QT_QPA_PLATFORM_PLUGIN_PATH", "")
    if "cv2" in value:
        os.environ.pop("QT_QPA_PLATFORM_PLUGIN_PATH", None)
