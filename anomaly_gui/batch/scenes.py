"""Large scenes as tiles: each tile is a unit of its own (a Ray task on a cluster), merged back per scene.

The tile grid, the per-tile input stretch and the merge (class-wise NMS, then the cross-tile pass that keeps
the box not cut by an interior tile edge) are the app's (`core.tiling`, `detection_common.prepare_image`),
with the tile size and overlap the detector itself uses, so a merged scene has the boxes the app finds.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from anomaly_gui.batch import shards
from anomaly_gui.batch.scoring import box_verdict, boxes_json, parse_boxes
from anomaly_gui.batch.units import Unit, tile_units
from anomaly_gui.core.tiling import Scene, Tile, cut_flags, merge_boxes
from anomaly_gui.engines.base import Engine, Task

SCENE_FACTOR = 1.5  # a detector tiles an image larger than this many tiles on its long side


def tiling_of(engine: Engine) -> tuple[int, int] | None:
    """(tile, overlap) the engine tiles large scenes with, or None when it never tiles."""
    if Task(engine.task) != Task.DETECTION:
        return None
    tile = int(getattr(engine.params, "tile", 0) or 0)
    return (tile, max(32, tile // 6)) if tile else None


def scene_size(path: str) -> tuple[int, int] | None:
    """(width, height) read from the header (memory-mapped for .npy / plain TIFF); None when unreadable."""
    from anomaly_gui.core.imageio import image_size

    try:
        if Path(path).suffix.lower() in (".npy", ".tif", ".tiff"):
            sc = Scene(path)
            return sc.width, sc.height
        return image_size(path)
    except Exception:  # the scorer reports the file as unreadable
        return None


def units_for_image(path: str, tiling: tuple[int, int] | None) -> list[Unit] | None:
    """Tile units when `path` is a scene the detector would tile; None for an ordinary image."""
    if tiling is None:
        return None
    size = scene_size(path)
    if size is None or max(size) <= tiling[0] * SCENE_FACTOR:
        return None
    return tile_units(path, size[0], size[1], *tiling)


def detect_tile(engine: Engine, u: Unit) -> dict[str, Any]:
    """The boxes of one tile in scene coordinates, with the flags the cross-tile merge needs."""
    from anomaly_gui.engines.detection_common import prepare_image

    t = Tile(int(u["x0"]), int(u["y0"]), int(u["x1"]), int(u["y1"]))
    pixels = Scene(u["path"]).read(t)
    p = engine.params
    found = engine.predict_arrays([prepare_image(pixels, getattr(p, "input_stretch", "auto"),  # type: ignore[attr-defined]
                                                 getattr(p, "speckle", "none"))])[0]
    for a in found:
        g = a.geometry
        a.geometry = {"x1": g["x1"] + t.x0, "y1": g["y1"] + t.y0, "x2": g["x2"] + t.x0, "y2": g["y2"] + t.y0}
    b = np.array([a.box() for a in found], dtype=np.float64).reshape(-1, 4)
    cut = cut_flags(b, t, int(u["scene_w"]), int(u["scene_h"])) if len(found) else []
    return {"unit": u["key"], "key": u["key"], "path": u["path"], "kind": "tile", "fingerprint": u["fingerprint"],
            "boxes": boxes_json(found, list(cut)), "tile_id": int(u["tile_id"]), "n_tiles": int(u["n_tiles"]),
            "scene_w": int(u["scene_w"]), "scene_h": int(u["scene_h"]), "worker_pid": os.getpid()}


def merge_scenes(out_dir: Path, threshold: float, iou: float = 0.5) -> int:
    """Merge the tiles of every complete scene into one result row (`results/scene-*.parquet`).

    Idempotent: a scene merged before is merged again to the same shard. Returns the scenes merged."""
    rows = shards.read_rows(out_dir, shards.TILES)
    by_scene: dict[tuple[str, str], dict[int, dict[str, Any]]] = defaultdict(dict)
    for r in rows:
        by_scene[(r["path"], r["fingerprint"])][int(r["tile_id"])] = r
    merged = 0
    for (path, fp), tiles in sorted(by_scene.items()):
        n = next(iter(tiles.values()))["n_tiles"]
        if len(tiles) != n:
            continue  # not complete yet (a rerun finishes it)
        boxes, scores, labels, tile_ids, cut = [], [], [], [], []
        for k, r in sorted(tiles.items()):
            for b in parse_boxes(r["boxes"]):
                boxes.append(b[:4])
                scores.append(b[4])
                labels.append(b[5])
                tile_ids.append(k)
                cut.append(bool(b[6]))
        keep = merge_boxes(np.array(boxes, np.float64).reshape(-1, 4), np.array(scores), labels,
                           np.array(tile_ids), np.array(cut, bool), iou=iou) if boxes else []
        kept = [[*boxes[i], scores[i], labels[i]] for i in keep]
        score = max((b[4] for b in kept), default=0.0)
        first = next(iter(tiles.values()))
        row = {"unit": path, "key": path, "path": path, "kind": "scene", "fingerprint": fp, "score": float(score),
               **box_verdict(kept, score, threshold), "boxes": json.dumps(kept), "frame_index": None,
               "image_width": first["scene_w"], "image_height": first["scene_h"], "map_path": None,
               "extra": json.dumps({"n_boxes": len(kept), "n_tiles": n}), "worker_pid": os.getpid()}
        shards.write_shard(out_dir, shards.RESULTS, shards.shard_name([path, fp], prefix="scene"), [row])
        merged += 1
    return merged
