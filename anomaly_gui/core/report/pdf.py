"""The PDF report with matplotlib's PdfPages (Qt-free: works in a terminal without a display).

Pages (A4 landscape): 1 summary (dataset, model and parameters, decision, metrics, confusion counts),
2 curves (ROC, precision-recall, score histogram), 3 worst-N gallery, 4 best-N gallery, then the item
table over as many pages as needed (`ROWS_PER_PAGE` rows each). `expected_pages(n_items)` tells how many.
"""
from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

PAGE = (11.69, 8.27)  # A4 landscape, inches
ROWS_PER_PAGE = 32
GALLERY_COLS = 4


def expected_pages(n_items: int) -> int:
    """Number of pages the PDF of a report with `n_items` table rows has."""
    return 4 + max(1, math.ceil(n_items / ROWS_PER_PAGE))


def _page(title: str) -> Figure:
    fig = Figure(figsize=PAGE, dpi=100)
    fig.text(0.04, 0.955, title, fontsize=16, fontweight="bold", va="top")
    return fig


def _kv_block(fig: Figure, x: float, y: float, heading: str, rows: list[tuple[str, str]], max_rows: int = 18) -> float:
    """Write `heading` and key/value lines from (x, y) downwards; returns the y below the block."""
    fig.text(x, y, heading, fontsize=11, fontweight="bold", va="top")
    y -= 0.035
    shown = rows[:max_rows]
    for k, v in shown:
        fig.text(x, y, _clip(k, 26), fontsize=8.5, va="top", color="#444")
        fig.text(x + 0.125, y, _clip(v, 30), fontsize=8.5, va="top")
        y -= 0.026
    if len(rows) > max_rows:
        fig.text(x, y, f"... {len(rows) - max_rows} more (see the HTML report)", fontsize=8, va="top", color="#888")
        y -= 0.026
    return y - 0.02


def _clip(text: str, n: int) -> str:
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "…"


def _summary_page(ctx: dict[str, Any]) -> Figure:
    fig = _page(ctx["title"])
    fig.text(0.04, 0.915, _clip(ctx["subtitle"], 150), fontsize=9, color="#555", va="top")
    ds = ctx["dataset"]
    data_rows = [(f"{r['split']} / {r['label']}", str(r["n"])) for r in ds["rows"]]
    data_rows.append(("total items", str(ds["n_items"])))
    v = ds["verdicts"]
    data_rows.append(("analyst verdicts", f"{v['normal']} norm. · {v['anomalous']} anom. · {v['unsure']} unsure"))
    data_rows.append(("verified / annotations", f"{ds['n_verified']} / {ds['n_annotations']}"))
    y = _kv_block(fig, 0.04, 0.86, "Dataset", data_rows, max_rows=14)
    decision = [("threshold", ctx["threshold"]), ("minimum defect area", f"{ctx['min_area']} px"), ("ground truth", ctx["truth_text"])]
    _kv_block(fig, 0.04, y, "Decision", decision)
    model_rows = ctx["run_rows"] or [("run", "none with scores yet")]
    y2 = _kv_block(fig, 0.36, 0.86, "Model", model_rows, max_rows=10)
    if ctx["params"]:
        _kv_block(fig, 0.36, y2, "Parameters", ctx["params"], max_rows=12)
    y3 = _kv_block(fig, 0.68, 0.86, "Metrics", ctx["metric_rows"], max_rows=14)
    c = ctx["confusion"]
    if c:
        ax = fig.add_axes((0.80, max(0.08, y3 - 0.2), 0.17, 0.15))
        ax.axis("off")
        table = ax.table(cellText=[[f"TP {c['tp']}", f"FN {c['fn']}"], [f"FP {c['fp']}", f"TN {c['tn']}"]],
                         rowLabels=["truly anomalous", "truly normal"], colLabels=["pred. anomalous", "pred. normal"],
                         cellLoc="center", loc="center")
        table.auto_set_font_size(False)
        table.set_fontsize(8.5)
        table.scale(1, 1.6)
        for (r, col), cell in table.get_celld().items():
            if (r, col) in ((1, 1), (2, 0)) and cell.get_text().get_text().split()[-1] != "0":
                cell.set_facecolor("#f8d7d5")
        fig.text(0.68, y3, "Confusion counts at the threshold", fontsize=11, fontweight="bold", va="top")
    fig.text(0.04, 0.03, ctx["footer"], fontsize=7, color="#888")
    return fig


