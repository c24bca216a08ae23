"""Evaluators behind `anomaly-gui evaluate`, one per engine task, registered with `@register_evaluator`.

An evaluator is `fn(dataset: Path, engine: str, test: Path | None, device: str, params: dict,
save_model: Path | None, allow_overlap: bool = False) -> dict` returning the snake_case keys of the CLI
contract (image_auroc, pixel_auroc, aupro, f1_max, threshold, frame_auc, map50, map50_95, novelty_auroc,
fit_seconds, items_per_second, n_train, n_test, engine, device), plus in every one `threshold_source`
(how the threshold was chosen, never on test labels), `n_overlap` (test files byte-identical to training
files: refused unless `allow_overlap`) and `warnings` (each item or count left out of a metric, by name).
Modules of this package are imported on first use (no list to edit).
"""
from __future__ import annotations

import importlib
import logging
import pkgutil
import time
from typing import Any, Callable

from anomaly_gui.engines.base import RunContext, Task

Evaluator = Callable[..., dict[str, Any]]
_EVALUATORS: dict[Task, Evaluator] = {}


def register_evaluator(task: Task | str) -> Callable[[Evaluator], Evaluator]:
    def deco(fn: Evaluator) -> Evaluator:
        _EVALUATORS[Task(task)] = fn
        return fn

    return deco


def get_evaluator(task: Task | str) -> Evaluator:
    import anomaly_gui.evaluation as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"anomaly_gui.evaluation.{info.name}")
    task = Task(task)
    if task not in _EVALUATORS:
        raise KeyError(f"no evaluator for {task.value} engines yet")
    return _EVALUATORS[task]


def logging_context(logger: logging.Logger, prefix: str, every_s: float = 5.0) -> RunContext:
    """A RunContext whose progress (at most every `every_s` seconds, and at the end) and log entries go
    to `logger` at INFO, prefixed."""
    last = [0.0]

    def progress(done: int, total: int, msg: str) -> None:
        now = time.perf_counter()
        if now - last[0] > every_s or done >= total:
            last[0] = now
            logger.info("%s %d/%d %s", prefix, done, total, msg)

    return RunContext(progress=progress, log=lambda e: logger.info("%s %s", prefix, e))
