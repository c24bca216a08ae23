"""The one split of the project: train / validation / test by *group*, seeded and order-independent.

Items that belong together go to the same side, so no burst, scene or clip leaks from training into
validation or test (`group_key`): a COCO Camera Traps sequence (`seq_id`), else the camera `location`,
else the item's clip or sequence (`group`), else the source scene of a tile (`P0001_0_800_7200_8000.jpg`
-> `P0001`), else the item itself. A dataset's own split is kept (`overwrite=False`), so a dataset that
ships a validation split keeps it.

- `hold_out(items, fraction, seed)` is the only place that draws: a seeded random `fraction` of the
  groups (at least one when `fraction` > 0 and there are at least `min_groups`). A single group of
  frames (one training clip) is cut in time instead: its last `fraction` of frames are held out.
- `train_val_split` (items marked `val` validate, else a held-out part) is what the engines and the run
  pipeline call; `split_items` / `apply_original_split` give the original 10 % test, then 20 % validation.
"""
from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Sequence

import numpy as np

TEST_FRACTION = 0.1
VAL_FRACTION = 0.2
SEED = 42
SPLITS = ("train", "val", "test")

#: a tile cut from a larger scene: `<scene>_<y1>_<y2>_<x1>_<x2>` (HRSID) or `<scene>__1__0___0` (DOTA)
_TILE_RE = re.compile(r"^(?P<scene>.+?)(?:(?:_\d+){4}|__\d+(?:\.\d+)?__\d+___\d+)$")


def tile_scene(stem: str) -> str | None:
    """The source scene a tile's file name (without suffix) names, or None."""
    m = _TILE_RE.match(stem)
    return m.group("scene") if m else None


def group_key(item: Any) -> str:
    """What `item` must stay together with (see the module doc)."""
    meta = getattr(item, "meta", None) or {}
    for key in ("seq_id", "location"):
        if meta.get(key) not in (None, ""):
            return f"{key}:{meta[key]}"
    if getattr(item, "group", ""):
        return f"group:{item.group}"
    path = Path(str(item.path))
    scene = tile_scene(path.stem)
    if scene:
        return f"scene:{path.parent}/{scene}"
    idx = getattr(item, "frame_index", None)
    return f"item:{path}" if idx is None else f"item:{path}#{idx}"


def hold_out(items: Sequence[Any], fraction: float, seed: int = SEED, group_of: Callable[[Any], str] = group_key,
             min_groups: int = 2) -> tuple[list[Any], list[Any]]:
    """(kept, held): a seeded random `fraction` of the groups held out, whole (see the module doc).

    Nothing is held out when `fraction` is 0 or fewer than `min_groups` groups (one clip: see the doc)."""
    if not 0 <= fraction < 1:
        raise ValueError("fractions must be in [0, 1)")
    items = list(items)
    groups: dict[str, list[int]] = {}
    for k, it in enumerate(items):
        groups.setdefault(group_of(it), []).append(k)
    if fraction == 0 or not items:
        return items, []
    names = sorted(groups)
    if len(names) == 1 and len(items) >= 2 and all(getattr(it, "frame_index", None) is not None for it in items):
        order = sorted(range(len(items)), key=lambda k: items[k].frame_index)
        n = min(len(items) - 1, max(1, int(round(len(items) * fraction))))
        held_idx = set(order[-n:])
    else:
        if len(names) < max(2, min_groups):
            return items, []
        n = min(len(names) - 1, max(1, int(round(len(names) * fraction))))
        perm = np.random.default_rng(seed).permutation(len(names))
        held_idx = {k for i in perm[:n] for k in groups[names[i]]}
    return [it for k, it in enumerate(items) if k not in held_idx], [it for k, it in enumerate(items) if k in held_idx]


def train_val_split(items: Sequence[Any], val_fraction: float = VAL_FRACTION, seed: int = 0,
                    min_groups: int = 2) -> tuple[list[Any], list[Any]]:
    """(train, validation): items marked `val` validate; without any, a held-out part of the others."""
    val = [it for it in items if getattr(it, "split", "") == "val"]
    rest = [it for it in items if getattr(it, "split", "") != "val"]
    if val:
        return rest, val
    return hold_out(rest, val_fraction, seed, min_groups=min_groups)


def split_items(items: Sequence[Any], overwrite: bool = False, test_fraction: float = TEST_FRACTION,
                val_fraction: float = VAL_FRACTION, seed: int = SEED) -> dict[str, list[Any]]:
    """Group items by split; items without one (or all, with `overwrite`) get the original split by group
    (`test_fraction` test, then `val_fraction` of the rest validation; needs 3 groups for each)."""
    todo = [it for it in items if overwrite or it.split not in SPLITS]
    rest, test = hold_out(todo, test_fraction, seed, min_groups=3)
    train, val = hold_out(rest, val_fraction, seed, min_groups=3)
    for part, name in ((train, "train"), (val, "val"), (test, "test")):
        for it in part:
            it.split = name
    groups: dict[str, list[Any]] = {s: [] for s in SPLITS}
    for it in items:
        groups.setdefault(it.split, []).append(it)
    return groups


def original_split(keys: Sequence[Any], test_fraction: float = TEST_FRACTION, val_fraction: float = VAL_FRACTION,
                   seed: int = SEED) -> dict[Any, str]:
    """{key: train|val|test} for plain keys (each its own group); the split of `split_items`."""
    items = [SimpleNamespace(path=str(k), split="", key=k) for k in keys]
    split_items(items, overwrite=True, test_fraction=test_fraction, val_fraction=val_fraction, seed=seed)
    return {it.key: it.split for it in items}


def apply_original_split(project: Any, overwrite: bool = False, **kw: Any) -> dict[str, int]:
    """Split the project's items (those without a split, or all with `overwrite`) and store it.

    Returns the count per split. The recipe is kept in the project's settings.
    """
    items = project.items()
    groups = split_items(items, overwrite=overwrite, **kw)
    for name in SPLITS:
        ids = [int(it.id) for it in groups.get(name, []) if it.id is not None]
        if ids:
            project.set_split(ids, name)
    recipe = {"test_fraction": kw.get("test_fraction", TEST_FRACTION), "val_fraction": kw.get("val_fraction", VAL_FRACTION),
              "seed": kw.get("seed", SEED), "by": "group (seq_id, location, clip, tile scene)"}
    project.set_setting("split.recipe", recipe)
    return {k: len(v) for k, v in groups.items()}

