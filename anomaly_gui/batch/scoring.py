"""Score a batch of units with one loaded engine and write its shards: the code both paths run.

`UnitScorer` is what a Ray actor holds (one engine loaded from the model file per worker) and what the
in-process path calls directly. Verdicts come from the app's own post-processing (`core.postprocess`) on
the raw map rounded to float16, the precision the app caches maps in, so a batch verdict equals the app's.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from anomaly_gui.batch import shards
from anomaly_gui.batch.units import Unit
from anomaly_gui.core import postprocess as pp
from anomaly_gui.core.formats.base import Annotation, DatasetItem
from anomaly_gui.engines.base import Engine, ScoreResult

log = logging.getLogger(__name__)


@dataclass
class JobConfig:
    """What every worker needs (plain values: it travels to Ray workers as JSON-able kwargs)."""

    model_path: str
    out_dir: str
    threshold: float
    min_area: float = 0.0
    device: str = "auto"
    save_maps: bool = False
    torch_threads: int = 0  # 0: leave torch's default

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _err(u: Unit, reason: str) -> dict[str, Any]:
    return {"unit": u["key"], "key": u["key"], "path": u["path"], "kind": u["kind"], "fingerprint": u["fingerprint"],
            "error": reason, "worker_pid": os.getpid()}


def boxes_json(boxes: Sequence[Annotation], cut: Sequence[bool] | None = None) -> str:
    out = []
    for k, b in enumerate(boxes):
        x1, y1, x2, y2 = b.box()
        row: list[Any] = [float(x1), float(y1), float(x2), float(y2), float(b.score or 0.0), b.label]
        if cut is not None:
            row.append(bool(cut[k]))
        out.append(row)
    return json.dumps(out)


def parse_boxes(text: str | None) -> list[list[Any]]:
    return json.loads(text) if text else []


def box_annotations(text: str | None) -> list[Annotation]:
    return [Annotation(kind="box", label=str(b[5]), score=float(b[4]), source="model",
                       geometry={"x1": b[0], "y1": b[1], "x2": b[2], "y2": b[3]}) for b in parse_boxes(text)]


def box_verdict(boxes: list[list[Any]], score: float | None, threshold: float) -> dict[str, Any]:
    """Detections: anomalous when the best confidence reaches the threshold (as the app decides)."""
    kept = [b for b in boxes if b[4] >= threshold]
    areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in kept]
    return {"verdict": score is not None and score >= threshold, "n_regions": len(kept),
            "largest_area": float(max(areas)) if areas else 0.0}


class UnitScorer:
    """Holds one loaded engine; `__call__` scores a batch of units and writes its shards.

    The batch is a dict of columns (Ray's numpy batch format); the return value is one summary row per unit.
    """

    def __init__(self, config: dict[str, Any]):
        self.cfg = JobConfig(**config)
        if self.cfg.torch_threads > 0:
            import torch

            torch.set_num_threads(int(self.cfg.torch_threads))
        from anomaly_gui.engines.deploy import load_for_scoring

        self.engine: Engine = load_for_scoring(self.cfg.model_path, device=self.cfg.device)
        self.out_dir = Path(self.cfg.out_dir)

    @classmethod
    def with_engine(cls, config: dict[str, Any], engine: Engine) -> "UnitScorer":
        """A scorer around an engine already loaded (the in-process path: one worker, this process)."""
        self = cls.__new__(cls)
        self.cfg = JobConfig(**config)
        self.engine = engine
        self.out_dir = Path(self.cfg.out_dir)
        return self

    # -- entry point ---------------------------------------------------------------------------------
    def __call__(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        t_start = time.time()
        units = _rows(batch)
        # named after its units and their fingerprints: a retried batch finds its own shards
        name = shards.shard_name(f"{u['key']}\t{u['fingerprint']}" for u in units)
        written = shards.read_batch(self.out_dir, name)
        if written is not None:  # done by an attempt whose worker died before reporting: not scored again
            results, tiles, errors = written
        else:
            results, tiles, errors = self._score_units(units)
            shards.write_shard(self.out_dir, shards.RESULTS, name, results)
            shards.write_shard(self.out_dir, shards.TILES, name, tiles)
            shards.write_shard(self.out_dir, shards.ERRORS, name, errors)
            shards.mark_done(self.out_dir, name)
        per_unit: dict[str, list[int]] = {u["key"]: [0, 0, 0] for u in units}  # rows, anomalous, errors
        for r in results:
            per_unit[r["unit"]][0] += 1
            per_unit[r["unit"]][1] += int(bool(r["verdict"]))
        for t in tiles:
            per_unit[t["unit"]][0] += 1
        for e in errors:
            per_unit[e["unit"]][2] += 1
        keys = list(per_unit)
        return {"unit": np.array(keys, dtype=object),
                "rows": np.array([per_unit[k][0] for k in keys], np.int64),
                "anomalous": np.array([per_unit[k][1] for k in keys], np.int64),
                "errors": np.array([per_unit[k][2] for k in keys], np.int64),
                "worker_pid": np.full(len(keys), os.getpid(), np.int64),
                # wall-clock span of this call (benchmarks: Ray's gaps between the batches of one worker)
                "t_start": np.full(len(keys), t_start), "t_end": np.full(len(keys), time.time())}

    def _score_units(self, units: list[Unit]) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        """(result rows, tile rows, error rows) of a batch of units."""
        results: list[dict[str, Any]] = []
        tiles: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        images = [u for u in units if u["kind"] == "image"]
        if images:
            self._score_images(images, results, errors)
        for u in units:
            try:
                if u["kind"] == "frames":
                    from anomaly_gui.batch.video import score_frame_range

                    results += [self._finish(u, r, **kw) for r, kw in score_frame_range(self.engine, u)]
                elif u["kind"] == "tile":
                    from anomaly_gui.batch.scenes import detect_tile

                    tiles.append(detect_tile(self.engine, u))
            except Exception as exc:  # one unreadable clip or scene never aborts the job
                errors.append(_err(u, _reason(exc)))
        return results, tiles, errors

    # -- images ----------------------------------------------------------------------------------------
    def _score_images(self, units: list[Unit], results: list[dict[str, Any]], errors: list[dict[str, Any]]) -> None:
        items = [DatasetItem(path=u["path"]) for u in units]
        try:
            scored: list[ScoreResult | Exception] = list(self.engine.score(items))
        except Exception:  # find the item that broke the batch: score one by one
            scored = []
            for it in items:
                try:
                    scored += self.engine.score([it])
                except Exception as exc:
                    scored.append(exc)
        for u, r in zip(units, scored):
            if isinstance(r, Exception):
                errors.append(_err(u, _reason(r)))
            elif r.score is None and r.map is None and r.boxes is None and r.embedding is None:
                errors.append(_err(u, str(r.error or "not scored")))
            else:
                results.append(self._finish(u, r))

    def _finish(self, u: Unit, r: ScoreResult, key: str | None = None, path: str | None = None,
                frame_index: int | None = None) -> dict[str, Any]:
        """One result row: score, verdict, regions (or boxes) and, with maps on, the saved float16 map."""
        cfg = self.cfg
        key = key or u["key"]
        extra = {k: v for k, v in r.extra.items() if _jsonable(v)}
        size = r.image_size or (_header_size(u["path"]) if u["kind"] == "image" else None)
        score = r.score
        map_path = None
        row: dict[str, Any] = {"verdict": False, "n_regions": 0, "largest_area": 0.0}
        if r.map is not None:
            m16 = np.asarray(r.map, np.float32).astype(np.float16)
            m = m16.astype(np.float32)
            if score is None:
                score = float(np.nanmax(m))
            image_size = (int(size[0]), int(size[1])) if size else None
            post = pp.postprocess(m, cfg.threshold, cfg.min_area, image_size=image_size)
            row = {"verdict": post.anomalous, "n_regions": len(post.regions),
                   "largest_area": max((g.area for g in post.regions), default=0.0)}
            if cfg.save_maps:
                map_path = self._save_map(key, m16)
        elif r.boxes is not None:
            row = box_verdict(parse_boxes(boxes_json(r.boxes)), score, cfg.threshold)
        elif score is not None:
            row = {"verdict": score >= cfg.threshold, "n_regions": int(score >= cfg.threshold), "largest_area": 0.0}
        return {"unit": u["key"], "key": key, "path": path or u["path"], "kind": u["kind"],
                "fingerprint": u["fingerprint"], "score": None if score is None else float(score), **row,
                "boxes": boxes_json(r.boxes) if r.boxes is not None else None, "frame_index": frame_index,
                "image_width": int(size[0]) if size else None, "image_height": int(size[1]) if size else None,
                "map_path": map_path, "extra": json.dumps(extra), "worker_pid": os.getpid()}

    def _save_map(self, key: str, m16: np.ndarray) -> str:
        rel = Path(shards.MAPS) / f"{hashlib.sha1(key.encode()).hexdigest()[:24]}.npy"
        dest = self.out_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp.npy")
        np.save(tmp, m16)
        os.replace(tmp, dest)
        return rel.as_posix()


def _header_size(path: str) -> list[int] | None:
    """(width, height) from the file header, as the app records an item's size when the engine gives none."""
    from anomaly_gui.core.imageio import image_size

    try:
        return list(image_size(path))
    except Exception:
        return None


def _reason(exc: BaseException) -> str:
    text = str(exc)
    return text if text and type(exc).__name__ in ("DataError",) else f"{type(exc).__name__}: {text}"


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
    except (TypeError, ValueError):
        return False
    return True


def _rows(batch: dict[str, Any] | list[dict[str, Any]]) -> list[Unit]:
    """Units from Ray's column batch (or a plain list of dicts in process)."""
    if isinstance(batch, list):
        return batch
    cols = list(batch)
    n = len(batch[cols[0]]) if cols else 0
    return [{c: _plain(batch[c][i]) for c in cols} for i in range(n)]


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v

