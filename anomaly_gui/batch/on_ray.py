"""The Ray path: `ray.data` reads the units, a `map_batches` actor pool holds one loaded engine per worker.

Each actor is a `UnitScorer` (the model file is loaded once per worker, on its GPU when it has one) and
writes the Parquet shards of its batches itself; the driver only streams the small per-batch summaries for
progress. Actors are restarted and their batch retried when a worker dies; what was written before stays
written, and a rerun skips it.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable

from anomaly_gui.batch.scoring import UnitScorer
from anomaly_gui.batch.shards import BatchError
from anomaly_gui.batch.units import Unit

log = logging.getLogger(__name__)
MAX_BLOCKS = 2000


def require_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise BatchError("--ray needs Ray: pip install 'anomaly_gui[scale]' (ray[data], pyarrow)") from exc
    return ray


def package_root() -> str:
    """The folder holding this `anomaly_gui` package (put on local workers' PYTHONPATH)."""
    return str(Path(__file__).resolve().parents[2])


def connect(address: str, num_cpus: int | None = None) -> bool:
    """Start or join Ray; True when this call started it (then the caller shuts it down).

    "local": a Ray of this machine only; "auto": the cluster this machine belongs to (RAY_ADDRESS or a
    running `ray start`), else a local one; anything else is a cluster address (ray://host:10001 or
    host:6379)."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    # local workers import this very package and see the app's settings (weights folder, offline mode)
    env_vars = {k: v for k, v in os.environ.items() if k.startswith("ANOMALY_GUI_")}
    env_vars["PYTHONPATH"] = os.pathsep.join(p for p in (package_root(), os.environ.get("PYTHONPATH", "")) if p)
    env = {"env_vars": env_vars}
    kwargs: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False}
    if address == "local":
        ray.init(num_cpus=num_cpus, runtime_env=env, **kwargs)
    elif address == "auto":
        try:
            ray.init(address="auto", **kwargs)
        except ConnectionError:
            ray.init(num_cpus=num_cpus, runtime_env=env, **kwargs)
    else:
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise BatchError(f"cannot join the Ray cluster at {address!r}: {exc}") from exc
    return True


def run_on_ray(units: list[Unit], config: dict[str, Any], address: str, workers: int, gpus_per_worker: float,
               batch_size: int, seen: Callable[[dict[str, Any]], None]) -> None:
    """Score `units` on an actor pool of `workers` scorers; `seen` gets every batch summary as it arrives."""
    ray = require_ray()
    started = connect(address)
    try:
        ctx = ray.data.DataContext.get_current()
        for name in ("enable_progress_bars", "print_on_execution_start"):
            if hasattr(ctx, name):
                setattr(ctx, name, False)
        cfg = dict(config)
        if not cfg.get("torch_threads"):
            cfg["torch_threads"] = 1  # one CPU per actor: torch must not oversubscribe the node
        # Ray Data restarts a dead actor and retries its batch (max_restarts = max_task_retries = -1 by default)
        remote: dict[str, Any] = {"num_cpus": 1}
        if gpus_per_worker:
            remote["num_gpus"] = float(gpus_per_worker)
        # about one block per batch (a worker that dies redoes little), at most MAX_BLOCKS; a task retried
        # after a worker died finds the batches it had finished (their markers) and does not score them again
        n_blocks = min(MAX_BLOCKS, max(1, -(-len(units) // max(1, batch_size))))
        ds = ray.data.from_items(units, override_num_blocks=n_blocks)
        ds = ds.map_batches(UnitScorer, fn_constructor_kwargs={"config": cfg}, batch_size=max(1, batch_size),
                            compute=ray.data.ActorPoolStrategy(size=max(1, int(workers))),
                            batch_format="numpy", **remote)
        try:
            for summary in ds.iter_batches(batch_size=None, batch_format="numpy"):
                seen(summary)
        except Exception as exc:
            raise BatchError(f"the Ray job stopped ({type(exc).__name__}: {str(exc).splitlines()[0][:300]}); "
                             "what was written is kept: run the same command again to finish") from exc
    finally:
        if started:
            ray.shutdown()
