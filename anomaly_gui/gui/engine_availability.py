"""Whether an engine's Python packages are installed, and the exact command that installs them.

An engine lists the packages it imports in `requires` (e.g. the YOLO engine: `("ultralytics",)`); the
Train and Detection panels show a missing one's engine greyed, with this command in its tooltip and text.
"""
from __future__ import annotations

import importlib.util
from typing import Any


def missing_packages(engine_cls: Any) -> list[str]:
    out = []
    for module in getattr(engine_cls, "requires", ()) or ():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            out.append(module)
    return out


def install_hint(engine_cls: Any) -> str:
    """'' when the engine can run, else what to type: "needs ultralytics: pip install ultralytics"."""
    missing = missing_packages(engine_cls)
    return f"needs {', '.join(missing)}: pip install {' '.join(missing)}" if missing else ""
