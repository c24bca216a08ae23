"""Everything a report or a scores table shows, computed once from the project (Qt-free).

`run_evaluation` decides each item with the run's raw maps (threshold + minimum area, `core.postprocess`)
or, without a map, with the image score; ground truth is the analyst's label where one was given
(`core.feedback.ground_truth`), else the dataset's.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from anomaly_gui.core.project import Project, Run
from anomaly_gui.core import run_metrics
from anomaly_gui.core.run_metrics import image_metrics, pixel_metrics, test_item_ids


@dataclass
class ItemRow:
    item_id: int
    path: str
    name: str
    split: str
    label: str
    truth: bool | None  # anomalous? (analyst label, else dataset)
    truth_source: str  # analyst | dataset | ""
    score: float | None
    predicted: bool | None
    n_regions: int = 0
    defect_area: float = 0.0
    verdict: str = ""
    verified: bool = False
    note: str = ""

    @property
    def outcome(self) -> str:
        """TP / FP / TN / FN, or '' when truth or prediction is unknown."""
        if self.truth is None or self.predicted is None:
            return ""
        return ("T" if self.truth == self.predicted else "F") + ("P" if self.predicted else "N")

    def to_dict(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id, "path": self.path, "name": self.name, "split": self.split, "label": self.label,
            "truth": self.truth, "truth_source": self.truth_source, "score": self.score, "predicted": self.predicted,
            "outcome": self.outcome, "n_regions": self.n_regions, "defect_area": self.defect_area,
            "verdict": self.verdict, "verified": self.verified, "note": self.note,
        }


@dataclass
class RunEvaluation:
    run: Run | None
    threshold: float | None
    min_area: float
    rows: list[ItemRow] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    curves: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)  # roc: (fpr, tpr), pr: (recall, precision)
    confusion: dict[str, int] = field(default_factory=dict)
    created: float = field(default_factory=time.time)
    metrics_split: str | None = None  # the split metrics were computed on (None: every row)
    measured_ids: set[int] | None = None  # the run's test items (`core.run_metrics.test_item_ids`)

    def measured_rows(self) -> list[ItemRow]:
        if self.measured_ids is not None:
            return [r for r in self.rows if r.item_id in self.measured_ids]
        return [r for r in self.rows if self.metrics_split is None or r.split == self.metrics_split]


def latest_run(project: Project) -> Run | None:
    """The newest run that has scores (finished first), or None."""
    runs = [r for r in project.runs() if project.db.execute("SELECT 1 FROM scores WHERE run_id=? LIMIT 1", (r.id,)).fetchone()]
    if not runs:
        return None
    done = [r for r in runs if r.status in ("done", "finished", "completed")]
    return (done or runs)[-1]


def run_evaluation(project: Project, run_id: int | None = None, threshold: float | None = None,
                   min_area: float | None = None, truth: str = "analyst", split: str | None = None,
                   metrics_split: str | None = "auto") -> RunEvaluation:
    """Rows, metrics, curves and confusion counts for one run (default: the latest with scores).

    `threshold`/`min_area` default to the run's stored values; `truth` is 'analyst' or 'dataset';
    `split` limits rows to one split (default: every scored item, or every item without a run).
    Metrics, curves and confusion counts use the run's test items with `metrics_split` 'auto' (those it
    was neither fitted nor validated on, `core.run_metrics.test_item_ids`; the figures themselves come from
    `core.run_metrics.evaluate_run`, so the report prints what the GUI and the CLI print), the rows of a
    named split, or every row with None.
    """
    from anomaly_gui.core import metrics as M
    from anomaly_gui.core import postprocess as pp
    from anomaly_gui.core.feedback import ground_truth

    run = project.run(run_id) if run_id is not None else latest_run(project)
    scores = project.scores(run.id) if run else {}
    thr = threshold if threshold is not None else (run.threshold if run else None)
    area = float(min_area if min_area is not None else (run.min_area if run else 0.0) or 0.0)
    gt = ground_truth(project, truth)
    verdicts = project.verdicts()
    items = project.items(split=split)
    if run is not None:
        items = [it for it in items if it.id in scores]
    ev = RunEvaluation(run=run, threshold=thr, min_area=area)
    for it in items:
        iid = int(it.id or 0)
        sc = scores.get(iid)
        score = None if sc is None or sc.score is None else float(sc.score)
        predicted, n_regions, defect_area = None, 0, 0.0
        if thr is not None and score is not None:
            raw = project.score_map(run.id, iid) if (run is not None and sc is not None and sc.map_path) else None
            if raw is not None:
                size = (it.width, it.height) if it.width and it.height else None
                res = pp.postprocess(raw, thr, area, size)
                predicted, n_regions = res.anomalous, len(res.regions)
                defect_area = float(sum(r.area for r in res.regions))
            else:
                predicted = score >= thr
        v = verdicts.get(iid)
        t, src = gt.get(iid, (None, ""))
        ev.rows.append(ItemRow(
            item_id=iid, path=str(it.path), name=_display_name(it), split=it.split, label=it.label, truth=t, truth_source=src,
            score=score, predicted=predicted, n_regions=n_regions, defect_area=defect_area,
            verdict=v.verdict if v else "", verified=bool(v.verified) if v else False, note=v.note if v else "",
        ))
    measured_ids: set[int] | None = None
    if metrics_split == "auto":
        if run is not None:  # the run's own test items: those it was neither fitted nor validated on
            measured_ids = set(test_item_ids(project, run.id))
            metrics_split = "test"
        else:
            metrics_split = "test" if any(r.split == "test" for r in ev.rows) else None
    ev.metrics_split = metrics_split
    ev.measured_ids = measured_ids
    measured = ev.measured_rows()
    known = [r for r in measured if r.truth is not None and r.score is not None and np.isfinite(r.score)]
    y = np.array([int(bool(r.truth)) for r in known], dtype=np.int64)
    s = np.array([r.score for r in known], dtype=np.float64)
    ev.metrics = {"n_items": len(measured), "n_labelled": len(known), "n_anomalous": int(y.sum()),
                  "n_normal": int(len(y) - y.sum()), "truth": truth, "split": metrics_split or "all"}
    if run is not None and measured_ids is not None:  # the run's figures, from the one implementation
        figures = run_metrics.evaluate_run(project, run.id, thr, area, truth={i: t for i, (t, _) in gt.items()})
        ev.metrics.update({k: figures[k] for k in ("image_auroc", "f1_max", "f1_max_threshold", "average_precision")
                           if k in figures})
        if truth == "dataset" or not any(src == "analyst" for _, src in gt.values()):
            pix = pixel_metrics(project, run.id, project.items(ids=[r.item_id for r in known]))
            ev.metrics.update({k: pix[k] for k in ("pixel_auroc", "aupro") if k in pix})
    elif len(known) and 0 < y.sum() < len(y):
        ev.metrics.update(image_metrics(y, s))
    if len(known) and 0 < y.sum() < len(y):
        fpr, tpr, _ = M.roc_curve(y, s)
        prec, rec, _ = M.pr_curve(y, s)
        ev.curves = {"roc": (fpr.tolist(), tpr.tolist()), "pr": (rec.tolist(), prec.tolist())}
    decided = [r for r in measured if r.truth is not None and r.predicted is not None]
    if decided:
        ev.confusion = M.confusion([int(bool(r.truth)) for r in decided], [int(bool(r.predicted)) for r in decided])
        c = ev.confusion
        ev.metrics["accuracy"] = (c["tp"] + c["tn"]) / max(1, len(decided))
        ev.metrics["precision"] = c["tp"] / (c["tp"] + c["fp"]) if (c["tp"] + c["fp"]) else None
        ev.metrics["recall"] = c["tp"] / (c["tp"] + c["fn"]) if (c["tp"] + c["fn"]) else None
        p, r = ev.metrics["precision"], ev.metrics["recall"]
        ev.metrics["f1"] = 2 * p * r / (p + r) if p and r else 0.0 if p is not None and r is not None else None
    return ev


def _display_name(it: Any) -> str:
    """'defect/000.png': MVTec-style folders reuse file names, so the parent folder is shown too."""
    from pathlib import Path

    parent = Path(it.path).parent.name
    return f"{parent}/{it.name}" if parent and it.frame_index is None else it.name


def dataset_summary(project: Project) -> dict[str, Any]:
    """Counts per split and label, verdict counts, sources, for the report's first section."""
    splits = project.splits()
    verdicts = project.verdicts().values()
    counts = {v: 0 for v in ("normal", "anomalous", "unsure")}
    for v in verdicts:
        if v.verdict in counts:
            counts[v.verdict] += 1
    n_ann = int(project.db.execute("SELECT COUNT(*) FROM annotations").fetchone()[0])
    return {
        "project": str(project.path),
        "n_items": project.count_items(),
        "splits": splits,
        "verdicts": counts,
        "n_verified": sum(1 for v in verdicts if v.verified),
        "n_annotations": n_ann,
        "label_classes": project.label_classes(),
        "imports": [{"root": i["root"], "format": i["format"], "n_items": i["n_items"]} for i in project.imports()],
    }


