"""Progress of a batch job: counts, rate and time left, reported at most every `every` seconds."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable


def fmt_seconds(s: float) -> str:
    if s != s or s == float("inf"):
        return "?"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s" if m else f"{sec}s"


@dataclass
class Progress:
    """Counts units done in this run; `line()` is what the terminal shows."""

    total: int  # units to score in this run (already-written ones excluded)
    skipped: int = 0  # units found already written
    report: Callable[["Progress"], None] | None = None
    every: float = 1.0
    done: int = 0
    rows: int = 0
    anomalous: int = 0
    errors: int = 0
    started: float = field(default_factory=time.perf_counter)
    _last: float = 0.0

    def update(self, summary: dict[str, Any]) -> None:
        """Add one scorer summary (columns unit, rows, anomalous, errors)."""
        self.done += len(summary["unit"])
        self.rows += int(sum(summary["rows"]))
        self.anomalous += int(sum(summary["anomalous"]))
        self.errors += int(sum(summary["errors"]))
        now = time.perf_counter()
        if self.report is not None and (now - self._last >= self.every or self.done >= self.total):
            self._last = now
            self.report(self)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    @property
    def rate(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta(self) -> float:
        return (self.total - self.done) / self.rate if self.rate > 0 else float("inf")

    def line(self) -> str:
        pct = 100.0 * self.done / self.total if self.total else 100.0
        return (f"scored {self.done}/{self.total} ({pct:.0f}%), {self.anomalous} anomalous, {self.errors} errors, "
                f"{self.rate:.2f} items/s, {fmt_seconds(self.eta)} left")
