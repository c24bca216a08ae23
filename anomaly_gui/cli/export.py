"""`anomaly-gui export PROJECT --format FMT --out PATH`: annotations (voc, yolo, coco, labelme, masks)
or scores and verdicts (csv, json), without a display."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from anomaly_gui.core.export import TABLE_FORMATS, annotation_formats

    choices = sorted(annotation_formats()) + sorted(TABLE_FORMATS)
    p = sub.add_parser("export", help="export annotations or scores and verdicts of a project")
    p.add_argument("project", type=Path, help="project file (.agproj)")
    p.add_argument("--format", dest="fmt", required=True, choices=choices,
                   help="annotations: voc, yolo, coco, labelme, masks (a folder); scores: csv, json (a file)")
    p.add_argument("--out", type=Path, required=True, help="output folder (annotations) or file (scores)")
    p.add_argument("--split", default=None, help="only items of this split")
    p.add_argument("--only-annotated", action="store_true", help="annotations: skip items without shapes")
    p.add_argument("--include-model", action="store_true", help="annotations: also unreviewed model output")
    p.add_argument("--run", type=int, default=None, help="scores: run id (default: the latest with scores)")
    p.add_argument("--threshold", type=float, default=None, help="scores: decision threshold (default: the run's)")
    p.add_argument("--min-area", type=float, default=None, help="scores: minimum defect area (default: the run's)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file or folder")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from anomaly_gui.cli.report import open_existing
    from anomaly_gui.core.export import TABLE_FORMATS, export_annotations, export_scores

    with open_existing(args.project) as proj:
        if args.fmt in TABLE_FORMATS:
            result = export_scores(proj, args.out, args.fmt, run_id=args.run, threshold=args.threshold,
                                   min_area=args.min_area, overwrite=args.overwrite)
        else:
            result = export_annotations(proj, args.fmt, args.out, overwrite=args.overwrite, split=args.split,
                                        only_annotated=args.only_annotated, include_model=args.include_model)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps({"format": result.format, "out": str(result.path), "n_items": result.n_items,
                          "n_annotations": result.n_annotations, "notes": result.notes}))
    else:
        print(result.summary())
    return 0
