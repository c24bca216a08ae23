"""Runs: train an engine on a project's items, score items into the run's cache, pick a threshold, measure.

Qt-free and generic over engine tasks (image, video, detection, embedding): everything an engine returns in
its `ScoreResult`s is stored where the app looks for it:

- image score + raw map -> `project.save_scores` (float16 `.npy` per item under the run's cache folder);
- boxes -> model annotations of the item tagged with the run id (replaced when re-scored);
- embeddings -> `embeddings.npy` + `embedding_ids.npy` in the run folder;
- `extra` -> the score row's JSON (plus the image size the map belongs to).

A run's life: `created` -> `running` (fit) -> `scoring` -> `done`, or `failed` / `cancelled`. Reopening a run
reads all of it back (scores, maps, threshold, min area, metrics) without recomputing anything.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from anomaly_gui.core.errors import AnomalyGuiError, DataError
from anomaly_gui.core.formats.base import DatasetItem
from anomaly_gui.core.project import Project, Run, iter_chunks
from anomaly_gui.engines.base import Cancelled, Engine, RunContext, ScoreResult, Task, get_engine, params_to_dict

log = logging.getLogger(__name__)

MODEL_FILE = "model.agm"
SPLIT_FILE = "split.json"
EMBEDDINGS_FILE = "embeddings.npy"
EMBEDDING_IDS_FILE = "embedding_ids.npy"
DEFAULT_VAL_FRACTION = 0.2
MIN_HOLDOUT_TRAIN = 2  # below this many training items no validation items are held out

TrainFilter = Callable[[DatasetItem], bool] | Iterable[int] | None

#: item kinds an engine task works on
TASK_KINDS: dict[str, tuple[str, ...]] = {
    Task.IMAGE.value: ("image",),
    Task.VIDEO.value: ("frame", "video"),
    Task.DETECTION.value: ("image", "frame"),
    Task.EMBEDDING.value: ("image", "frame"),
}


class RunError(AnomalyGuiError):
    """A run cannot be started or continued (no training data, no model file ...)."""


# -- which items -------------------------------------------------------------------------------
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


def training_items(project: Project, engine_cls: type[Engine], train_filter: TrainFilter = None) -> list[DatasetItem]:
    """Items of split train the engine learns from: only normal ones when it `needs` normal images."""
    items = [it for it in task_items(project, engine_cls.task) if it.split == "train"]
    if "normal_images" in engine_cls.needs:
        items = [it for it in items if _is_normal(it)]
    if {"boxes", "classes"} & set(engine_cls.needs):
        items = project.items(ids=[int(it.id) for it in items if it.id is not None], with_annotations=True)
    return _apply_filter(items, train_filter)


def split_train_val(
    project: Project, engine_cls: type[Engine], train_filter: TrainFilter = None,
    val_fraction: float = DEFAULT_VAL_FRACTION, seed: int = 0,
) -> tuple[list[DatasetItem], list[DatasetItem]]:
    """(training items, validation items) by `core.splits.train_val_split`: the project's split `val` when
    it has one, else a seeded part of the training items held out by group (clip, sequence, scene); one
    clip is cut in time. With a single training item there is nothing to hold out (see `finalize_run`)."""
    from anomaly_gui.core.splits import train_val_split

    train = training_items(project, engine_cls, train_filter)
    val = [it for it in task_items(project, engine_cls.task) if it.split == "val"]
    if val:
        return train, val
    return train_val_split(train, val_fraction if len(train) >= MIN_HOLDOUT_TRAIN else 0.0, seed)


def run_split(project: Project, run_id: int) -> dict[str, list[int]]:
    """{"train": [...], "val": [...]} item ids a run was fitted / validated on."""
    path = project.run_dir(run_id) / SPLIT_FILE
    if not path.is_file():
        return {"train": [], "val": []}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(path, f"damaged run split file ({exc})") from exc
    return {"train": [int(i) for i in data.get("train", [])], "val": [int(i) for i in data.get("val", [])]}


# -- training ---------------------------------------------------------------------------------
def _logging_ctx(project: Project, run_id: int, ctx: RunContext) -> RunContext:
    """A context whose log entries also go into the run's log (and on to the caller's live curve)."""

    def _log(entry: dict[str, Any]) -> None:
        clean = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in entry.items()}
        clean.setdefault("time", time.time())
        project.append_run_log(run_id, clean)
        ctx.log(clean)

    return RunContext(progress=ctx.progress, is_cancelled=ctx.is_cancelled, log=_log)


def model_path(project: Project, run_id: int) -> Path:
    return project.run_dir(run_id) / MODEL_FILE


def train_run(
    project: Project,
    engine_name: str,
    params: dict[str, Any] | None = None,
    device: str = "auto",
    ctx: RunContext | None = None,
    train_filter: TrainFilter = None,
    name: str = "",
    val_fraction: float = DEFAULT_VAL_FRACTION,
    score: bool = True,
) -> int:
    """Create a run, fit `engine_name` on the project's training items, save its model; then (with `score`)
    score the validation and test items, choose the threshold and compute the metrics. Returns the run id.

    The run records its status (running/scoring/done, failed with the reason, cancelled), its parameters and
    one log entry per epoch. Raises what the engine raised (`Cancelled` when cancelled) after recording it.
    """
    ctx = ctx or RunContext()
    engine_cls = get_engine(engine_name)
    engine = engine_cls(params=dict(params or {}), device=device)
    train, val = split_train_val(project, engine_cls, train_filter, val_fraction)
    if not train:
        needs = "normal " if "normal_images" in engine_cls.needs else ""
        raise RunError(f"no {needs}training items: give some {engine_cls.task.value} items the split 'train' "
                       f"(the project has {project.count_items()} item(s))")
    run = project.create_run(engine_name, engine_cls.task.value, params_to_dict(engine.params), name=name)
    rdir = project.run_dir(run.id)
    (rdir / SPLIT_FILE).write_text(json.dumps({"train": [it.id for it in train], "val": [it.id for it in val]}))
    project.update_run(run.id, status="running", model_dir=str(rdir),
                       metrics={"n_train": len(train), "n_val": len(val), "device": str(engine.device)})
    try:
        t0 = time.perf_counter()
        ctx.progress(0, 1, f"Training {engine_name} on {len(train)} item(s)")
        engine.fit(train, _logging_ctx(project, run.id, ctx))
        ctx.check()
        fit_seconds = time.perf_counter() - t0
        engine.save(model_path(project, run.id))
        _merge_metrics(project, run.id, {"fit_seconds": round(fit_seconds, 3)})
        if score:
            project.update_run(run.id, status="scoring")
            used = {it.id for it in train} | {it.id for it in val}
            # validation, then every item the model did not learn from (test, unsplit, and train-split
            # items it was not given, e.g. anomalies for a normal-only engine)
            todo = val + [it for it in task_items(project, engine_cls.task) if it.id not in used]
            if not val:  # nothing held out (a single training item): the threshold comes from it, never from test
                todo = train + todo
            score_run(project, run.id, todo, ctx, engine=engine)
            finalize_run(project, run.id)
        else:
            project.update_run(run.id, status="done", finished=time.time())
    except Cancelled:
        project.update_run(run.id, status="cancelled", finished=time.time())
        raise
    except BaseException as exc:
        _merge_metrics(project, run.id, {"error": f"{type(exc).__name__}: {exc}"})
        project.update_run(run.id, status="failed", finished=time.time())
        raise
    return run.id


def load_run_engine(project: Project, run_id: int, device: str = "auto") -> Engine:
    """The fitted engine of a run, from its model file (never unpickled)."""
    path = model_path(project, run_id)
    if not path.is_file():
        raise RunError(f"{path}: run {run_id} has no model file (it failed or was cancelled before saving)")
    return Engine.load(path, device=device)


# -- scoring ----------------------------------------------------------------------------------
def _image_size(project: Project, it: DatasetItem) -> tuple[int, int] | None:
    if it.width and it.height:
        return int(it.width), int(it.height)
    if it.kind != "image":
        return None
    from anomaly_gui.core.imageio import image_size

    try:
        w, h = image_size(it.path)
    except (DataError, OSError):
        return None
    if it.id is not None:
        project.set_item_size(int(it.id), int(w), int(h))
    return int(w), int(h)


def score_run(
    project: Project,
    run_id: int,
    items: Sequence[DatasetItem],
    ctx: RunContext | None = None,
    engine: Engine | None = None,
    batch_size: int = 8,
    device: str = "auto",
) -> int:
    """Score `items` with the run's engine in batches and store everything the results carry.

    Returns the number of items scored. The engine is loaded from the run's model file unless given.
    """
    ctx = ctx or RunContext()
    engine = engine or load_run_engine(project, run_id, device)
    items = [it for it in items if it.id is not None]
    total = len(items)
    emb_ids: list[int] = []
    embs: list[np.ndarray] = []
    done = 0
    t0 = time.perf_counter()
    for batch in score_batches(items, engine, batch_size):
        ctx.check()
        results = engine.score(list(batch), ctx)
        if len(results) != len(batch):
            raise RunError(f"engine {engine.name} returned {len(results)} results for {len(batch)} items")
        _store_batch(project, run_id, list(batch), results, emb_ids, embs)
        done += len(batch)
        ctx.progress(done, total, f"Scoring {done}/{total}")
    if embs:
        _store_embeddings(project, run_id, emb_ids, embs)
    seconds = time.perf_counter() - t0
    if total:
        _merge_metrics(project, run_id, {"n_scored": total, "items_per_second": round(total / max(seconds, 1e-9), 3)})
    return total


def score_batches(items: Sequence[DatasetItem], engine: Engine, batch_size: int) -> Iterator[Sequence[DatasetItem]]:
    """Batches to score: `batch_size` items, except for video, where a batch is a whole clip (a sequence
    engine needs every frame of a clip at once: its windows and its per-clip normalisation)."""
    if engine.task != Task.VIDEO:
        yield from iter_chunks(items, max(1, int(batch_size)))
        return
    clips: dict[str, list[DatasetItem]] = {}
    for it in items:
        clips.setdefault(it.group if it.kind == "frame" else f"\0{it.id}", []).append(it)
    yield from clips.values()


def _store_batch(project: Project, run_id: int, batch: list[DatasetItem], results: list[ScoreResult],
                 emb_ids: list[int], embs: list[np.ndarray]) -> None:
    ids, scores, maps, extras = [], [], [], []
    for it, res in zip(batch, results):
        item_id = int(it.id)  # type: ignore[arg-type]
        extra = dict(res.extra)
        size = _image_size(project, it)
        if size is not None:
            extra["image_size"] = list(size)
        score = res.score
        if score is None and res.map is not None:
            score = float(np.nanmax(res.map))
        ids.append(item_id)
        scores.append(score)
        maps.append(None if res.map is None else np.asarray(res.map, np.float32))
        extras.append(extra)
        if res.boxes is not None:
            for old in project.annotations(item_id, source="model", run_id=run_id):
                project.delete_annotation(int(old.id))  # type: ignore[arg-type]
            for box in res.boxes:
                box.source = "model"
            if res.boxes:
                project.add_annotations(item_id, res.boxes, run_id=run_id)
        if res.embedding is not None:
            emb_ids.append(item_id)
            embs.append(np.asarray(res.embedding, np.float32).ravel())
    project.save_scores(run_id, ids, scores, maps, extras)


def _store_embeddings(project: Project, run_id: int, ids: list[int], embs: list[np.ndarray]) -> None:
    rdir = project.run_dir(run_id)
    old_ids, old = load_embeddings(project, run_id)
    merged = {int(i): e for i, e in zip(old_ids, old)} if old is not None else {}
    merged.update({int(i): e for i, e in zip(ids, embs)})
    keys = sorted(merged)
    np.save(rdir / EMBEDDINGS_FILE, np.stack([merged[k] for k in keys]).astype(np.float32))
    np.save(rdir / EMBEDDING_IDS_FILE, np.asarray(keys, np.int64))


def load_embeddings(project: Project, run_id: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(item ids, embeddings (n, d)) stored by a run; (empty, None) when it has none."""
    rdir = project.run_dir(run_id)
    if not (rdir / EMBEDDINGS_FILE).is_file():
        return np.zeros(0, np.int64), None
    try:
        return np.load(rdir / EMBEDDING_IDS_FILE, allow_pickle=False), np.load(rdir / EMBEDDINGS_FILE, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(rdir / EMBEDDINGS_FILE, f"damaged embeddings cache ({exc})") from exc


# -- threshold and metrics ---------------------------------------------------------------------
def _merge_metrics(project: Project, run_id: int, values: dict[str, Any]) -> None:
    run = project.run(run_id)
    project.update_run(run_id, metrics={**run.metrics, **values})


def finalize_run(project: Project, run_id: int, min_area: float | None = None) -> Run:
    """Choose the threshold on the run's validation items, compute the metrics, mark the run done."""
    from anomaly_gui.core.run_metrics import choose_threshold_with_source, evaluate_run, metric_warnings

    run = project.run(run_id)
    area = float(run.min_area if min_area is None else min_area)
    threshold, how, source = choose_threshold_with_source(project, run_id, area)
    project.update_run(run_id, threshold=threshold, min_area=area)
    metrics = evaluate_run(project, run_id, threshold, area)
    _merge_metrics(project, run_id, {**metrics, "threshold_method": how, "threshold_source": source})
    for warning in metric_warnings(metrics, source):
        project.append_run_log(run_id, {"warning": warning, "time": time.time()})
    project.update_run(run_id, status="done", finished=time.time())
    return project.run(run_id)


def rename_run(project: Project, run_id: int, name: str) -> None:
    project.update_run(run_id, name=name.strip())


def run_summary(run: Run) -> dict[str, Any]:
    """Key figures for lists and reports (missing ones are absent)."""
    keys = ("image_auroc", "pixel_auroc", "aupro", "f1_max", "map50", "frame_auc", "novelty_auroc")
    out: dict[str, Any] = {k: run.metrics[k] for k in keys if run.metrics.get(k) is not None}
    if run.threshold is not None:
        out["threshold"] = run.threshold
    return out
