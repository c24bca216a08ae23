"""The engine protocol: the types the core, the engines and the run pipeline share.

They live in the core so that the core never imports an engine (import-linter holds that in CI);
`anomaly_gui.engines.base` re-exports them next to the `Engine` base class and the registry.

Results are typed: an engine returns one `ScoreResult` per item (image score + raw map, boxes, frame scores,
an embedding), and a sequence engine one `ClipScores` per clip. Engines return raw values only and never
decide: thresholds are chosen by the run pipeline from validation results, so a slider can re-decide from
the stored raw results without scoring again.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol, Sequence, runtime_checkable

import numpy as np

from anomaly_gui.core.formats.base import Annotation, DatasetItem

if TYPE_CHECKING:
    from anomaly_gui.core.video_io import Clip


class Task(str, Enum):
    IMAGE = "image"  # product images: image score + pixel map
    VIDEO = "video"  # frames in sequence: frame score + pixel map
    DETECTION = "detection"  # boxes with class and confidence
    EMBEDDING = "embedding"  # crops -> embeddings -> novelty score


#: item kinds an engine of each task works on
TASK_KINDS: dict[str, tuple[str, ...]] = {
    Task.IMAGE.value: ("image",),
    Task.VIDEO.value: ("frame", "video"),
    Task.DETECTION.value: ("image", "frame"),
    Task.EMBEDDING.value: ("image", "frame"),
}


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


#: `extra` keys that older engine code used for what are now typed fields (copied on construction)
_LEGACY_EXTRA = {"image_size": "image_size", "error": "error", "frame_scores": "frame_scores",
                 "species": "species", "box": "crop_box"}


@dataclass
class ScoreResult:
    """Raw output of an engine for one item. Higher scores are more anomalous.

    Which fields are set depends on the task: image (score + map), video (score + map of a frame; a whole
    video item also `frame_scores`), detection (`boxes`), embedding (`embedding`, `species`, `crop_box`).
    `extra` holds engine-specific diagnostics only; nothing outside the engine relies on its keys.
    """

    score: float | None = None
    map: np.ndarray | None = None  # raw anomaly map (h, w) float32 at model resolution, never normalised
    boxes: list[Annotation] | None = None  # detections (kind box, score = confidence)
    embedding: np.ndarray | None = None
    image_size: tuple[int, int] | None = None  # (width, height) of the image the map belongs to
    frame_scores: list[float] | None = None  # a video item: the score of every frame
    species: str | None = None  # an embedding result: the class of the nearest known crop
    crop_box: list[float] | None = None  # an embedding result: the crop the embedding was taken from
    error: str | None = None  # why the item could not be scored (score and map are then None)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # engines written against the untyped protocol put these in `extra`: copy them into the typed
        # fields (the keys stay, so readers not yet moved to the fields keep working this release)
        for key, name in _LEGACY_EXTRA.items():
            value = self.extra.get(key)
            if value is None or getattr(self, name) is not None:
                continue
            if name == "error" and not isinstance(value, str):
                continue  # a numeric reconstruction error, not a failure
            if name == "image_size":
                value = (int(value[0]), int(value[1]))
            setattr(self, name, value)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class ClipScores:
    """Raw scores of one clip from a sequence engine: frame errors, frame scores and pixel maps."""

    name: str
    errors: np.ndarray  # (T,) raw frame error e(t)
    scores: np.ndarray  # (T,) anomaly score (the engine's definition, e.g. 1 - regularity), higher = worse
    maps: np.ndarray  # (T, h, w) float32 raw pixel maps at model resolution
    #: the engine's own cut-off for `scores` learnt from normal training clips (None when it has none);
    #: a run's threshold chosen on validation data overrides it
    default_threshold: float | None = None
    #: the engine's cut-off for map pixels learnt from normal training frames (None when it has none)
    pixel_threshold: float | None = None


@runtime_checkable
class EngineProtocol(Protocol):
    """What the run pipeline needs from an engine (`engines.base.Engine` implements it)."""

    name: ClassVar[str]
    task: ClassVar[Task]
    needs: ClassVar[frozenset[str]]
    params: Any
    stats: dict[str, Any]

    def fit(self, items: Sequence[DatasetItem], ctx: RunContext | None = None) -> None: ...

    def score(self, items: Sequence[DatasetItem], ctx: RunContext | None = None) -> list[ScoreResult]: ...

    def save(self, path: str | Path) -> Path: ...


@runtime_checkable
class SequenceEngine(EngineProtocol, Protocol):
    """An engine of frames in sequence (video) also scores a whole clip at once."""

    def score_clip(self, clip: "Clip", ctx: RunContext | None = None) -> ClipScores: ...


def param(default: Any, help: str = "", **ui: Any) -> Any:
    """A dataclass field for engine parameters with what the GUI form needs.

    ui keys: minimum, maximum, step, choices (list), editable (bool: choices or the user's own text), label,
    advanced (bool).
    """
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **ui})
    return field(default=default, metadata={"help": help, **ui})


def params_to_dict(params: Any) -> dict[str, Any]:
    return dataclasses.asdict(params) if dataclasses.is_dataclass(params) else dict(params)


def params_from_dict(params_cls: type, values: dict[str, Any]) -> Any:
    """Build a Params dataclass, ignoring unknown keys (files from older/newer versions)."""
    names = {f.name for f in dataclasses.fields(params_cls)}
    return params_cls(**{k: v for k, v in values.items() if k in names})


def param_fields(params_cls: type) -> list[dataclasses.Field]:
    """Fields of a Params dataclass, for forms and `--param` parsing."""
    return list(dataclasses.fields(params_cls))


class Stopwatch:
    """Measures seconds, for fit_seconds and items_per_second."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.t0
