"""Background preparation of training batches: while the network trains on one batch (torch releases the
GIL inside its kernels), a thread cuts and augments the next ones from the images decoded once at the
start of training. Exceptions in the producer are raised in the consumer; `close` stops the thread."""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable


class BatchPrefetcher:
    """Iterate `make()` results prepared `depth` ahead in one daemon thread (`make` must be thread-safe
    with respect to the training loop: it only reads the cached images and uses its own RNG)."""

    _DONE = object()

    def __init__(self, make: Callable[[], Any], depth: int = 2):
        self._make = make
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="batch-prefetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                item = self._make()
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as exc:  # handed to the consumer
            self._queue.put(exc)

    def next(self) -> Any:
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        self._thread.join(timeout=5)

    def __enter__(self) -> "BatchPrefetcher":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
