"""Device selection (CPU always works; CUDA when present)."""
from __future__ import annotations

import torch


def cuda_available() -> bool:
    return torch.cuda.is_available()


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """'auto' picks CUDA when there is one; asking for CUDA without one is a clear error."""
    if isinstance(device, torch.device):
        return device
    name = (device or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if cuda_available() else "cpu")
    if name.startswith("cuda") and not cuda_available():
        raise RuntimeError("CUDA was asked for but no CUDA GPU is available; use --device cpu")
    return torch.device(name)


def device_label() -> str:
    """Short text for the status bar."""
    if cuda_available():
        return f"GPU: {torch.cuda.get_device_name(0)}"
    return f"CPU ({torch.get_num_threads()} threads)"


def available_devices() -> list[str]:
    out = ["auto", "cpu"]
    if cuda_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return out
