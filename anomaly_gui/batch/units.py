"""Work units of a batch job: what INPUT expands to, one plain dict per unit (Ray and Parquet friendly).

A unit is one image, one frame range of a clip (video file or frame folder), or one tile of a large scene.
Each has a stable `key` (what the output is keyed on, so a rerun can skip it) and a `fingerprint` of the
file (size + modification time in ns), so a changed file is scored again.

INPUT may be: a folder of images, a text manifest (one path a line) or a CSV manifest (a `path` column, or
the first column), a video file, a folder of frames (with a video engine), or a single image / large scene.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Iterable

from anomaly_gui.core.errors import DataError

MANIFEST_SUFFIXES = frozenset({".txt", ".csv", ".lst"})

Unit = dict[str, Any]


def fingerprint(path: str | Path) -> str:
    """`size-mtime_ns` of a file; `missing` when it cannot be stat'ed (the scorer then reports why)."""
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    return f"{st.st_size}-{st.st_mtime_ns}"


def _unit(key: str, path: str, kind: str, fp: str, **extra: Any) -> Unit:
    u: Unit = {"key": key, "path": path, "kind": kind, "fingerprint": fp, "start": -1, "stop": -1, "context": 0,
               "x0": -1, "y0": -1, "x1": -1, "y1": -1, "scene_w": -1, "scene_h": -1, "tile_id": -1,
               "n_tiles": -1, "total_frames": -1}
    u.update(extra)
    return u


def image_unit(path: str | Path) -> Unit:
    p = str(path)
    return _unit(p, p, "image", fingerprint(p))


def read_manifest(path: Path) -> list[str]:
    """Paths listed in a text or CSV manifest; relative paths are resolved against the manifest's folder."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read the manifest ({exc})") from exc
    rows: list[str] = []
    if path.suffix.lower() == ".csv":
        reader = list(csv.reader(text.splitlines()))
        if not reader:
            raise DataError(path, "empty manifest")
        header = [h.strip().lower() for h in reader[0]]
        col = header.index("path") if "path" in header else 0
        body = reader[1:] if "path" in header else reader
        rows = [r[col].strip() for r in body if len(r) > col and r[col].strip()]
    else:
        rows = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not rows:
        raise DataError(path, "the manifest lists no paths")
    return [str(p if Path(p).is_absolute() else (path.parent / p)) for p in rows]


def frame_range_units(source_path: str, n_frames: int, frames_per_unit: int, context: int) -> list[Unit]:
    """Units of `frames_per_unit` frames of one clip; each also reads `context` frames on either side so a
    sequence engine sees the same windows around the range's first and last frames as over the whole clip."""
    fp = fingerprint(source_path)
    step = max(1, int(frames_per_unit))
    return [_unit(f"{source_path}#{s}-{min(s + step, n_frames)}", source_path, "frames", fp, start=s,
                  stop=min(s + step, n_frames), context=int(context), total_frames=int(n_frames))
            for s in range(0, n_frames, step)]


def tile_units(path: str, width: int, height: int, tile: int, overlap: int) -> list[Unit]:
    """One unit per overlapping tile of a large scene (the app's `tile_grid`)."""
    from anomaly_gui.core.tiling import tile_grid

    fp = fingerprint(path)
    grid = tile_grid(width, height, tile, overlap)
    return [_unit(f"{path}@{t.x0},{t.y0}", path, "tile", fp, x0=t.x0, y0=t.y0, x1=t.x1, y1=t.y1, scene_w=width,
                  scene_h=height, tile_id=k, n_tiles=len(grid))
            for k, t in enumerate(grid)]


def dedupe(units: Iterable[Unit]) -> list[Unit]:
    seen: set[str] = set()
    out = []
    for u in units:
        if u["key"] not in seen:
            seen.add(u["key"])
            out.append(u)
    return out
