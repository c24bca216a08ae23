"""Shared QThread worker machinery: progress with time left, cancel, errors to the user and the log.

Usage (GUI thread):
    job = start_job(fn, *args, title="Import", parent=window)   # fn(ctx, *args) -> result
    job.result.connect(...); job.failed.connect(...)
`fn` runs in a QThread with a `RunContext` (progress, is_cancelled, log); results come back by signal.
One job per `kind` runs at a time (`JobRegistry.busy(kind)`).
"""
from __future__ import annotations

import logging
import time
import traceback
from typing import Any, Callable

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from anomaly_gui.core.errors import AnomalyGuiError
from anomaly_gui.engines.base import Cancelled, RunContext

log = logging.getLogger(__name__)


def format_eta(done: int, total: int, elapsed: float) -> str:
    """'12 s left' style estimate from linear progress; '' when it cannot be told yet."""
    if done <= 0 or total <= 0 or done >= total or elapsed < 0.5:
        return ""
    left = elapsed * (total - done) / done
    if left < 60:
        return f"{left:.0f} s left"
    if left < 3600:
        return f"{left / 60:.0f} min left"
    return f"{left / 3600:.1f} h left"


class Worker(QObject):
    """Runs `fn(ctx, *args, **kwargs)` in its thread and reports through signals only."""

    progress = Signal(int, int, str)  # done, total, message (with time left appended)
    logged = Signal(dict)  # training log entries (epoch, loss, metric ...)
    result = Signal(object)
    failed = Signal(str)
    cancelled = Signal()
    finished = Signal()

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any):
        super().__init__()
        self._fn, self._args, self._kwargs = fn, args, kwargs
        self._cancel = False
        self._t0 = 0.0
        self._last_emit = 0.0

    def cancel(self) -> None:
        self._cancel = True

    def is_cancelled(self) -> bool:
        return self._cancel

    def _progress(self, done: int, total: int, msg: str) -> None:
        now = time.perf_counter()
        if done < total and now - self._last_emit < 0.05:
            return  # at most 20 updates a second: the GUI thread stays free
        self._last_emit = now
        eta = format_eta(done, total, now - self._t0)
        self.progress.emit(int(done), int(total), f"{msg} ({eta})" if eta else msg)

    @Slot()
    def run(self) -> None:
        self._t0 = time.perf_counter()
        ctx = RunContext(progress=self._progress, is_cancelled=self.is_cancelled, log=self.logged.emit)
        try:
            out = self._fn(ctx, *self._args, **self._kwargs)
        except Cancelled:
            self.cancelled.emit()
        except AnomalyGuiError as exc:
            log.warning("%s", exc)
            self.failed.emit(str(exc))
        except Exception as exc:  # shown in a dialog and logged with its traceback
            log.error("worker failed:\n%s", traceback.format_exc())
            self.failed.emit(f"{type(exc).__name__}: {exc}")
        else:
            self.result.emit(out)
        finally:
            self.finished.emit()


class Job(QObject):
    """A worker and its thread; keeps both alive until the thread has finished."""

    progress = Signal(int, int, str)
    logged = Signal(dict)
    result = Signal(object)
    failed = Signal(str)
    cancelled = Signal()
    finished = Signal()

    def __init__(self, fn: Callable[..., Any], *args: Any, title: str = "", kind: str = "", **kwargs: Any):
        super().__init__()
        self.title = title
        self.kind = kind or title
        self.thread = QThread()
        self.thread.setObjectName(f"job:{self.kind}")
        self.worker = Worker(fn, *args, **kwargs)
        self.worker.moveToThread(self.thread)
        self.thread.started.connect(self.worker.run)
        for name in ("progress", "logged", "result", "failed", "cancelled"):
            getattr(self.worker, name).connect(getattr(self, name))
        # Direct: quit from the worker's own thread, so a GUI thread blocked in wait() is released.
        self.worker.finished.connect(self.thread.quit, Qt.ConnectionType.DirectConnection)
        self.thread.finished.connect(self._on_thread_finished)
        self.running = False

    def start(self) -> "Job":
        self.running = True
        self.thread.start()
        return self

    def cancel(self) -> None:
        self.worker.cancel()

    def wait(self, ms: int = 30000) -> bool:
        return self.thread.wait(ms)

    def _on_thread_finished(self) -> None:
        self.running = False
        self.finished.emit()
        JOBS.discard(self)


class JobRegistry:
    """Keeps running jobs referenced and enforces one job per kind."""

    def __init__(self) -> None:
        self._jobs: list[Job] = []

    def add(self, job: Job) -> None:
        self._jobs.append(job)

    def discard(self, job: Job) -> None:
        if job in self._jobs:
            self._jobs.remove(job)

    def busy(self, kind: str) -> bool:
        return any(j.kind == kind and j.running for j in self._jobs)

    def running(self) -> list[Job]:
        return [j for j in self._jobs if j.running]

    def cancel_all(self, wait_ms: int = 5000) -> None:
        for j in list(self._jobs):
            j.cancel()
        for j in list(self._jobs):
            j.wait(wait_ms)


JOBS = JobRegistry()


class JobBusyError(AnomalyGuiError):
    pass


def start_job(fn: Callable[..., Any], *args: Any, title: str = "", kind: str = "", **kwargs: Any) -> Job:
    """Start `fn(ctx, *args, **kwargs)` in a worker thread. Raises JobBusyError if a job of `kind` runs."""
    kind = kind or title
    if kind and JOBS.busy(kind):
        raise JobBusyError(f"a {kind} job is already running; wait for it or cancel it")
    job = Job(fn, *args, title=title, kind=kind, **kwargs)
    JOBS.add(job)
    return job.start()
