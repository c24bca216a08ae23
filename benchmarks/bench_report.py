"""Reports and exports: seconds to write the HTML and PDF reports, the scores tables and each annotation format.

With `--project FILE` the newest run with scores of that project is used as it is (e.g. a real PatchCore run).
Without it, a project is made from a real MVTec-layout folder (default: the shared `mvtec_screw` subset,
80 images of 1024×1024) with one run whose raw maps (64×64) are smoothed noise plus a blob on the defect
images ("maps": "synthetic" in the output), and two user boxes per defect image. Prints one JSON object.

    python benchmarks/bench_report.py [--project FILE | --data FOLDER] [--gallery 8]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def make_project(root: Path, data: Path):  # noqa: ANN201 - Project
    import cv2
    import numpy as np

    from anomaly_gui.core.formats.base import Annotation
    from anomaly_gui.core.importer import import_into_project
    from anomaly_gui.core.project import open_project

    proj = open_project(root / "bench.agproj")
    import_into_project(proj, data)
    items = proj.items(split="test")
    rng = np.random.default_rng(0)
    run = proj.create_run("bench", "image", {"maps": "synthetic"})
    maps, scores = [], []
    for it in items:
        m = cv2.GaussianBlur(rng.random((64, 64)).astype(np.float32), (0, 0), 2.0)
        if it.is_anomalous:
            cv2.circle(m, (int(rng.integers(10, 54)), int(rng.integers(10, 54))), 5, float(m.max() + 0.3), -1)
            proj.add_annotations(int(it.id), [
                Annotation("box", "defect", {"x1": 100.0, "y1": 120.0, "x2": 300.5, "y2": 260.0}, source="user"),
                Annotation("polygon", "defect", {"points": [[500, 500], [620, 520], [580, 640]]}, source="user")])
        maps.append(m)
        scores.append(float(m.max()))
    proj.save_scores(run.id, [int(it.id) for it in items], scores, maps)
    proj.update_run(run.id, status="done", threshold=float(np.median(scores)), min_area=500.0, finished=time.time())
    return proj


CPU: dict[str, float] = {}


def timed(fn, *args, **kw) -> float:  # noqa: ANN001
    """Wall seconds of one call (its CPU seconds are kept in CPU, for busy shared machines)."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn(*args, **kw)
    CPU[getattr(fn, "__name__", "call")] = CPU.get(getattr(fn, "__name__", "call"), 0.0) + time.process_time() - c0
    return round(time.perf_counter() - t0, 3)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--project", type=Path, default=None)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "mvtec_screw")
    ap.add_argument("--gallery", type=int, default=8)
    args = ap.parse_args()
    from anomaly_gui.core.export import annotation_formats, export_annotations, export_scores
    from anomaly_gui.core.project import open_project
    from anomaly_gui.core.report import make_report

    tmp = Path(tempfile.mkdtemp(prefix="bench_report_"))
    try:
        if args.project is not None:
            proj = open_project(args.project)
            maps = "from the project"
        else:
            if not args.data.is_dir():
                print(f"bench_report: dataset {args.data} not found", file=sys.stderr)
                return 2
            proj = make_project(tmp, args.data)
            maps = "synthetic"
        out: dict[str, object] = {"n_items": proj.count_items(), "maps": maps, "gallery": args.gallery}
        out["report_html_s"] = timed(make_report, proj, tmp / "r.html", n_gallery=args.gallery)
        html_cpu = CPU["make_report"]
        out["report_pdf_s"] = timed(make_report, proj, tmp / "r.pdf", n_gallery=args.gallery)
        out["report_html_cpu_s"] = round(html_cpu, 3)
        out["report_pdf_cpu_s"] = round(CPU["make_report"] - html_cpu, 3)
        out["report_html_bytes"] = (tmp / "r.html").stat().st_size
        out["report_pdf_bytes"] = (tmp / "r.pdf").stat().st_size
        out["scores_csv_s"] = timed(export_scores, proj, tmp / "s.csv")
        out["scores_json_s"] = timed(export_scores, proj, tmp / "s.json")
        for fmt in annotation_formats():
            out[f"export_{fmt}_s"] = timed(export_annotations, proj, fmt, tmp / fmt)
        proj.close()
        print(json.dumps(out))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
