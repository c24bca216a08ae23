"""Exports: annotations (VOC, YOLO, COCO, labelme, mask PNGs) and scores with verdicts (CSV, JSON).

All exports are atomic: a file is written to a temporary name and renamed; a dataset folder is built
in a temporary folder that replaces the target only when complete. An existing target is replaced only
with `overwrite=True` (else `ExportExistsError`); an unwritable place raises `DataError` naming it.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from anomaly_gui.core.export.annotations import EXPORTERS, TITLES, analyst_annotations
from anomaly_gui.core.export.common import (
    ExportExistsError,
    ExportResult,
    atomic_dir,
    atomic_file,
    check_target,
)
from anomaly_gui.core.project import Project

TABLE_FORMATS = {"csv": "Scores and verdicts (CSV)", "json": "Scores and verdicts (JSON)"}

__all__ = [
    "EXPORTERS", "TABLE_FORMATS", "ExportExistsError", "ExportResult", "annotation_formats", "export_annotations",
    "export_scores", "scores_table",
]


def annotation_formats() -> dict[str, str]:
    """{name: title} of the annotation exporters."""
    return dict(TITLES)


def export_annotations(project: Project, fmt: str, out: str | Path, item_ids: Sequence[int] | None = None,
                       overwrite: bool = False, split: str | None = None, only_annotated: bool = False,
                       include_model: bool = False) -> ExportResult:
    """Write the analyst's annotations of the chosen items as a dataset folder in format `fmt`.

    Rejected model output is never exported; unreviewed model output only with `include_model`.
    """
    if fmt not in EXPORTERS:
        raise KeyError(f"unknown export format {fmt!r}; known: {', '.join(sorted(EXPORTERS))}")
    target = check_target(out, overwrite)
    items = project.items(split=split, ids=item_ids, with_annotations=True)
    for it in items:
        it.annotations = [a for a in it.annotations if a.status != "rejected"] if include_model else analyst_annotations(it.annotations)
    if only_annotated:
        items = [it for it in items if it.annotations]
    classes = list(project.label_classes())
    result = ExportResult(format=fmt, path=target)
    with atomic_dir(target) as tmp:
        EXPORTERS[fmt](items, classes, tmp, result)
    return result


def scores_table(project: Project, run_id: int | None = None, threshold: float | None = None,
                 min_area: float | None = None, truth: str = "analyst") -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(rows, header) for the scores export: one row per item with score, decision, truth, verdict."""
    from anomaly_gui.core.report.data import run_evaluation

    ev = run_evaluation(project, run_id, threshold, min_area, truth=truth)
    header = {
        "project": str(project.path),
        "run_id": ev.run.id if ev.run else None,
        "engine": ev.run.engine if ev.run else None,
        "threshold": ev.threshold,
        "min_area": ev.min_area,
        "metrics": ev.metrics,
        "confusion": ev.confusion,
    }
    return [r.to_dict() for r in ev.rows], header


def export_scores(project: Project, out: str | Path, fmt: str | None = None, run_id: int | None = None,
                  threshold: float | None = None, min_area: float | None = None, overwrite: bool = False,
                  truth: str = "analyst") -> ExportResult:
    """Scores, decisions and verdicts as CSV (one row per item) or JSON (rows plus run and metrics)."""
    target = check_target(out, overwrite)
    fmt = fmt or target.suffix.lstrip(".").lower()
    if fmt not in TABLE_FORMATS:
        raise KeyError(f"unknown table format {fmt!r}; known: {', '.join(TABLE_FORMATS)}")
    rows, header = scores_table(project, run_id, threshold, min_area, truth)
    if fmt == "csv":
        buf = io.StringIO()
        fields = list(rows[0]) if rows else ["item_id", "path", "score", "predicted", "truth", "verdict", "verified"]
        w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})
        text = buf.getvalue()
    else:
        text = json.dumps({**header, "items": rows}, indent=1)
    with atomic_file(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return ExportResult(format=fmt, path=target, n_items=len(rows), files=[target])
