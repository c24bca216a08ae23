"""anomaly_gui: find anomalies in product images, SAR scenes, camera traps and video."""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["AnomalyDetector", "__version__"]


def __getattr__(name: str):
    # Lazy so that `import anomaly_gui` stays cheap (no torch import) for the CLI and GUI start-up.
    if name == "AnomalyDetector":
        from anomaly_gui.api import AnomalyDetector

        return AnomalyDetector
    raise AttributeError(name)
