"""Bring a batch output folder back into a project as a run (File ▸ Import batch results…).

Images and scenes become (or are matched to) image items, frames of a frame folder frame items, a video file
one video item (its peak frame's score and map, every frame's score in `extra`, as the app stores it).
The run gets the job's engine, parameters, threshold and minimum area, a copy of the model file, the raw maps
the job saved (float16, as the app caches them) and the detections as model boxes: the review panel's sliders,
histogram and galleries then work on it like on a run trained in the app. Without saved maps the sliders
move over the image scores only (the job's own verdicts are kept in each score's `extra`).
"""
from __future__ import annotations

import json
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from anomaly_gui.batch import shards
from anomaly_gui.batch.scoring import box_annotations
from anomaly_gui.core.errors import DataError
from anomaly_gui.core.formats.base import DatasetItem
from anomaly_gui.core.project import Project

CHUNK = 500
RUN_MODEL_FILE = "model.agm"  # where a run keeps its model (the run lifecycle's MODEL_FILE; batch sits beside it)


@dataclass
class ImportedRun:
    run_id: int
    n_items: int
    n_new_items: int
    n_errors: int
    with_maps: bool
    problems: list[str] = field(default_factory=list)


def _norm(path: str) -> str:
    try:
        return str(Path(path).resolve())
    except OSError:
        return str(path)


def _video_rows(rows: list[dict[str, Any]], job: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Frame rows grouped by clip, in frame order, with the per-clip normalised score when the engine uses it."""
    clips: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["frame_index"] is not None:
            # a frame folder's frames are files of their own (key == path); a video file's frames are path#i
            clips[str(Path(r["path"]).parent) if r["key"] == r["path"] else r["path"]].append(r)
    normalise = bool(job.get("params", {}).get("normalise", False))
    for clip_rows in clips.values():
        clip_rows.sort(key=lambda r: r["frame_index"])
        if normalise and clip_rows:
            from anomaly_gui.core.metrics.video import per_clip_minmax

            scores = per_clip_minmax(np.asarray([r["score"] for r in clip_rows], np.float32))
            for r, s in zip(clip_rows, scores):
                r["score"] = float(s)
    return clips


def import_results(project: Project, out_dir: str | Path, name: str = "",
                   progress: Callable[[int, int, str], None] | None = None) -> ImportedRun:
    """Create a run from the batch output in `out_dir`; DataError naming the folder when it is not one."""
    out = Path(out_dir)
    job = shards.read_job_file(out)
    rows = shards.latest_results(out)
    errors = shards.read_rows(out, shards.ERRORS, ["path", "error"])
    if not rows:
        raise DataError(out, f"no results to import ({len(errors)} error(s) in errors/)")
    progress = progress or (lambda d, t, m: None)
    problems = [f"{e['path']}: {e['error']}" for e in errors]
    task = str(job.get("task", "image"))
    frame_rows = [r for r in rows if r["frame_index"] is not None]
    image_rows = [r for r in rows if r["frame_index"] is None]
    clips = _video_rows(frame_rows, job) if frame_rows else {}

    # items: match what the project already holds by path, add the rest
    existing = {(_norm(it.path), it.frame_index if it.kind == "frame" else None): it for it in project.items()}
    entries: list[tuple[DatasetItem, dict[str, Any], dict[str, Any]]] = []  # item, row, extra
    for r in image_rows:
        it = existing.get((_norm(r["path"]), None)) or DatasetItem(
            path=r["path"], kind="image", width=r["image_width"], height=r["image_height"])
        entries.append((it, r, {}))
    for clip, clip_rows in clips.items():
        if clip_rows[0]["key"] == clip_rows[0]["path"]:  # frames of a frame folder: one item per frame file
            group = Path(clip).name
            for r in clip_rows:
                it = existing.get((_norm(r["path"]), r["frame_index"])) or existing.get((_norm(r["path"]), None)) or \
                    DatasetItem(path=r["path"], kind="frame", group=group, frame_index=int(r["frame_index"]),
                                width=r["image_width"], height=r["image_height"])
                entries.append((it, r, {}))
        else:  # a video file: one item, its peak frame
            k = int(np.argmax([r["score"] for r in clip_rows]))
            it = existing.get((_norm(clip), None)) or DatasetItem(path=clip, kind="video", group=Path(clip).stem)
            entries.append((it, clip_rows[k], {"frame_scores": [r["score"] for r in clip_rows], "peak_frame": k}))
    new = [it for it, _, _ in entries if it.id is None]
    if new:
        project.add_items(new, source=f"batch {out}")
    run = project.create_run(str(job["engine"]), task, dict(job.get("params", {})),
                             name=name or f"batch {Path(str(job.get('input', out))).name}")
    rdir = project.run_dir(run.id)
    rdir.mkdir(parents=True, exist_ok=True)
    model = Path(str(job.get("model", "")))
    if model.is_file():
        shutil.copy2(model, rdir / RUN_MODEL_FILE)
    with_maps = False
    for start in range(0, len(entries), CHUNK):
        chunk = entries[start:start + CHUNK]
        ids, scores, maps, extras = [], [], [], []
        for it, r, more in chunk:
            m = None
            if r["map_path"]:
                try:
                    m = np.load(out / r["map_path"], allow_pickle=False).astype(np.float32)
                    with_maps = True
                except (OSError, ValueError) as exc:
                    problems.append(str(DataError(out / r["map_path"], f"unreadable score map ({exc})")))
            extra = {**json.loads(r["extra"] or "{}"), **more, "batch_verdict": bool(r["verdict"]),
                     "batch_regions": int(r["n_regions"] or 0)}
            if r["image_width"] and r["image_height"]:
                extra["image_size"] = [int(r["image_width"]), int(r["image_height"])]
            ids.append(int(it.id))  # type: ignore[arg-type]
            scores.append(r["score"])
            maps.append(m)
            extras.append(extra)
            if r["boxes"] is not None:
                boxes = box_annotations(r["boxes"])
                if boxes:
                    project.add_annotations(int(it.id), boxes, run_id=run.id)  # type: ignore[arg-type]
        project.save_scores(run.id, ids, scores, maps, extras)
        progress(min(start + CHUNK, len(entries)), len(entries), "importing batch results")
    metrics = {"batch_dir": str(out), "n_scored": len(entries), "n_errors": len(errors),
               "threshold_method": "batch job", "imported": time.time()}
    project.update_run(run.id, status="done", threshold=float(job["threshold"]), min_area=float(job["min_area"]),
                       model_dir=str(rdir), metrics=metrics, finished=time.time())
    return ImportedRun(run.id, len(entries), len(new), len(errors), with_maps, problems)