def _curves_page(ctx: dict[str, Any]) -> Figure:
    from anomaly_gui.core.report.charts import curves_figure

    fig = curves_figure(ctx["evaluation"], size=PAGE, page=True)
    fig.suptitle("Metrics: ROC, precision-recall and score distribution", fontsize=14, fontweight="bold")
    return fig


def _image_array(png: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        return np.asarray(im.convert("RGB"))


def _gallery_page(g: dict[str, Any]) -> Figure:
    fig = _page(g["title"])
    tiles = g["tiles"]
    if not tiles:
        fig.text(0.5, 0.5, "No scored items", ha="center", fontsize=12, color="#666")
        return fig
    rows = max(1, math.ceil(len(tiles) / GALLERY_COLS))
    h = 0.86 / rows
    w = 0.92 / GALLERY_COLS
    for k, t in enumerate(tiles):
        r, c = divmod(k, GALLERY_COLS)
        ax = fig.add_axes((0.04 + c * w, 0.9 - (r + 1) * h + 0.05, w - 0.02, h - 0.08))
        ax.imshow(_image_array(t["jpeg"]))
        ax.set_xticks([])
        ax.set_yticks([])
        color = "#c0392b" if t["outcome"] in ("FP", "FN") else "#222"
        ax.set_title(f"{_clip(t['name'], 34)}\nscore {t['score']} · truth {t['truth']} · {t['outcome'] or t['predicted']}",
                     fontsize=8, color=color)
    return fig


def _table_pages(ctx: dict[str, Any]) -> list[Figure]:
    rows = ctx["rows"]
    cols = ["#", "item", "split", "label", "score", "predicted", "truth", "outcome", "regions", "analyst"]
    pages = []
    n_pages = max(1, math.ceil(len(rows) / ROWS_PER_PAGE))
    for p in range(n_pages):
        chunk = rows[p * ROWS_PER_PAGE:(p + 1) * ROWS_PER_PAGE]
        fig = _page(f"Items ({len(rows)}), page {p + 1} of {n_pages}")
        ax = fig.add_axes((0.04, 0.05, 0.92, 0.86))
        ax.axis("off")
        if not chunk:
            ax.text(0.5, 0.5, "No items", ha="center", fontsize=12, color="#666")
        else:
            text = [[str(r["item_id"]), _clip(r["name"], 40), r["split"] or "-", _clip(r["label"] or "-", 16), r["score_text"],
                     r["predicted_text"], r["truth_text"], r["outcome"] or "-", str(r["n_regions"]),
                     (r["verdict"] or "-") + (" ✓" if r["verified"] else "")] for r in chunk]
            table = ax.table(cellText=text, colLabels=cols, loc="upper center", cellLoc="left",
                             colWidths=[0.05, 0.27, 0.07, 0.11, 0.09, 0.09, 0.09, 0.07, 0.06, 0.10])
            table.auto_set_font_size(False)
            table.set_fontsize(7.5)
            table.scale(1, 1.25)
            for (r, c), cell in table.get_celld().items():
                if r == 0:
                    cell.set_facecolor("#eeeeee")
                elif c == 7 and cell.get_text().get_text() in ("FP", "FN"):
                    cell.set_facecolor("#f8d7d5")
        pages.append(fig)
    return pages


def render_pdf(ctx: dict[str, Any], path: str | Path) -> int:
    """Write the PDF to `path`; returns the number of pages."""
    figures = [_summary_page(ctx), _curves_page(ctx)] + [_gallery_page(g) for g in ctx["galleries"]] + _table_pages(ctx)
    meta = {"Title": ctx["title"], "Creator": ctx["footer"], "Subject": ctx["subtitle"]}
    with PdfPages(path, metadata=meta) as pdf:
        for fig in figures:
            pdf.savefig(fig)
    return len(figures)