def gallery(ev: RunEvaluation, n: int, worst: bool) -> list[ItemRow]:
    """The N highest-scoring (worst) or lowest-scoring (best) items."""
    scored = [r for r in ev.measured_rows() if r.score is not None and np.isfinite(r.score)]
    scored.sort(key=lambda r: r.score, reverse=worst)
    return scored[: max(0, n)]


def overlay_thumbnail(project: Project, ev: RunEvaluation, row: ItemRow, max_side: int = 320) -> np.ndarray:
    """The item's image with the kept anomaly regions (red) and the run's detections (yellow) drawn
    (RGB uint8, longest side `max_side`)."""
    import cv2

    from anomaly_gui.core import postprocess as pp
    from anomaly_gui.core.errors import DataError
    from anomaly_gui.core.imageio import read_image, to_rgb8

    try:
        img = to_rgb8(read_image(row.path))
    except DataError:
        img = np.full((max_side, max_side, 3), 128, np.uint8)
        cv2.putText(img, "image missing", (10, max_side // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
        return img
    h, w = img.shape[:2]
    mask = None
    if ev.run is not None and ev.threshold is not None:
        raw = project.score_map(ev.run.id, row.item_id)
        if raw is not None:
            mask = pp.postprocess(raw, ev.threshold, ev.min_area, (w, h), with_regions=False).mask
    k = min(1.0, max_side / max(h, w))
    if k < 1:
        img = cv2.resize(img, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)
    out = pp.overlay(img, mask) if mask is not None else img.copy()
    if ev.run is not None:  # detections of this run (rejected ones left out), the kept ones in yellow
        for a in project.annotations(row.item_id, source="model", run_id=ev.run.id):
            if a.kind != "box" or a.status == "rejected":
                continue
            kept = a.status == "accepted" or ev.threshold is None or (a.score is not None and a.score >= ev.threshold)
            x1, y1, x2, y2 = (int(round(v * k)) for v in a.box())
            cv2.rectangle(out, (x1, y1), (x2, y2), (255, 214, 10) if kept else (150, 150, 150), 2 if kept else 1)
    return out


def jpeg_bytes(rgb: np.ndarray, quality: int = 85) -> bytes:
    """A gallery tile as JPEG (photos compress 5-10x better than PNG, and encode faster)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
