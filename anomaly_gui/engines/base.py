"""The protocol every engine follows, and the registry that finds engines by name.

An engine package lives in `anomaly_gui/engines/<package>/` and registers its class(es) with
`@register_engine` in its `__init__.py`; packages are discovered automatically (no list to edit).
"""
from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from anomaly_gui.core.formats.base import Annotation, DatasetItem


class Task(str, Enum):
    IMAGE = "image"  # product images: image score + pixel map
    VIDEO = "video"  # frames in sequence: frame score + pixel map
    DETECTION = "detection"  # boxes with class and confidence
    EMBEDDING = "embedding"  # crops -> embeddings -> novelty score


class Cancelled(Exception):
    """Raised inside fit/score when the user pressed Cancel."""


@dataclass
class RunContext:
    """What a long job gets from its caller: progress, a cancel flag and a log for live curves."""

    progress: Callable[[int, int, str], None] = lambda done, total, msg: None
    is_cancelled: Callable[[], bool] = lambda: False
    log: Callable[[dict[str, Any]], None] = lambda entry: None

    def check(self) -> None:
        """Call between batches: raises Cancelled when the user asked to stop."""
        if self.is_cancelled():
            raise Cancelled()


@dataclass
class ScoreResult:
    """Output of an engine for one item. Higher scores are more anomalous."""

    score: float | None = None
    map: np.ndarray | None = None  # raw anomaly map (h, w) float32 at model resolution, never normalised
    boxes: list[Annotation] | None = None  # detections (kind box, score = confidence)
    embedding: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def param(default: Any, help: str = "", **ui: Any) -> Any:
    """A dataclass field for engine parameters with what the GUI form needs.

    ui keys: minimum, maximum, step, choices (list), label, advanced (bool).
    """
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **ui})
    return field(default=default, metadata={"help": help, **ui})


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
    #: what the engine needs: normal_images, labels (anomalous/normal), boxes, frames (in sequence), classes
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
        eng = engine_cls(params=params_from_dict(engine_cls.Params, meta.get("params", {})), device=device)
        eng.stats = dict(meta.get("stats", {}))
        eng.load_state_tensors(tensors)
        eng.fitted = True
        return eng

    def describe(self) -> dict[str, Any]:
        return {"engine": self.name, "task": self.task.value, "device": str(self.device), "params": params_to_dict(self.params)}


def params_to_dict(params: Any) -> dict[str, Any]:
    return dataclasses.asdict(params) if dataclasses.is_dataclass(params) else dict(params)


def params_from_dict(params_cls: type, values: dict[str, Any]) -> Any:
    """Build a Params dataclass, ignoring unknown keys (files from older/newer versions)."""
    names = {f.name for f in dataclasses.fields(params_cls)}
    return params_cls(**{k: v for k, v in values.items() if k in names})


def param_fields(params_cls: type) -> list[dataclasses.Field]:
    """Fields of a Params dataclass, for forms and `--param` parsing."""
    return list(dataclasses.fields(params_cls))


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


class Stopwatch:
    """Measures seconds, for fit_seconds and items_per_second."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.t0
