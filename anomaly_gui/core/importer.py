"""Import a dataset into a project: detect the layout, read it, store items and annotations."""
from __future__ import annotations

from pathlib import Path

from anomaly_gui.core.formats.base import ImportResult, ProgressFn, import_dataset
from anomaly_gui.core.project import Project


def import_into_project(project: Project, path: str | Path, fmt: str | None = None, progress: ProgressFn | None = None) -> ImportResult:
    """Read `path` (format detected unless given) and add its items to `project`.

    Problems with single files are kept in the result (and in the project's import log);
    only an unreadable root raises DataError.
    """
    path = Path(path).resolve()
    result = import_dataset(path, fmt, progress)
    project.add_items(result.items, source=str(path))
    for name in result.classes:
        if name not in project.label_classes():
            project.set_label_class(name, default_color(len(project.label_classes())))
    project.record_import(path, result.format, len(result.items), [str(p) for p in result.problems])
    return result


_PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45",
            "#fabed4", "#469990", "#dcbeff", "#9a6324", "#fffac8", "#800000", "#aaffc3", "#808000"]


def default_color(index: int) -> str:
    """A distinct colour for the index-th label class."""
    return _PALETTE[index % len(_PALETTE)]
