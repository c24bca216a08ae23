"""The application state shared by all panels: the open project, the current item and run, display settings.

Panels never talk to each other directly: they read and set state here and listen to its signals.
"""
from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Signal

from anomaly_gui.core.project import Project


class AppState(QObject):
    projectChanged = Signal(object)  # Project | None
    itemsChanged = Signal()  # items added/removed/re-split
    currentItemChanged = Signal(object)  # item id | None
    selectionChanged = Signal(list)  # selected item ids (browser multi-selection / plot lasso)
    filterChanged = Signal(object)  # set[int] | None: items to show in the browser (None = all)
    currentRunChanged = Signal(object)  # run id | None
    runsChanged = Signal()
    annotationsChanged = Signal(int)  # item id
    verdictsChanged = Signal()
    scoresChanged = Signal(int)  # run id
    displayChanged = Signal()  # threshold, min area, overlay toggles, opacity
    predictionsChanged = Signal()  # `predictions` (the current run's verdicts at the current threshold / min area)
    zonesChanged = Signal()
    message = Signal(str)  # status bar text

    def __init__(self) -> None:
        super().__init__()
        self.project: Project | None = None
        self.current_item: int | None = None
        self.current_run: int | None = None
        self.selection: list[int] = []
        self.filter: set[int] | None = None
        # display settings shared by viewer, review panel and browser
        self.threshold: float | None = None
        self.min_area: float = 0.0
        self.show_heatmap = True
        self.show_contours = True
        self.show_boxes = True
        self.heatmap_opacity = 0.5
        self.extra: dict[str, Any] = {}
        #: item id -> anomalous? by the current run at the current threshold / min area (the review panel
        #: keeps it in step with the sliders; the analyst's own verdicts stay in the project)
        self.predictions: dict[int, bool] = {}

    def set_project(self, project: Project | None) -> None:
        if self.project is not None and self.project is not project:
            self.project.close()
        self.project = project
        self.current_item = None
        self.current_run = None
        self.selection = []
        self.filter = None
        if project is not None:
            project.add_listener(self._on_project_write)
        self.projectChanged.emit(project)

    def _on_project_write(self, topic: str) -> None:
        # Called from whatever thread wrote; Qt queues signals across threads automatically.
        if topic == "items":
            self.itemsChanged.emit()
        elif topic == "runs":
            self.runsChanged.emit()
        elif topic == "verdicts":
            self.verdictsChanged.emit()
        elif topic == "zones":
            self.zonesChanged.emit()

    def set_current_item(self, item_id: int | None) -> None:
        if item_id != self.current_item:
            self.current_item = item_id
            self.currentItemChanged.emit(item_id)

    def set_current_run(self, run_id: int | None) -> None:
        if run_id != self.current_run:
            self.current_run = run_id
            self.currentRunChanged.emit(run_id)

    def set_selection(self, ids: list[int]) -> None:
        self.selection = list(ids)
        self.selectionChanged.emit(self.selection)

    def set_filter(self, ids: set[int] | None) -> None:
        self.filter = None if ids is None else set(ids)
        self.filterChanged.emit(self.filter)

    def set_predictions(self, predictions: dict[int, bool]) -> None:
        self.predictions = dict(predictions)
        self.predictionsChanged.emit()

    def set_display(self, **kw: Any) -> None:
        """threshold, min_area, show_heatmap, show_contours, show_boxes, heatmap_opacity."""
        changed = False
        for k, v in kw.items():
            if not hasattr(self, k):
                raise AttributeError(k)
            if getattr(self, k) != v:
                setattr(self, k, v)
                changed = True
        if changed:
            self.displayChanged.emit()
