"""Application settings (window layout, recent projects) in QSettings.

When the environment variable `ANOMALY_GUI_SETTINGS_DIR` is set (tests do), settings live in an INI
file under that folder, so a test never sees the user's layout or recent files. Otherwise Qt's native
per-user location is used (organisation "anomaly_gui", application "anomaly_gui").
"""
from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QSettings

ORG = "anomaly_gui"
APP = "anomaly_gui"
MAX_RECENT = 10


def app_settings() -> QSettings:
    """The settings store, honouring `ANOMALY_GUI_SETTINGS_DIR`."""
    folder = os.environ.get("ANOMALY_GUI_SETTINGS_DIR")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        return QSettings(str(Path(folder) / f"{APP}.ini"), QSettings.Format.IniFormat)
    return QSettings(ORG, APP)


def data_home() -> Path:
    """Where the app keeps projects it makes on its own (demo, drag-and-drop without an open project)."""
    return Path.home() / ".anomaly_gui"


def recent_projects() -> list[str]:
    """Recently opened project files, newest first, only those that still exist."""
    value = app_settings().value("recent_projects", [])
    if isinstance(value, str):  # QSettings gives a bare string for a one-element list in INI files
        value = [value]
    return [p for p in (value or []) if p and Path(p).exists()]


def add_recent_project(path: str | Path) -> None:
    path = str(Path(path).resolve())
    items = [path] + [p for p in recent_projects() if p != path]
    s = app_settings()
    s.setValue("recent_projects", items[:MAX_RECENT])
    s.sync()


def clear_recent_projects() -> None:
    s = app_settings()
    s.remove("recent_projects")
    s.sync()
