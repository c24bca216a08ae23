"""Report charts with matplotlib's object API and the Agg canvas (no pyplot, no Qt, no display)."""
from __future__ import annotations

import io
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from anomaly_gui.core.report.data import RunEvaluation

NORMAL_COLOR = "#3a7bd5"
ANOMALY_COLOR = "#d64541"


def curves_figure(ev: RunEvaluation, size: tuple[float, float] = (9.0, 3.6), page: bool = False) -> Figure:
    """ROC, precision-recall and the score histogram (normal vs anomalous, threshold line): side by side,
    or with `page` the two curves on top and the histogram across the bottom (a PDF page)."""
    fig = Figure(figsize=size, dpi=100)
    if page:
        gs = fig.add_gridspec(2, 2, left=0.08, right=0.95, bottom=0.07, top=0.9, hspace=0.3, wspace=0.25)
        ax_roc, ax_pr, ax_hist = fig.add_subplot(gs[0, 0]), fig.add_subplot(gs[0, 1]), fig.add_subplot(gs[1, :])
    else:
        ax_roc, ax_pr, ax_hist = fig.subplots(1, 3)
        fig.subplots_adjust(left=0.06, right=0.98, bottom=0.14, top=0.88, wspace=0.32)
    roc = ev.curves.get("roc")
    if roc:
        ax_roc.plot(roc[0], roc[1], color=ANOMALY_COLOR, lw=2)
        ax_roc.plot([0, 1], [0, 1], color="#999", lw=1, ls="--")
        auc = ev.metrics.get("image_auroc")
        ax_roc.set_title(f"ROC (AUROC {auc:.3f})" if auc is not None else "ROC")
    else:
        _empty(ax_roc, "ROC: needs normal and anomalous labels")
    ax_roc.set_xlabel("false positive rate")
    ax_roc.set_ylabel("true positive rate")
    ax_roc.set_xlim(0, 1)
    ax_roc.set_ylim(0, 1.02)
    pr = ev.curves.get("pr")
    if pr:
        ax_pr.plot(pr[0], pr[1], color=NORMAL_COLOR, lw=2)
        ap = ev.metrics.get("average_precision")
        ax_pr.set_title(f"Precision-recall (AP {ap:.3f})" if ap is not None else "Precision-recall")
    else:
        _empty(ax_pr, "PR: needs normal and anomalous labels")
    ax_pr.set_xlabel("recall")
    ax_pr.set_ylabel("precision")
    ax_pr.set_xlim(0, 1)
    ax_pr.set_ylim(0, 1.02)
    _histogram(ax_hist, ev)
    for ax in (ax_roc, ax_pr) if page else (ax_roc, ax_pr, ax_hist):
        ax.set_box_aspect(1)
    return fig


def _histogram(ax: Any, ev: RunEvaluation) -> None:
    rows = ev.measured_rows()
    scores = np.array([r.score for r in rows if r.score is not None and np.isfinite(r.score)], dtype=np.float64)
    if scores.size == 0:
        _empty(ax, "no scores")
        ax.set_title("Scores")
        return
    bins = np.histogram_bin_edges(scores, bins=min(40, max(8, scores.size // 3)))
    groups = (
        ("normal", NORMAL_COLOR, [r.score for r in rows if r.truth is False and r.score is not None]),
        ("anomalous", ANOMALY_COLOR, [r.score for r in rows if r.truth is True and r.score is not None]),
        ("unlabelled", "#999999", [r.score for r in rows if r.truth is None and r.score is not None]),
    )
    for name, color, vals in groups:
        if vals:
            ax.hist(vals, bins=bins, color=color, alpha=0.6, label=f"{name} ({len(vals)})")
    if ev.threshold is not None:
        ax.axvline(ev.threshold, color="black", lw=1.5, ls="--", label=f"threshold {ev.threshold:.4g}")
    ax.set_title("Image scores" + (f" ({ev.metrics_split})" if ev.metrics_split else ""))
    ax.set_xlabel("score")
    ax.set_ylabel("items")
    ax.legend(fontsize=7, loc="upper right")


def _empty(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=8, color="#666", wrap=True, transform=ax.transAxes)


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
