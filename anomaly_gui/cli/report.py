"""`anomaly-gui report PROJECT --out FILE [--run ID] [--format html|pdf]`: a report without a display."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write a self-contained HTML or a PDF report of a project's run (no display needed)")
    p.add_argument("project", type=Path, help="project file (.agproj)")
    p.add_argument("--out", type=Path, required=True, help="report file (.html or .pdf)")
    p.add_argument("--run", type=int, default=None, help="run id (default: the latest run with scores)")
    p.add_argument("--format", dest="fmt", choices=("html", "pdf"), default=None, help="default: from the file suffix")
    p.add_argument("--threshold", type=float, default=None, help="decision threshold (default: the run's)")
    p.add_argument("--min-area", type=float, default=None, help="minimum defect area in image pixels (default: the run's)")
    p.add_argument("--gallery", type=int, default=8, help="items in each of the worst/best galleries (default 8)")
    p.add_argument("--truth", choices=("analyst", "dataset"), default="analyst",
                   help="ground truth: the analyst's labels where given (default) or the dataset's only")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def open_existing(path: Path):
    """Open a project that must exist (a typo must not create an empty project)."""
    from anomaly_gui.core.errors import DataError
    from anomaly_gui.core.project import PROJECT_SUFFIX, open_project

    p = path if path.suffix else path.with_suffix(PROJECT_SUFFIX)
    if not p.is_file():
        raise DataError(p, "project file not found")
    return open_project(p)


def run(args: argparse.Namespace) -> int:
    from anomaly_gui.core.report import make_report

    with open_existing(args.project) as proj:
        if args.run is not None:
            proj.run(args.run)  # KeyError -> exit 2 with the reason
        result = make_report(proj, args.out, fmt=args.fmt, run_id=args.run, threshold=args.threshold,
                             min_area=args.min_area, n_gallery=args.gallery, overwrite=args.overwrite, truth=args.truth)
    if args.json:
        print(json.dumps({"report": str(result.path), "format": result.format, "n_items": result.n_items}))
    else:
        print(f"wrote {result.path} ({result.n_items} items)", file=sys.stdout)
    return 0
