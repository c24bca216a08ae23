"""A batch job from INPUT to Parquet: plan the units, skip what is written, score in process or on Ray.

Both paths run `UnitScorer` on batches of units; in process it is one scorer in this process (one worker),
on Ray a `map_batches` actor pool of `workers` scorers (`batch.on_ray`).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable

from anomaly_gui.batch import shards
from anomaly_gui.batch.progress import Progress
from anomaly_gui.batch.scenes import merge_scenes, tiling_of, units_for_image
from anomaly_gui.batch.scoring import JobConfig, UnitScorer
from anomaly_gui.batch.shards import BatchError
from anomaly_gui.batch.units import MANIFEST_SUFFIXES, Unit, dedupe, image_unit, read_manifest
from anomaly_gui.core.errors import DataError
from anomaly_gui.core.jsonsafe import json_serialisable_items
from anomaly_gui.engines.base import Engine, Task, params_to_dict
from anomaly_gui.engines.deploy import load_for_scoring

log = logging.getLogger(__name__)

MAPS_AUTO_LIMIT = 5000  # with maps "auto", jobs of more units than this write no maps
DEFAULT_FRAMES_PER_UNIT = 256


def plan_units(source: str | Path, engine: Engine, frames_per_unit: int = DEFAULT_FRAMES_PER_UNIT) -> list[Unit]:
    """The units INPUT expands to for this engine (DataError naming INPUT when there is nothing to score)."""
    from anomaly_gui.core.imageio import IMAGE_SUFFIXES
    from anomaly_gui.core.video_io import VIDEO_SUFFIXES
    from anomaly_gui.core.formats.common import input_images

    path = Path(source)
    if not path.exists():
        raise DataError(path, "input not found")
    if Task(engine.task) == Task.VIDEO:
        from anomaly_gui.batch.video import clip_units

        if path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
            clips = read_manifest(path)
        elif path.is_file() or any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir() if p.is_file()):
            clips = [str(path)]  # one video file or one folder of frames
        else:  # a folder of videos and/or frame folders
            clips = [str(p) for p in sorted(path.iterdir())
                     if p.is_dir() or p.suffix.lower() in VIDEO_SUFFIXES]
        if not clips:
            raise DataError(path, "no video file or frame folder to score")
        units: list[Unit] = []
        for c in clips:
            units += clip_units(c, engine, frames_per_unit)
        return dedupe(units)
    if path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
        paths = read_manifest(path)
    elif path.is_file():
        paths = [str(path)]
    else:
        paths = [str(p) for p in input_images(path)]
    tiling = tiling_of(engine)
    units = []
    for p in paths:
        tiles = units_for_image(p, tiling)
        units += tiles if tiles else [image_unit(p)]
    return dedupe(units)


def decision(engine: Engine, threshold: float | None, min_area: float | None) -> tuple[float, float]:
    """(threshold, min area): the options, else what the model file carries."""
    t = threshold if threshold is not None else engine.stats.get("threshold")
    if t is None:
        raise BatchError("the model file carries no threshold: pass --threshold (e.g. the run's threshold shown "
                         "in the app)")
    a = min_area if min_area is not None else engine.stats.get("min_area", 0.0)
    return float(t), float(a or 0.0)


def score_batch(
    source: str | Path,
    model: str | Path,
    out_dir: str | Path,
    threshold: float | None = None,
    min_area: float | None = None,
    ray: str | None = None,
    workers: int = 1,
    gpus_per_worker: float = 0.0,
    batch_size: int = 8,
    save_maps: bool | None = None,
    device: str = "auto",
    frames_per_unit: int = DEFAULT_FRAMES_PER_UNIT,
    report: Callable[[Progress], None] | None = None,
    on_summary: Callable[[dict[str, Any]], None] | None = None,
    torch_threads: int = 0,
) -> dict[str, Any]:
    """Score INPUT with MODEL into OUT_DIR; returns the summary (items, anomalies, errors, images/s ...).

    `ray`: None runs in this process; "auto", "local" or a cluster address runs on Ray. `save_maps` None:
    maps for jobs up to `MAPS_AUTO_LIMIT` units. `on_summary` sees each batch's summary (tests, GUI).
    """
    shards.require_pyarrow()
    source = Path(source).absolute()  # workers (other processes, other nodes) read by absolute path
    if not source.exists():
        raise DataError(source, "input not found")
    model = Path(model).resolve()
    out = Path(out_dir).resolve()
    # in process the planner is the engine that scores; for Ray it only plans (workers load their own)
    planner = load_for_scoring(model, device=device if ray is None else "cpu")  # also exported .onnx / .xml
    thr, area = decision(planner, threshold, min_area)
    units = plan_units(source, planner, frames_per_unit)
    if save_maps is None:
        save_maps = len(units) <= MAPS_AUTO_LIMIT
    job = {"model": str(model), "model_sha1": shards.file_sha1(model), "engine": planner.name,
           "task": Task(planner.task).value, "params": params_to_dict(planner.params), "threshold": thr,
           "min_area": area, "input": str(source), "save_maps": bool(save_maps),
           "tiling": tiling_of(planner), "stats": json_serialisable_items(planner.stats)}
    shards.check_job_file(out, job)
    done = shards.done_units(out)
    todo = [u for u in units if (u["key"], u["fingerprint"]) not in done]
    progress = Progress(total=len(todo), skipped=len(units) - len(todo), report=report)
    config = JobConfig(model_path=str(model), out_dir=str(out), threshold=thr, min_area=area, device=device,
                       save_maps=bool(save_maps), torch_threads=torch_threads).to_dict()

    def seen(summary: dict[str, Any]) -> None:
        progress.update(summary)
        if on_summary is not None:
            on_summary(summary)

    t0 = time.perf_counter()
    if todo:
        if ray is None:
            scorer = UnitScorer.with_engine(config, planner)
            for i in range(0, len(todo), max(1, batch_size)):
                seen(scorer(todo[i:i + batch_size]))
        else:
            from anomaly_gui.batch.on_ray import run_on_ray

            run_on_ray(todo, config, ray, workers, gpus_per_worker, batch_size, seen)
    n_scenes = merge_scenes(out, thr) if any(u["kind"] == "tile" for u in units) else 0
    seconds = time.perf_counter() - t0
    results = shards.latest_results(out)
    errors = shards.read_rows(out, shards.ERRORS, ["unit", "path", "error"])
    summary = {
        "out_dir": str(out), "units": len(units), "scored_now": progress.done, "skipped": progress.skipped,
        "results": len(results), "anomalies": sum(bool(r["verdict"]) for r in results), "errors": len(errors),
        "scenes_merged": n_scenes, "seconds": round(seconds, 3),
        # items: images, frames or tiles scored now (a unit of video holds many frames)
        "items_per_second": round((progress.rows + progress.errors) / seconds, 3) if seconds > 0 else 0.0,
        "units_per_second": round(progress.done / seconds, 3) if seconds > 0 else 0.0,
        "threshold": thr, "min_area": area, "engine": planner.name, "ray": ray, "workers": workers if ray else 1,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary

