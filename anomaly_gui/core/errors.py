"""Errors that carry the file they are about, so the user is told which file is wrong."""
from __future__ import annotations

from pathlib import Path


class AnomalyGuiError(Exception):
    """Base class for errors shown to the user as they are (no traceback needed)."""


class DataError(AnomalyGuiError):
    """A file could not be read or understood."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class ModelFileError(AnomalyGuiError):
    """A model file is corrupt, of another version, or not one of ours."""


class WeightsUnavailableError(AnomalyGuiError):
    """Pretrained weights are needed but none can be found offline."""
