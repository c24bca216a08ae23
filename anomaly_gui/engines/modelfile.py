"""Model files: one safetensors file with our JSON metadata. Loading never unpickles anything."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from anomaly_gui.core.errors import ModelFileError
from anomaly_gui.core.imageio import atomic_path

FORMAT_KEY = "anomaly_gui"
FORMAT_VERSION = 1
MODEL_SUFFIX = ".agm"


def write_model_file(path: Path, tensors: dict[str, Any], meta: dict[str, Any]) -> Path:
    """Write tensors + metadata atomically (a failed save never replaces a good file)."""
    import torch
    from safetensors.torch import save_file

    if path.suffix == "":
        path = path.with_suffix(MODEL_SUFFIX)
    out: dict[str, torch.Tensor] = {}
    for k, v in tensors.items():
        t = torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else v
        out[k] = t.detach().to("cpu").contiguous()
    header = {FORMAT_KEY: json.dumps({"format_version": FORMAT_VERSION, **meta}, default=_json_default)}
    with atomic_path(path) as tmp:
        save_file(out, str(tmp), metadata=header)
    return path


def read_model_file(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(tensors, meta). Raises ModelFileError naming the file for anything not ours or damaged."""
    from safetensors import safe_open

    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:
        raise ModelFileError(f"{path}: not an anomaly_gui model file or damaged ({type(exc).__name__})") from exc
    if FORMAT_KEY not in header:
        raise ModelFileError(f"{path}: a safetensors file, but not made by anomaly_gui")
    try:
        meta = json.loads(header[FORMAT_KEY])
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{path}: damaged metadata ({exc})") from exc
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise ModelFileError(f"{path}: made by a newer anomaly_gui (format {meta.get('format_version')})")
    if "engine" not in meta:
        raise ModelFileError(f"{path}: metadata names no engine")
    return tensors, meta


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
