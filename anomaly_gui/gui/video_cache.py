"""Frame prefetching for playback: a small background thread decodes the frames ahead of the playhead.

Qt-free so that it can be tested and benchmarked without a display. Reads go through the source's own
lock, so the GUI thread may still read a frame that was not prefetched yet (it then decodes it at once).
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from anomaly_gui.core.video_io import FrameSource


class FrameCache:
    """LRU cache of decoded frames filled ahead of the playhead by a daemon thread."""

    def __init__(self, source: FrameSource, capacity: int = 256, ahead: int = 32):
        self.source = source
        self.capacity = max(capacity, ahead + 8)
        self.ahead = ahead
        self._frames: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._target = 0
        self._stop = False
        self._end: int | None = None  # where decoding broke (damaged file), if it did
        self.hits = 0
        self.misses = 0
        self._thread = threading.Thread(target=self._run, name="frame-prefetch", daemon=True)
        self._thread.start()

    def __len__(self) -> int:
        return len(self.source)

    def _put(self, i: int, frame: np.ndarray) -> None:
        self._frames[i] = frame
        self._frames.move_to_end(i)
        while len(self._frames) > self.capacity:
            self._frames.popitem(last=False)

    def get(self, i: int) -> np.ndarray:
        """Frame `i` (decoded now when it is not cached yet); also moves the prefetch window to `i`."""
        with self._lock:
            self._target = i
            self._wake.notify()
            frame = self._frames.get(i)
            if frame is not None:
                self._frames.move_to_end(i)
                self.hits += 1
                return frame
        frame = self.source.read(i)
        with self._lock:
            self.misses += 1
            self._put(i, frame)
        return frame

    def _next_missing(self) -> int | None:
        n = len(self.source) if self._end is None else min(len(self.source), self._end)
        for i in range(self._target, min(n, self._target + self.ahead)):
            if i not in self._frames:
                return i
        return None

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._stop and self._next_missing() is None:
                    self._wake.wait(0.5)
                if self._stop:
                    return
                i = self._next_missing()
            if i is None:
                continue
            try:
                frame = self.source.read(i)
            except (IndexError, OSError, ValueError):
                with self._lock:  # a damaged file ends here; the player reads what exists
                    self._end = i
                continue
            with self._lock:
                self._put(i, frame)

    def wait_ready(self, i: int, timeout: float = 5.0) -> bool:
        """Block until frame i is cached (used by tests and the benchmark)."""
        import time

        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout:
            with self._lock:
                if i in self._frames:
                    return True
            time.sleep(0.002)
        return False

    def close(self) -> None:
        with self._lock:
            self._stop = True
            self._wake.notify_all()
        self._thread.join(timeout=2.0)
