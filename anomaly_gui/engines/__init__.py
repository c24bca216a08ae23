"""Engines: pure torch models behind one fit/score protocol, found through a registry."""
from anomaly_gui.engines.base import (
    Cancelled,
    Engine,
    RunContext,
    ScoreResult,
    Task,
    get_engine,
    list_engines,
    register_engine,
)

__all__ = ["Cancelled", "Engine", "RunContext", "ScoreResult", "Task", "get_engine", "list_engines", "register_engine"]
