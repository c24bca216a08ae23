"""The output folder of a batch job: Parquet shards, written atomically, and what a rerun may skip.

    OUT_DIR/job.json             model, engine, threshold, min area, input (a rerun must match it)
    OUT_DIR/results/part-*.parquet   one row per scored image / frame / merged scene
    OUT_DIR/tiles/part-*.parquet     per-tile boxes of large scenes (merged into results/scene-*.parquet)
    OUT_DIR/errors/part-*.parquet    unit, path, reason: unreadable files, never fatal
    OUT_DIR/maps/*.npy               float16 raw score maps (only with maps on)
    OUT_DIR/done/*                   one empty marker per finished batch (written after its shards)

A shard is named after the units it holds (a hash of their keys), written to a temporary name and renamed:
a batch that is retried after its worker died rewrites the same shard instead of adding a second copy.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from anomaly_gui.core.errors import AnomalyGuiError, DataError

RESULTS, TILES, ERRORS, MAPS, DONE = "results", "tiles", "errors", "maps", "done"
JOB_FILE = "job.json"


class BatchError(AnomalyGuiError):
    """A batch job cannot start or continue (missing extra, output of another job, bad option)."""


def require_pyarrow() -> Any:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise BatchError("batch scoring writes Parquet and needs pyarrow: pip install 'anomaly_gui[scale]'") from exc
    return pq


def _schemas() -> dict[str, Any]:
    import pyarrow as pa

    common = [("unit", pa.string()), ("key", pa.string()), ("path", pa.string()), ("kind", pa.string()),
              ("fingerprint", pa.string())]
    result = pa.schema(common + [
        ("score", pa.float64()), ("verdict", pa.bool_()), ("n_regions", pa.int32()),
        ("largest_area", pa.float64()), ("boxes", pa.string()), ("frame_index", pa.int64()),
        ("image_width", pa.int32()), ("image_height", pa.int32()), ("map_path", pa.string()),
        ("extra", pa.string()), ("worker_pid", pa.int64()),
    ])
    tile = pa.schema(common + [("boxes", pa.string()), ("tile_id", pa.int32()), ("n_tiles", pa.int32()),
                               ("scene_w", pa.int32()), ("scene_h", pa.int32()), ("worker_pid", pa.int64())])
    error = pa.schema(common + [("error", pa.string()), ("worker_pid", pa.int64())])
    return {RESULTS: result, TILES: tile, ERRORS: error}


def shard_name(unit_keys: Iterable[str], prefix: str = "part") -> str:
    h = hashlib.sha1("\n".join(sorted(unit_keys)).encode()).hexdigest()[:20]
    return f"{prefix}-{h}.parquet"


def write_shard(out_dir: Path, kind: str, name: str, rows: Sequence[dict[str, Any]]) -> Path | None:
    """Write `rows` as one Parquet shard atomically; None when there are no rows."""
    if not rows:
        return None
    pq = require_pyarrow()
    import pyarrow as pa

    schema = _schemas()[kind]
    table = pa.Table.from_pylist([{f: r.get(f) for f in schema.names} for r in rows], schema=schema)
    folder = out_dir / kind
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / name
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, final)
    return final


def mark_done(out_dir: Path, name: str) -> None:
    folder = out_dir / DONE
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).touch()


def read_batch(out_dir: Path, name: str) -> tuple[list[dict[str, Any]], ...] | None:
    """(results, tiles, errors) rows of a batch already finished (its marker exists), else None."""
    if not (out_dir / DONE / name).is_file():
        return None
    pq = require_pyarrow()
    out = []
    for kind in (RESULTS, TILES, ERRORS):
        f = out_dir / kind / name
        out.append(pq.read_table(f).to_pylist() if f.is_file() else [])
    return tuple(out)


def shard_files(out_dir: Path, kind: str) -> list[Path]:
    folder = Path(out_dir) / kind
    return sorted(p for p in folder.glob("*.parquet") if not p.name.startswith(".")) if folder.is_dir() else []


def read_rows(out_dir: Path, kind: str, columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Every row of every shard of `kind`, as dicts (shards in name order)."""
    pq = require_pyarrow()
    rows: list[dict[str, Any]] = []
    for f in shard_files(out_dir, kind):
        try:
            rows += pq.read_table(f, columns=list(columns) if columns else None).to_pylist()
        except Exception as exc:  # a damaged shard names itself; its units are scored again
            raise DataError(f, f"unreadable result shard ({type(exc).__name__}: {exc}); delete it and rerun") from exc
    return rows


def done_units(out_dir: Path) -> set[tuple[str, str]]:
    """(unit key, fingerprint) of every unit already written (results, tiles or errors)."""
    done: set[tuple[str, str]] = set()
    for kind in (RESULTS, TILES, ERRORS):
        for r in read_rows(out_dir, kind, ["unit", "fingerprint"]):
            done.add((r["unit"], r["fingerprint"]))
    return done


def latest_results(out_dir: Path) -> list[dict[str, Any]]:
    """Result rows, one per key (a key scored again after its file changed keeps its newest row)."""
    pq = require_pyarrow()
    by_key: dict[str, tuple[float, dict[str, Any]]] = {}
    for f in shard_files(out_dir, RESULTS):
        mtime = f.stat().st_mtime
        for r in pq.read_table(f).to_pylist():
            old = by_key.get(r["key"])
            if old is None or mtime >= old[0]:
                by_key[r["key"]] = (mtime, r)
    return [r for _, r in sorted(by_key.values(), key=lambda x: (x[1]["path"], x[1]["frame_index"] or 0))]


# -- the job file ----------------------------------------------------------------------------------
#: settings that must not change between runs into one output folder (the verdicts would mix)
BINDING = ("model_sha1", "threshold", "min_area", "engine")


def file_sha1(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_job_file(out_dir: Path, job: dict[str, Any]) -> None:
    """Write `job.json`, or check that an earlier run into `out_dir` used the same model and settings."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / JOB_FILE
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(path, f"damaged job file ({exc})") from exc
        diff = [k for k in BINDING if old.get(k) != job.get(k)]
        if diff:
            raise BatchError(f"{out_dir} holds results of another job ({', '.join(diff)} differ: "
                             f"{', '.join(f'{k}={old.get(k)!r}' for k in diff)}); score into a new folder")
    path.write_text(json.dumps(job, indent=2, default=str))


def read_job_file(out_dir: Path) -> dict[str, Any]:
    path = Path(out_dir) / JOB_FILE
    if not path.is_file():
        raise DataError(path, "not a batch output folder (no job.json)")
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(path, f"damaged job file ({exc})") from exc
