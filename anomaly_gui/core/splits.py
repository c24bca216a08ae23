"""The original train/validation/test split: 10% test, then 20% of the rest for validation, fixed seed.

Stored in the project (each item's `split` column, plus the recipe under the setting `split.recipe`);
items keep a split the analyst gave them unless `overwrite` is asked for, so the split stays editable.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

TEST_FRACTION = 0.1
VAL_FRACTION = 0.2
SEED = 42
SPLITS = ("train", "val", "test")


def original_split(
    keys: Sequence[Any], test_fraction: float = TEST_FRACTION, val_fraction: float = VAL_FRACTION, seed: int = SEED
) -> dict[Any, str]:
    """{key: train|val|test}. Deterministic for a given seed and set of keys (order does not matter)."""
    if not 0 <= test_fraction < 1 or not 0 <= val_fraction < 1:
        raise ValueError("fractions must be in [0, 1)")
    ordered = sorted(keys, key=str)
    n = len(ordered)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    n_test = int(round(n * test_fraction)) if n >= 3 else 0
    if test_fraction > 0 and n >= 3:
        n_test = max(1, n_test)
    rest = perm[n_test:]
    n_val = int(round(len(rest) * val_fraction)) if len(rest) >= 3 else 0
    if val_fraction > 0 and len(rest) >= 3:
        n_val = max(1, n_val)
    out: dict[Any, str] = {}
    for i in perm[:n_test]:
        out[ordered[i]] = "test"
    for i in rest[:n_val]:
        out[ordered[i]] = "val"
    for i in rest[n_val:]:
        out[ordered[i]] = "train"
    return out


def split_items(items: Sequence[Any], overwrite: bool = False, **kw: Any) -> dict[str, list[Any]]:
    """Group DatasetItems by split; items without one (or all, with `overwrite`) get the original split."""
    todo = [it for it in items if overwrite or it.split not in SPLITS]
    assigned = original_split([str(it.path) + f"#{it.frame_index}" for it in todo], **kw)
    groups: dict[str, list[Any]] = {s: [] for s in SPLITS}
    for it in items:
        key = str(it.path) + f"#{it.frame_index}"
        if key in assigned:
            it.split = assigned[key]
        groups.setdefault(it.split, []).append(it)
    return groups


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
              "seed": kw.get("seed", SEED)}
    project.set_setting("split.recipe", recipe)
    return {k: len(v) for k, v in groups.items()}
