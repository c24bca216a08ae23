"""Which items a run works on: the items of its task, those it learns from, and its validation hold-out."""
from __future__ import annotations

from typing import Callable, Iterable

from anomaly_gui.core.formats.base import DatasetItem
from anomaly_gui.core.project import Project
from anomaly_gui.core.protocol import TASK_KINDS, EngineProtocol, Task

DEFAULT_VAL_FRACTION = 0.2
MIN_HOLDOUT_TRAIN = 2  # below this many training items no validation items are held out

TrainFilter = Callable[[DatasetItem], bool] | Iterable[int] | None


def _apply_filter(items: list[DatasetItem], train_filter: TrainFilter) -> list[DatasetItem]:
    if train_filter is None:
        return items
    if callable(train_filter):
        return [it for it in items if train_filter(it)]
    keep = {int(i) for i in train_filter}
    return [it for it in items if it.id in keep]


def task_items(project: Project, task: Task | str) -> list[DatasetItem]:
    """The project's items an engine of `task` works on (frames sorted by clip and index)."""
    kinds = TASK_KINDS.get(Task(task).value, ("image",))
    items = [it for it in project.items() if it.kind in kinds]
    if Task(task) == Task.VIDEO:
        items.sort(key=lambda it: (it.group, it.frame_index or 0, it.id or 0))
    return items


def _is_normal(it: DatasetItem) -> bool:
    return it.is_anomalous is not True


def training_items(project: Project, engine_cls: type[EngineProtocol], train_filter: TrainFilter = None) -> list[DatasetItem]:
    """Items of split train the engine learns from: only normal ones when it `needs` normal images."""
    items = [it for it in task_items(project, engine_cls.task) if it.split == "train"]
    if "normal_images" in engine_cls.needs:
        items = [it for it in items if _is_normal(it)]
    if {"boxes", "classes", "species"} & set(engine_cls.needs):
        items = project.items(ids=[int(it.id) for it in items if it.id is not None], with_annotations=True)
    return _apply_filter(items, train_filter)


def split_train_val(
    project: Project, engine_cls: type[EngineProtocol], train_filter: TrainFilter = None,
    val_fraction: float = DEFAULT_VAL_FRACTION, seed: int = 0,
) -> tuple[list[DatasetItem], list[DatasetItem]]:
    """(training items, validation items) by `core.splits.train_val_split`: the project's split `val` when
    it has one, else a seeded part of the training items held out by group (clip, sequence, scene); one
    clip is cut in time. With a single training item there is nothing to hold out (see `train_run`)."""
    from anomaly_gui.core.splits import train_val_split

    train = training_items(project, engine_cls, train_filter)
    val = [it for it in task_items(project, engine_cls.task) if it.split == "val"]
    if val and {"boxes", "classes", "species"} & set(engine_cls.needs):  # a detector validates on the boxes: load them
        val = project.items(ids=[int(it.id) for it in val if it.id is not None], with_annotations=True)
    if val:
        return train, val
    return train_val_split(train, val_fraction if len(train) >= MIN_HOLDOUT_TRAIN else 0.0, seed)
