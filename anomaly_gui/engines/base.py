"""The protocol every engine follows, and the registry that finds engines by name.

An engine package lives in `anomaly_gui/engines/<package>/` and registers its class(es) with
`@register_engine` in its `__init__.py`; packages are discovered automatically (no list to edit).
The protocol types (Task, RunContext, ScoreResult, ClipScores, ...) live in `anomaly_gui.core.protocol`
so that the core never imports an engine; they are re-exported here.
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Sequence

from anomaly_gui.core.formats.base import DatasetItem
from anomaly_gui.core.protocol import (  # noqa: F401  (re-exported: engines import them from here)
    TASK_KINDS,
    Cancelled,
    ClipScores,
    EngineProtocol,
    RunContext,
    ScoreResult,
    SequenceEngine,
    Stopwatch,
    Task,
    param,
    param_fields,
    params_from_dict,
    params_to_dict,
)


class Engine(ABC):
    """Base class. Subclasses set `name`, `task`, `Params` (a dataclass built with `param`) and `needs`."""

    name: ClassVar[str]
    task: ClassVar[Task]
    Params: ClassVar[type]
    title: ClassVar[str] = ""  # human name for the GUI
    description: ClassVar[str] = ""
    #: position among the engines of its task (lower first); the GUI offers the first usable one by default,
    #: so rank 0 goes to the best measured accuracy at a reasonable CPU time (the description says why)
    rank: ClassVar[int] = 100
    #: values of parameters added after a model file was written, where the file's behaviour differs from
    #: today's default (a model file is read with these first, then the parameters it stored)
    params_before_they_existed: ClassVar[dict[str, Any]] = {}
    #: what the engine needs: normal_images, labels (anomalous/normal), boxes, frames (in sequence), classes,
    #: species (a label per item or per box)
    needs: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, params: Any | None = None, device: str = "auto", **overrides: Any):
        from anomaly_gui.engines.device import resolve_device

        if params is None:
            params = self.Params(**overrides)
        elif isinstance(params, dict):
            params = self.Params(**{**params, **overrides})
        elif overrides:
            params = dataclasses.replace(params, **overrides)
        self.params = params
        self.device = resolve_device(device)
        self.fitted = False
        self.stats: dict[str, Any] = {}  # statistics learnt in fit (normalisation, threshold hints, timings)

    # -- the protocol --------------------------------------------------------------------
    @abstractmethod
    def fit(self, items: Sequence[DatasetItem], ctx: RunContext | None = None) -> None:
        """Learn from `items` (normal training items, or labelled items for detectors)."""

    @abstractmethod
    def score(self, items: Sequence[DatasetItem], ctx: RunContext | None = None) -> list[ScoreResult]:
        """Score items (one result per item, in order)."""

    @abstractmethod
    def state_tensors(self) -> dict[str, Any]:
        """Tensors to persist (name -> torch.Tensor or numpy array)."""

    @abstractmethod
    def load_state_tensors(self, tensors: dict[str, Any]) -> None:
        """Restore from what `state_tensors` returned (meta and params are already set)."""

    # -- persistence: one safetensors file, metadata as JSON; never pickle -------------------
    def save(self, path: str | Path) -> Path:
        from anomaly_gui.engines.modelfile import write_model_file

        meta = {"engine": self.name, "task": self.task.value, "params": params_to_dict(self.params), "stats": self.stats}
        return write_model_file(Path(path), self.state_tensors(), meta)

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> "Engine":
        """Load any engine's model file (dispatches on the engine named inside)."""
        from anomaly_gui.engines.modelfile import read_model_file

        tensors, meta = read_model_file(Path(path))
        engine_cls = get_engine(meta["engine"])
        values = {**engine_cls.params_before_they_existed, **meta.get("params", {})}
        eng = engine_cls(params=params_from_dict(engine_cls.Params, values), device=device)
        eng.stats = dict(meta.get("stats", {}))
        eng.load_state_tensors(tensors)
        eng.fitted = True
        return eng

    def describe(self) -> dict[str, Any]:
        return {"engine": self.name, "task": self.task.value, "device": str(self.device), "params": params_to_dict(self.params)}


# -- registry ----------------------------------------------------------------------------------
_ENGINES: dict[str, type[Engine]] = {}
_discovered = False


def register_engine(cls: type[Engine]) -> type[Engine]:
    """Class decorator that makes an engine available by its `name`."""
    if not getattr(cls, "name", None):
        raise TypeError(f"{cls.__name__} has no name")
    _ENGINES[cls.name] = cls
    return cls


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    import anomaly_gui.engines as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if info.ispkg:
            importlib.import_module(f"anomaly_gui.engines.{info.name}")


def get_engine(name: str) -> type[Engine]:
    _discover()
    if name not in _ENGINES:
        raise KeyError(f"unknown engine {name!r}; known: {', '.join(sorted(_ENGINES)) or 'none'}")
    return _ENGINES[name]


def list_engines(task: Task | str | None = None) -> list[type[Engine]]:
    _discover()
    out = list(_ENGINES.values())
    if task is not None:
        out = [e for e in out if e.task == Task(task)]
    return sorted(out, key=lambda e: (e.task.value, e.rank, e.name))


__all__ = [
    "TASK_KINDS", "Cancelled", "ClipScores", "Engine", "EngineProtocol", "RunContext", "ScoreResult", "SequenceEngine",
    "Stopwatch", "Task", "get_engine", "list_engines", "param", "param_fields", "params_from_dict", "params_to_dict",
    "register_engine",
]
