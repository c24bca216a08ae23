"""Browser at scale: import a synthetic 10,000-image folder through the GUI, first paint of the grid, memory.

Makes N small PNGs (train/good, test/good, test/<defect>) in a temporary folder, then in a real
MainWindow (offscreen unless QT_QPA_PLATFORM is set): imports the folder through the worker and waits
for the browser to hold every item; re-opens the project and times the first paint of the thumbnail
grid and the time until the visible thumbnails are shown (cold cache, then warm disk cache); scrolls to
the middle and times the visible thumbnails again; measures the longest GUI-thread stall meanwhile
(a 5 ms timer) and the process RSS. Prints one JSON object.

    python benchmarks/bench_browser.py [--n 10000] [--size 48]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def rss_mb() -> float:
    """Resident memory of this process in MB (Linux /proc; peak RSS elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def make_folder(root: Path, n: int, size: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    base = (rng.random((size, size, 3)) * 120 + 60).astype(np.uint8)
    for i in range(n):
        split, label = ("train", "good") if i < n * 0.6 else ("test", ["good", "scratch", "hole", "stain"][i % 4])
        img = np.roll(base, i % size, axis=1)
        if label != "good":
            img = img.copy()
            img[size // 3 : size // 3 + 3, 4 : size - 4] = 250
        d = root / split / label
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{i:05d}.png", compress_level=1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000, help="number of images")
    ap.add_argument("--size", type=int, default=48, help="image side in pixels")
    ap.add_argument("--keep", type=Path, default=None, help="use / keep the data and project in this folder")
    args = ap.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench_browser_"))
    os.environ.setdefault("ANOMALY_GUI_SETTINGS_DIR", str(work / "settings"))
    data = work / "data"
    t = time.perf_counter()
    if not (data.is_dir() and sum(1 for _ in data.rglob("*.png")) == args.n):
        shutil.rmtree(data, ignore_errors=True)
        make_folder(data, args.n, args.size)
    make_s = time.perf_counter() - t
    project_file = work / "bench.agproj"
    for p in (project_file, Path(f"{project_file}-wal"), Path(f"{project_file}-shm")):
        p.unlink(missing_ok=True)
    shutil.rmtree(Path(f"{project_file}-cache"), ignore_errors=True)

    from PySide6.QtCore import QEvent, QObject, QTimer
    from PySide6.QtWidgets import QApplication

    from anomaly_gui.gui.app import make_application
    from anomaly_gui.gui.main_window import MainWindow
    from anomaly_gui.gui.state import AppState

    app = make_application()
    win = MainWindow(AppState())
    win.show()
    app.processEvents()
    rss_start = rss_mb()

    def spin_until(cond, timeout: float = 600.0) -> float:
        t0 = time.perf_counter()
        while not cond():
            app.processEvents()
            time.sleep(0.001)
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError("benchmark step timed out")
        return time.perf_counter() - t0

    # GUI-thread stalls: the longest gap between ticks of a 5 ms timer
    gaps: list[float] = []
    last = [time.perf_counter()]

    def tick() -> None:
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(tick)
    timer.start()

    # 1. import through the worker (progress dialog, DB write, browser reload)
    win.open_project(project_file)
    t0 = time.perf_counter()
    win.import_path(data)
    spin_until(lambda: not win.importer.busy() and win.importer.last_result is not None)
    spin_until(lambda: win.browser.model.rowCount() == args.n)
    import_s = time.perf_counter() - t0
    import_stall = max(gaps) if gaps else 0.0
    rss_after_import = rss_mb()

    class PaintWatch(QObject):
        def __init__(self) -> None:
            super().__init__()
            self.first: float | None = None

        def eventFilter(self, obj, ev) -> bool:  # noqa: N802 (Qt name)
            if ev.type() == QEvent.Type.Paint and self.first is None and win.browser.model.rowCount() > 0:
                self.first = time.perf_counter()
            return False

    def visible_ready() -> bool:
        grid, model = win.browser.grid, win.browser.model
        vp = grid.viewport().rect()
        first = grid.indexAt(vp.topLeft() + vp.topLeft().__class__(8, 8))
        if not first.isValid():
            return False
        row, shown = first.row(), 0
        while row < model.rowCount():
            r = grid.visualRect(model.index(row))
            if r.top() > vp.bottom():
                break
            if r.intersects(vp):
                shown += 1
                if not model.has_thumbnail(model.item_id(row)):
                    return False
            row += 1
        return shown > 0

    def reopen(label: str) -> dict:
        win.state.set_project(None)
        app.processEvents()
        watch = PaintWatch()
        win.browser.grid.viewport().installEventFilter(watch)
        gaps.clear()
        last[0] = time.perf_counter()
        t0 = time.perf_counter()
        win.open_project(project_file)
        spin_until(lambda: watch.first is not None, 60)
        first_paint = watch.first - t0  # type: ignore[operator]
        spin_until(visible_ready, 120)
        ready = time.perf_counter() - t0
        win.browser.grid.viewport().removeEventFilter(watch)
        return {f"{label}_first_paint_ms": round(first_paint * 1000, 1),
                f"{label}_visible_thumbnails_ms": round(ready * 1000, 1),
                f"{label}_max_gui_stall_ms": round(max(gaps) * 1000, 1) if gaps else 0.0}

    cold = reopen("cold")
    warm = reopen("warm")
    # 2. scroll to the middle: visible thumbnails again (cold for those rows)
    gaps.clear()
    last[0] = time.perf_counter()
    t0 = time.perf_counter()
    sb = win.browser.grid.verticalScrollBar()
    sb.setValue(sb.maximum() // 2)
    spin_until(visible_ready, 120)
    scroll_ms = (time.perf_counter() - t0) * 1000
    scroll_stall = max(gaps) * 1000 if gaps else 0.0
    # 3. keyboard navigation: D through 200 items (viewer loads each image)
    t0 = time.perf_counter()
    for _ in range(200):
        win.browser.move(+1)
        app.processEvents()
    nav_ms = (time.perf_counter() - t0) * 1000 / 200
    timer.stop()
    n_cached = sum(1 for _ in (Path(f"{project_file}-cache") / "thumbs").rglob("*.jpg"))
    out = {
        "benchmark": "browser",
        "n_images": args.n,
        "image_size": args.size,
        "qpa_platform": QApplication.platformName(),
        "make_folder_s": round(make_s, 2),
        "import_s": round(import_s, 2),
        "import_items_per_s": round(args.n / import_s, 1),
        "import_max_gui_stall_ms": round(import_stall * 1000, 1),
        **cold,
        **warm,
        "scroll_middle_visible_thumbnails_ms": round(scroll_ms, 1),
        "scroll_max_gui_stall_ms": round(scroll_stall, 1),
        "next_item_ms": round(nav_ms, 2),
        "thumbnails_cached_on_disk": n_cached,
        "rss_start_mb": round(rss_start, 1),
        "rss_after_import_mb": round(rss_after_import, 1),
        "rss_end_mb": round(rss_mb(), 1),
        "rss_import_delta_mb": round(rss_after_import - rss_start, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
    }
    win.close()
    if win.state.project is not None:
        win.state.project.close()
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
