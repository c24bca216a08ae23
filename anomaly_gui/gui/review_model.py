"""What the review panel needs of one run, from its cache only (Qt-free, never re-running a model).

`ReviewData` loads a run's scores and raw maps once: an LRU of full maps for the overlay, a
`postprocess.VerdictCache` (small maps + per-item critical thresholds) for every item's verdict, the global
display range for heatmaps, ground truth and the analyst's verdicts. All-item verdicts at (t, a) are one
vectorised comparison once the critical thresholds for `a` are known, and a connected-components pass per
candidate item on the small maps while the min-area slider moves.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from anomaly_gui.core import postprocess as pp
from anomaly_gui.core.errors import DataError
from anomaly_gui.core.metrics import confusion
from anomaly_gui.core.project import Project

MAP_LRU = 48  # full-resolution maps kept for the overlay


class ReviewData:
    """A run's cached results as arrays aligned on `item_ids`."""

    def __init__(self, project: Project, run_id: int, verdict_side: int = 128):
        self.project = project
        self.run = project.run(run_id)
        self.run_id = int(run_id)
        stored = project.scores(run_id)
        self.item_ids = np.asarray(sorted(stored), np.int64)
        self._index = {int(i): k for k, i in enumerate(self.item_ids)}
        items = {it.id: it for it in project.items(ids=[int(i) for i in self.item_ids])} if len(self.item_ids) else {}
        self.labels = np.asarray([-1 if items[i].is_anomalous is None else int(items[i].is_anomalous)
                                  for i in self.item_ids], np.int8)
        self.splits = [items[i].split for i in self.item_ids]
        self.scores = np.asarray([np.nan if stored[i].score is None else stored[i].score for i in self.item_ids], np.float64)
        self.sizes: dict[int, tuple[int, int] | None] = {}
        self._map_paths: dict[int, str | None] = {}
        for i in self.item_ids:
            sc = stored[int(i)]
            size = sc.extra.get("image_size")
            self.sizes[int(i)] = (int(size[0]), int(size[1])) if size else None
            self._map_paths[int(i)] = sc.map_path
        self._lru: OrderedDict[int, np.ndarray] = OrderedDict()
        with_map = [int(i) for i in self.item_ids if self._map_paths[int(i)]]
        self.has_map = np.asarray([bool(self._map_paths[int(i)]) for i in self.item_ids], bool)
        maps: list[np.ndarray] = []
        self.problems: list[str] = []  # unreadable cache files (those items fall back to their image score)
        for i in with_map:
            m = self._read_map(i)
            if m is None:
                self.has_map[self._index[i]] = False
                continue
            maps.append(m)
            self._remember(i, m)
        self.map_ids = np.asarray([i for i in with_map if self.has_map[self._index[i]]], np.int64)
        self._map_rows = np.asarray([self._index[int(i)] for i in self.map_ids], np.int64)
        sizes = [self.sizes[int(i)] for i in self.map_ids]
        self.vcache = pp.VerdictCache(maps, sizes, max_side=verdict_side) if maps else None
        # display levels over every map (strided: the quantiles barely move, the cost drops 16x)
        self.range = pp.global_range([m[::4, ::4] if m.size > 65536 else m for m in maps]) if maps else pp.DisplayRange(
            float(np.nanmin(self.scores)) if np.isfinite(self.scores).any() else 0.0,
            float(np.nanmax(self.scores)) if np.isfinite(self.scores).any() else 1.0)
        self.small_maps = list(self.vcache.small) if self.vcache is not None else []
        self.small_sizes = list(self.vcache.image_sizes) if self.vcache is not None else []
        self.analyst = np.full(len(self.item_ids), -1, np.int8)
        self.reload_verdicts()

    def __len__(self) -> int:
        return len(self.item_ids)

    # -- maps -----------------------------------------------------------------------------------------
    def _remember(self, item_id: int, m: np.ndarray) -> None:
        self._lru[item_id] = m
        self._lru.move_to_end(item_id)
        while len(self._lru) > MAP_LRU:
            self._lru.popitem(last=False)

    def map(self, item_id: int) -> np.ndarray | None:
        """The raw map of an item (float32, model resolution), from the LRU or the cache file."""
        m = self._lru.get(int(item_id))
        if m is not None:
            self._lru.move_to_end(int(item_id))
            return m
        if not self._map_paths.get(int(item_id)):
            return None
        m = self._read_map(int(item_id))
        if m is not None:
            self._remember(int(item_id), m)
        return m

    def _read_map(self, item_id: int) -> np.ndarray | None:
        try:
            m = self.project.score_map(self.run_id, item_id)
        except (OSError, ValueError, EOFError) as exc:
            path = self.project.cache_dir / str(self._map_paths.get(item_id))
            msg = str(DataError(path, f"unreadable score map cache ({type(exc).__name__})"))
            if msg not in self.problems:
                self.problems.append(msg)
            return None
        if m is not None and m.ndim != 2:
            self.problems.append(str(DataError(self.project.cache_dir / str(self._map_paths.get(item_id)),
                                               f"score map of shape {m.shape} is not 2-D")))
            return None
        return m

    def image_size(self, item_id: int) -> tuple[int, int] | None:
        return self.sizes.get(int(item_id))

    def contains(self, item_id: int | None) -> bool:
        return item_id is not None and int(item_id) in self._index

    # -- verdicts ------------------------------------------------------------------------------------
    def critical(self, min_area: float) -> np.ndarray:
        """Per item (aligned on item_ids): the largest threshold at which it is anomalous at `min_area`."""
        out = self.scores.copy()
        if self.vcache is not None:
            out[self._map_rows] = self.vcache.critical(float(min_area))
        return out

    def has_critical(self, min_area: float) -> bool:
        return self.vcache is None or float(min_area) <= 0 or float(min_area) in self.vcache._critical

    def verdicts(self, threshold: float, min_area: float) -> np.ndarray:
        """Anomalous flags of every item at (threshold, min area); items without a map use their score."""
        if self.has_critical(min_area):
            return np.nan_to_num(self.critical(min_area), nan=-np.inf) >= threshold
        out = np.nan_to_num(self.scores, nan=-np.inf) >= threshold
        assert self.vcache is not None
        out[self._map_rows] = self.vcache.verdicts(float(threshold), float(min_area))
        return out

    def predictions(self, threshold: float, min_area: float) -> dict[int, bool]:
        flags = self.verdicts(threshold, min_area)
        return dict(zip(self.item_ids.tolist(), flags.tolist()))

    def reload_verdicts(self) -> None:
        """Re-read the analyst's verdicts (normal / anomalous) from the project."""
        v = self.project.verdicts()
        for k, i in enumerate(self.item_ids):
            vd = v.get(int(i))
            self.analyst[k] = 1 if vd and vd.verdict == "anomalous" else 0 if vd and vd.verdict == "normal" else -1

    def confusions(self, flags: np.ndarray) -> dict[str, Any]:
        """Confusion counts of `flags` against ground truth and against the analyst (where known)."""
        out: dict[str, Any] = {}
        known = self.labels >= 0
        if known.any():
            out["truth"] = confusion(self.labels[known], flags[known])
        judged = self.analyst >= 0
        if judged.any():
            out["analyst"] = confusion(self.analyst[judged], flags[judged])
        return out

    def ids_where(self, mask: np.ndarray) -> set[int]:
        return set(self.item_ids[np.asarray(mask, bool)].tolist())


def filter_ids(data: ReviewData, name: str, flags: np.ndarray) -> set[int] | None:
    """Item ids for a named review filter (None: no filter)."""
    lab, ana = data.labels, data.analyst
    masks = {
        "predicted anomalous": flags,
        "predicted normal": ~flags,
        "false positives": flags & (lab == 0),
        "false negatives": ~flags & (lab == 1),
        "disagrees with analyst": (ana >= 0) & (flags != (ana == 1)),
        "not judged by analyst": ana < 0,
    }
    if name not in masks:
        return None
    return data.ids_where(masks[name])


FILTERS = ("all items", "predicted anomalous", "predicted normal", "false positives", "false negatives",
           "disagrees with analyst", "not judged by analyst")
