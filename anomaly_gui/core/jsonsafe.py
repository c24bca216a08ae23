"""Keeping the JSON-serialisable part of a statistics dict (model-file metadata, batch manifests)."""
from __future__ import annotations

import json
from typing import Any


def json_serialisable_items(stats: dict[str, Any]) -> dict[str, Any]:
    """The entries of `stats` that `json.dumps` accepts as they are; the others (tensors, arrays) are left out."""
    out = {}
    for k, v in stats.items():
        try:
            json.dumps(v)
        except (TypeError, ValueError):
            continue
        out[k] = v
    return out
