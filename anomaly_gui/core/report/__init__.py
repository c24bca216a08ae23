"""Reports of a project and a run: one self-contained HTML file or a PDF, made without Qt or a display.

`make_report(project, out)` gathers the dataset summary, the run (engine, parameters), threshold and
minimum area, metrics with ROC/PR curves and the score histogram, confusion counts, galleries of the
N highest- and lowest-scoring items with their anomaly regions outlined, and a table of every item.
"""
from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from anomaly_gui import __version__
from anomaly_gui.core.export.common import ExportResult, atomic_file, check_target
from anomaly_gui.core.project import Project
from anomaly_gui.core.report.data import (
    RunEvaluation,
    dataset_summary,
    run_evaluation,
    gallery,
    jpeg_bytes,
    overlay_thumbnail,
)

REPORT_FORMATS = {"html": "Report (self-contained HTML)", "pdf": "Report (PDF)"}
ProgressFn = Callable[[int, int, str], None]


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return str(v)


def _when(t: float | None) -> str:
    return "-" if not t else _dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M")


def build_context(project: Project, run_id: int | None = None, threshold: float | None = None,
                  min_area: float | None = None, n_gallery: int = 8, truth: str = "analyst",
                  progress: ProgressFn | None = None) -> dict[str, Any]:
    """Everything the HTML and PDF renderers show (plain data; PNGs as bytes)."""
    from anomaly_gui.core.report.charts import curves_figure, figure_png

    tick = progress or (lambda d, t, m: None)
    tick(0, 4, "evaluating")
    ev = run_evaluation(project, run_id, threshold, min_area, truth=truth)
    ds = dataset_summary(project)
    run = ev.run
    tick(1, 4, "drawing curves")
    charts_png = figure_png(curves_figure(ev))
    galleries = []
    picks = [("worst", f"Worst {n_gallery}: highest scores", gallery(ev, n_gallery, worst=True)),
             ("best", f"Best {n_gallery}: lowest scores", gallery(ev, n_gallery, worst=False))]
    total = sum(len(p[2]) for p in picks)
    done = 0
    for key, title, rows in picks:
        tiles = []
        for r in rows:
            tiles.append({"name": r.name, "jpeg": jpeg_bytes(overlay_thumbnail(project, ev, r)), "score": _fmt(r.score),
                          "truth": _truth_text(r.truth), "outcome": r.outcome, "predicted": _pred_text(r.predicted),
                          "verdict": r.verdict, "verified": r.verified, "item_id": r.item_id})
            done += 1
            tick(done, max(total, 1), "drawing galleries")
        galleries.append({"key": key, "title": title, "tiles": tiles})
    m = ev.metrics
    metric_rows = [(k, _fmt(m.get(k))) for k in ("image_auroc", "average_precision", "f1_max", "f1_max_threshold",
                                                  "accuracy", "precision", "recall", "f1") if k in m]
    metric_rows += [("measured on", f"{m.get('split', 'all')} split" if m.get("split") != "all" else "every scored item"),
                    ("items measured", str(m.get("n_items", 0))), ("with ground truth", str(m.get("n_labelled", 0))),
                    ("anomalous / normal", f"{m.get('n_anomalous', 0)} / {m.get('n_normal', 0)}")]
    run_rows: list[tuple[str, str]] = []
    params: list[tuple[str, str]] = []
    if run is not None:
        run_rows = [("run", run.title), ("engine", run.engine), ("task", run.task), ("status", run.status),
                    ("created", _when(run.created)), ("finished", _when(run.finished)),
                    ("model file", run.model_dir or "-")]
        run_rows += [(f"run {k}", _fmt(v)) for k, v in sorted(run.metrics.items()) if not isinstance(v, (list, dict))]
        params = [(k, _fmt(v)) for k, v in sorted(run.params.items())]
    c = ev.confusion
    cards = [{"label": "items", "value": ds["n_items"]}]
    if "image_auroc" in m:
        cards.append({"label": "image AUROC", "value": _fmt(m["image_auroc"], 3)})
    if "f1" in m and m["f1"] is not None:
        cards.append({"label": "F1 at threshold", "value": _fmt(m["f1"], 3)})
    if c:
        cards += [{"label": "false positives", "value": c["fp"]}, {"label": "false negatives", "value": c["fn"]}]
    cards.append({"label": "verified by analyst", "value": ds["n_verified"]})
    rows = []
    for r in ev.rows:
        d = r.to_dict()
        d.update(score_text=_fmt(r.score), predicted_text=_pred_text(r.predicted), truth_text=_truth_text(r.truth),
                 area_text=f"{r.defect_area:.0f}" if r.defect_area else "")
        rows.append(d)
    tick(4, 4, "rendering")
    return {
        "title": f"Anomaly report: {project.path.stem}",
        "subtitle": f"{project.path} · {run.title if run else 'no run'} · made {_dt.datetime.now():%Y-%m-%d %H:%M}",
        "cards": cards,
        "dataset": {**ds, "rows": [{"split": s or "-", "label": lab or "-", "n": n} for s, labs in ds["splits"].items() for lab, n in labs.items()]},
        "run": run is not None, "run_rows": run_rows, "params": params,
        "threshold": _fmt(ev.threshold, 6), "min_area": _fmt(ev.min_area),
        "truth_text": "analyst, else dataset" if truth == "analyst" else "the dataset's labels",
        "metric_rows": metric_rows, "confusion": c, "charts_png": charts_png, "galleries": galleries, "rows": rows,
        "footer": f"anomaly_gui {__version__}",
        "evaluation": ev,
    }


def _truth_text(t: bool | None) -> str:
    return "-" if t is None else ("anomalous" if t else "normal")


def _pred_text(p: bool | None) -> str:
    return "-" if p is None else ("anomalous" if p else "normal")


def make_report(project: Project, out: str | Path, fmt: str | None = None, run_id: int | None = None,
                threshold: float | None = None, min_area: float | None = None, n_gallery: int = 8,
                overwrite: bool = False, truth: str = "analyst", progress: ProgressFn | None = None) -> ExportResult:
    """Write the report as HTML or PDF (from `fmt` or the file's suffix), atomically."""
    target = check_target(out, overwrite)
    fmt = (fmt or target.suffix.lstrip(".") or "html").lower()
    if fmt not in REPORT_FORMATS:
        raise KeyError(f"unknown report format {fmt!r}; known: {', '.join(REPORT_FORMATS)}")
    ctx = build_context(project, run_id, threshold, min_area, n_gallery, truth, progress)
    with atomic_file(target) as tmp:
        if fmt == "html":
            from anomaly_gui.core.report.html import render_html

            tmp.write_text(render_html(ctx), encoding="utf-8")
        else:
            from anomaly_gui.core.report.pdf import render_pdf

            render_pdf(ctx, tmp)
    ev: RunEvaluation = ctx["evaluation"]
    return ExportResult(format=f"report-{fmt}", path=target, n_items=len(ev.rows), files=[target])
