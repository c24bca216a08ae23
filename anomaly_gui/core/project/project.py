"""`Project`: the store's concerns (items, annotations, verdicts, runs and score caches, zones) on one file."""
from __future__ import annotations

from pathlib import Path

from anomaly_gui.core.project.annotations import AnnotationStore
from anomaly_gui.core.project.items import ItemStore
from anomaly_gui.core.project.runs import RunStore
from anomaly_gui.core.project.schema import PROJECT_SUFFIX
from anomaly_gui.core.project.verdicts import VerdictStore
from anomaly_gui.core.project.zones import ZoneStore


class Project(ItemStore, AnnotationStore, VerdictStore, RunStore, ZoneStore):
    """An open project file (see `store.ProjectStore`); each concern's methods are in its own module."""

    def __enter__(self) -> "Project":
        return self


def open_project(path: str | Path) -> Project:
    """Open or create a project; a path without suffix gets `.agproj`."""
    p = Path(path)
    if p.suffix == "":
        p = p.with_suffix(PROJECT_SUFFIX)
    return Project(p)
