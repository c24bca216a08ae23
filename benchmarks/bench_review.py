"""Review sliders at 1024×1024: latency of one threshold / min-area update, from cached raw maps.

Makes a project with N items whose cached raw maps are 1024×1024 (smooth noise plus blobs, as a model
resolution of 1024 would give), one finished run, and opens the real MainWindow (offscreen unless
QT_QPA_PLATFORM is set) with the Review and Metrics panels. Then moves the threshold slider and the
min-area spin box step by step, as a user drags, and times each full update (every item's verdict,
`state.predictions`, the current item's kept-region outline in the viewer, histogram line, metrics
counts, including Qt's event processing). Also times the Qt-free parts alone. Prints one JSON object.

    python benchmarks/bench_review.py [--n 60] [--side 1024] [--steps 60]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def make_project(root: Path, n: int, side: int):
    import cv2
    import numpy as np

    from anomaly_gui.core.formats.base import DatasetItem
    from anomaly_gui.core.imageio import write_image
    from anomaly_gui.core.project import open_project
    from anomaly_gui.core.run_files import SPLIT_FILE

    rng = np.random.default_rng(0)
    proj = open_project(root / "bench.agproj")
    items = []
    for k in range(n):
        p = root / "img" / f"{k:04d}.png"
        img = (rng.random((side, side)) * 40 + 100).astype(np.uint8) if k == 0 else np.full((8, 8), 120, np.uint8)
        write_image(p, img)
        items.append(DatasetItem(path=str(p), split="test", label="defect" if k % 2 else "good",
                                 is_anomalous=bool(k % 2), width=side, height=side))
    ids = proj.add_items(items)
    run = proj.create_run("bench", "image", {})
    (proj.run_dir(run.id) / SPLIT_FILE).write_text(json.dumps({"train": [], "val": []}))
    maps, scores = [], []
    for k in range(n):
        m = cv2.GaussianBlur(rng.random((side // 16, side // 16)).astype(np.float32), (0, 0), 1.5)
        m = cv2.resize(m, (side, side), interpolation=cv2.INTER_CUBIC)
        if k % 2:
            for _ in range(1 + k % 4):
                x, y, r = rng.integers(50, side - 50), rng.integers(50, side - 50), rng.integers(5, 60)
                cv2.circle(m, (int(x), int(y)), int(r), float(m.max() + 0.2 + 0.05 * (k % 5)), -1)
        maps.append(m)
        scores.append(float(m.max()))
    proj.save_scores(run.id, ids, scores, maps, [{"image_size": [side, side]}] * n)
    proj.update_run(run.id, status="done", threshold=float(np.median(scores)), min_area=0.0, finished=time.time())
    return proj, run.id, ids


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--side", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=60)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_review_"))
    os.environ.setdefault("ANOMALY_GUI_SETTINGS_DIR", str(tmp / "settings"))
    try:
        from PySide6.QtWidgets import QApplication

        from anomaly_gui.core import postprocess as pp
        from anomaly_gui.gui.main_window import MainWindow
        from anomaly_gui.gui.review_model import ReviewData
        from anomaly_gui.gui.state import AppState

        app = QApplication.instance() or QApplication(sys.argv[:1])
        t0 = time.perf_counter()
        proj, run_id, ids = make_project(tmp, args.n, args.side)
        make_s = time.perf_counter() - t0
        state = AppState()
        win = MainWindow(state)
        win.resize(1400, 900)
        win.show()
        t0 = time.perf_counter()
        state.set_project(proj)
        state.set_current_run(run_id)
        rp = win.panels["review"]
        while (rp.data is None or rp.data.run_id != run_id) and time.perf_counter() - t0 < 300:
            app.processEvents()
            time.sleep(0.005)
        load_s = time.perf_counter() - t0
        state.set_current_item(ids[1])
        app.processEvents()
        assert rp.data is not None and rp.data.run_id == run_id

        def timed(fn) -> float:
            t = time.perf_counter()
            fn()
            app.processEvents()
            return (time.perf_counter() - t) * 1000

        slider = rp.threshold.slider
        lo, hi = slider.maximum() // 4, slider.maximum() * 3 // 4
        steps = [lo + (hi - lo) * k // args.steps for k in range(args.steps)]
        thr_ms = [timed(lambda v=v: slider.setValue(v)) for v in steps + steps[::-1]]
        area_ms = [timed(lambda v=v: rp.min_area.spin.setValue(v)) for v in range(0, 4000, max(1, 4000 // args.steps))]
        # the Qt-free parts alone
        data = ReviewData(proj, run_id)
        m = data.map(ids[1])
        ts = [data.range.lo + (data.range.hi - data.range.lo) * k / args.steps for k in range(args.steps)]
        mask_ms, verdict_ms, verdict_area_ms = [], [], []
        for t in ts:
            s = time.perf_counter(); pp.threshold_mask(m, t, 500.0, (args.side, args.side)); mask_ms.append((time.perf_counter() - s) * 1000)
            s = time.perf_counter(); data.verdicts(t, 0.0); verdict_ms.append((time.perf_counter() - s) * 1000)
            s = time.perf_counter(); data.verdicts(t, 500.0 + t); verdict_area_ms.append((time.perf_counter() - s) * 1000)
        out = {
            "n_items": args.n, "map_side": args.side, "steps": len(thr_ms),
            "threshold_update_ms_median": round(statistics.median(thr_ms), 2),
            "threshold_update_ms_p95": round(pct(thr_ms, 0.95), 2),
            "min_area_update_ms_median": round(statistics.median(area_ms), 2),
            "min_area_update_ms_p95": round(pct(area_ms, 0.95), 2),
            "mask_1024_ms_median": round(statistics.median(mask_ms), 2),
            "all_verdicts_ms_median": round(statistics.median(verdict_ms), 3),
            "all_verdicts_new_min_area_ms_median": round(statistics.median(verdict_area_ms), 2),
            "run_load_s": round(load_s, 2), "make_s": round(make_s, 1),
        }
        win.close()
        proj.close()
        print(json.dumps(out))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
