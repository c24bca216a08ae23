"""`anomaly-gui import PATH --project FILE`: import a dataset without a display."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="import a dataset folder or video into a project (no display needed)")
    p.add_argument("path", type=Path, help="dataset folder, video file or annotation file")
    p.add_argument("--project", type=Path, required=True, help="project file (.agproj); created if missing")
    p.add_argument("--format", dest="fmt", default=None, help="force a format instead of detecting it")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from anomaly_gui.core.importer import import_into_project
    from anomaly_gui.core.project import open_project

    with open_project(args.project) as proj:
        result = import_into_project(proj, args.path, fmt=args.fmt)
    for problem in result.problems:
        print(f"warning: {problem}", file=sys.stderr)
    if args.json:
        print(json.dumps({"format": result.format, "n_items": len(result.items), "problems": [str(p) for p in result.problems],
                          "project": str(Path(args.project).resolve())}))
    else:
        print(result.summary())
    return 0
