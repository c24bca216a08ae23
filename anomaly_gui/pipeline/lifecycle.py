"""One run lifecycle for every task: create -> fit (progress, cancel) -> score validation and test ->
store raw results -> choose the threshold -> evaluate -> finish.

Qt-free; the GUI runs `train_run` in a worker (`gui.workers.start_job`), the CLI and tests call it directly.
What differs per task comes from its policy (`pipeline.policies`); there is no `if task == ...` here.

A run's status: `created` -> `running` (fit) -> `scoring` -> `done`, or `failed` (with the reason in its
metrics) / `cancelled`. Reopening a run reads all of it back (scores, maps, boxes, embeddings, threshold,
min area, metrics) without recomputing anything.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Sequence

import numpy as np

from anomaly_gui.core.errors import AnomalyGuiError
from anomaly_gui.core.formats.base import DatasetItem
from anomaly_gui.core.project import Project, Run
from anomaly_gui.core.protocol import Cancelled, ClipScores, RunContext, SequenceEngine, params_to_dict
from anomaly_gui.core.video_io import Clip
from anomaly_gui.core.run_files import model_path, write_split
from anomaly_gui.engines.base import Engine, get_engine
from anomaly_gui.pipeline.items import DEFAULT_VAL_FRACTION, TrainFilter, split_train_val
from anomaly_gui.pipeline.policies import ResultSink, policy_for

log = logging.getLogger(__name__)


class RunError(AnomalyGuiError):
    """A run cannot be started or continued (no training data, no model file ...)."""


def _logging_ctx(project: Project, run_id: int, ctx: RunContext) -> RunContext:
    """A context whose log entries also go into the run's log (and on to the caller's live curve)."""

    def _log(entry: dict[str, Any]) -> None:
        clean = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in entry.items()}
        clean.setdefault("time", time.time())
        project.append_run_log(run_id, clean)
        ctx.log(clean)

    return RunContext(progress=ctx.progress, is_cancelled=ctx.is_cancelled, log=_log)


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
    """Create a run, fit `engine_name` on the project's training items and save its model; then (with `score`)
    score the items its task's policy names, choose the threshold and compute the metrics. Returns the run id.

    The run records its status, its parameters and one log entry per epoch. Raises what the engine raised
    (`Cancelled` when cancelled) after recording it.
    """
    ctx = ctx or RunContext()
    engine_cls = get_engine(engine_name)
    policy = policy_for(engine_cls.task)
    engine = engine_cls(params=dict(params or {}), device=device)
    policy.prepare(project, ctx)
    train, val = split_train_val(project, engine_cls, train_filter, val_fraction if policy.holds_out_validation else 0.0)
    if not train:
        needs = "normal " if "normal_images" in engine_cls.needs else ""
        raise RunError(f"no {needs}training items: give some {engine_cls.task.value} items the split 'train' "
                       f"(the project has {project.count_items()} item(s))")
    run = project.create_run(engine_name, engine_cls.task.value, params_to_dict(engine.params), name=name)
    rdir = project.run_dir(run.id)
    write_split(project, run.id, [int(it.id) for it in train], [int(it.id) for it in val])  # type: ignore[arg-type]
    project.update_run(run.id, status="running", model_dir=str(rdir),
                       metrics={"n_train": len(train), "n_val": len(val), "device": str(engine.device)})
    try:
        t0 = time.perf_counter()
        fit_items = policy.fit_items(train, val)
        ctx.progress(0, 1, f"Training {engine_name} on {len(fit_items)} item(s)")
        engine.fit(fit_items, _logging_ctx(project, run.id, ctx))
        ctx.check()
        engine.save(model_path(project, run.id))
        merge_metrics(project, run.id, {"fit_seconds": round(time.perf_counter() - t0, 3), **policy.fit_metrics(engine)})
        if score:
            project.update_run(run.id, status="scoring")
            todo = policy.scoring_items(project, engine_cls, train, val)
            if not val and policy.holds_out_validation:  # nothing held out (a single training item): the
                seen = {it.id for it in todo}                 # threshold comes from it, never from test
                todo = [it for it in train if it.id not in seen] + todo
            score_run(project, run.id, todo, ctx, engine=engine)
            finalize_run(project, run.id)
        else:
            project.update_run(run.id, status="done", finished=time.time())
    except Cancelled:
        project.update_run(run.id, status="cancelled", finished=time.time())
        raise
    except BaseException as exc:
        merge_metrics(project, run.id, {"error": f"{type(exc).__name__}: {exc}"})
        project.update_run(run.id, status="failed", finished=time.time())
        raise
    return run.id


def load_run_engine(project: Project, run_id: int, device: str = "auto") -> Engine:
    """The fitted engine of a run, from its model file (never unpickled)."""
    path = model_path(project, run_id)
    if not path.is_file():
        raise RunError(f"{path}: run {run_id} has no model file (it failed or was cancelled before saving)")
    return Engine.load(path, device=device)


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
    if items and {"boxes", "classes", "species"} & set(engine.needs):  # crops come from the items' boxes
        by_id = {it.id: it for it in project.items(ids=[int(it.id) for it in items], with_annotations=True)}  # type: ignore[arg-type]
        items = [by_id.get(it.id, it) for it in items]
    total = len(items)
    sink = ResultSink(project, run_id, engine.name)
    done = 0
    t0 = time.perf_counter()
    for batch in policy_for(engine.task).batches(items, batch_size):
        ctx.check()
        results = engine.score(list(batch), ctx)
        if len(results) != len(batch):
            raise RunError(f"engine {engine.name} returned {len(results)} results for {len(batch)} items")
        sink.add(list(batch), results)
        done += len(batch)
        ctx.progress(done, total, f"Scoring {done}/{total}")
    sink.close()
    seconds = time.perf_counter() - t0
    if total:
        merge_metrics(project, run_id, {"n_scored": total, "items_per_second": round(total / max(seconds, 1e-9), 3)})
    return total


def score_clip(engine: SequenceEngine, clip: Clip, ctx: RunContext | None = None) -> ClipScores:
    """Raw scores of one clip with a loaded sequence engine (the video player's "Score clip")."""
    if not isinstance(engine, SequenceEngine):
        raise RunError(f"{getattr(engine, 'name', engine)}: not a sequence (video) engine; it cannot score a clip")
    return engine.score_clip(clip, ctx or RunContext())


def store_clip_run(project: Project, engine: SequenceEngine, clip: Clip, cs: ClipScores,
                   params: dict[str, Any] | None = None) -> int:
    """Keep a clip scored with a loaded model as a finished run of task video (scores, raw maps, the engine's
    default threshold), so it survives a restart and shows wherever video runs are listed. Returns its id."""
    item_ids = [int(it.id) for it in clip.items if it.id is not None]
    if not clip.per_frame_items or len(item_ids) != len(cs.scores):
        raise RunError(f"{clip.name}: only clips of project frames can be stored as a run")
    run = project.create_run(engine.name, engine.task.value, {**params_to_dict(engine.params), **(params or {})},
                             name=f"{engine.name} on {clip.name}")
    project.save_scores(run.id, item_ids, [float(s) for s in cs.scores], list(cs.maps),
                        [{"frame_error": float(e)} for e in cs.errors])
    project.update_run(run.id, status="done", finished=time.time(), threshold=cs.default_threshold)
    return run.id


def merge_metrics(project: Project, run_id: int, values: dict[str, Any]) -> None:
    run = project.run(run_id)
    project.update_run(run_id, metrics={**run.metrics, **values})


def finalize_run(project: Project, run_id: int, min_area: float | None = None) -> Run:
    """Choose the threshold (the task's policy), compute the metrics, mark the run done."""
    run = project.run(run_id)
    policy = policy_for(run.task)
    area = float(run.min_area if min_area is None else min_area)
    threshold, how, source = policy.calibrate(project, run_id, area)
    project.update_run(run_id, threshold=threshold, min_area=area)
    metrics = policy.evaluate(project, run_id, threshold, area)
    merge_metrics(project, run_id, {**metrics, "threshold_method": how, "threshold_source": source})
    for warning in policy.warnings(metrics, source):
        project.append_run_log(run_id, {"warning": warning, "time": time.time()})
    project.update_run(run_id, status="done", finished=time.time())
    return project.run(run_id)


def rename_run(project: Project, run_id: int, name: str) -> None:
    project.update_run(run_id, name=name.strip())


#: the task's headline figure first (mAP, frame AUC, novelty AUROC), then the image-level ones
SUMMARY_KEYS = ("map50", "frame_auc", "novelty_auroc", "image_auroc", "pixel_auroc", "aupro", "f1_max")


def run_summary(run: Run) -> dict[str, Any]:
    """Key figures for lists and reports (missing ones are absent)."""
    out: dict[str, Any] = {k: run.metrics[k] for k in SUMMARY_KEYS if run.metrics.get(k) is not None}
    if run.threshold is not None:
        out["threshold"] = run.threshold
    return out
