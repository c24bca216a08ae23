"""Detections for review and export: the cached boxes of a run filtered by confidence, flagged by the
rules, and written out as images with the boxes drawn (plus a CSV of every box shown)."""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.formats.base import Annotation
from anomaly_gui.core.rules import Rule, RuleContext, evaluate_rules, zones_for

NORMAL_COLOR = (52, 199, 89)  # RGB
FLAG_COLOR = (255, 59, 48)
REJECTED_COLOR = (142, 142, 147)


@dataclass
class ReviewedDetection:
    ann: Annotation
    reasons: list[str] = field(default_factory=list)

    @property
    def flagged(self) -> bool:
        return bool(self.reasons) and self.ann.status != "rejected"


def run_classes(project: Any, run_id: int) -> set[str] | None:
    """Classes the run's model was trained on (from its metrics, else its model file's metadata)."""
    import json

    run = project.run(run_id)
    if run.metrics.get("classes"):
        return set(run.metrics["classes"])
    from anomaly_gui.core.run_files import model_path

    path = model_path(project, run_id)
    if not path.is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("anomaly_gui", "{}"))
    except (OSError, ValueError, json.JSONDecodeError):
        return None
    classes = meta.get("stats", {}).get("classes")
    return set(classes) if classes else None


def item_detections(project: Any, item_id: int, run_id: int, min_confidence: float, rules: Sequence[Rule],
                    known_classes: set[str] | None) -> list[ReviewedDetection]:
    """The run's boxes on an item with confidence >= `min_confidence` (or accepted by the analyst), flagged."""
    anns = [a for a in project.annotations(item_id, source="model", run_id=run_id) if a.kind == "box"]
    shown = [a for a in anns if (a.score or 0.0) >= min_confidence or a.status == "accepted"]
    shown.sort(key=lambda a: -(a.score or 0.0))
    ctx = RuleContext(zones=zones_for(project, item_id), known_classes=known_classes)
    return [ReviewedDetection(a, r) for a, r in zip(shown, evaluate_rules(shown, rules, ctx))]


def draw_detections(img: np.ndarray, dets: Sequence[ReviewedDetection], zones: Sequence[Any] = ()) -> np.ndarray:
    """RGB uint8 copy of `img` with zones (orange outlines) and boxes (green, red when flagged) drawn."""
    import cv2

    from anomaly_gui.core.imageio import to_rgb8

    out = np.ascontiguousarray(to_rgb8(img).copy())
    thick = max(1, round(max(out.shape[:2]) / 500))
    for z in zones:
        pts = np.round(np.asarray(z.polygon)).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(out, [pts], True, (255, 159, 10), thick)
    for d in dets:
        x1, y1, x2, y2 = (int(round(v)) for v in d.ann.box())
        color = REJECTED_COLOR if d.ann.status == "rejected" else FLAG_COLOR if d.flagged else NORMAL_COLOR
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thick)
        text = f"{d.ann.label} {d.ann.score or 0:.2f}" + (" !" if d.flagged else "")
        scale = 0.4 * thick
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        ty = max(th + 2, y1)
        cv2.rectangle(out, (x1, ty - th - 3), (x1 + tw + 2, ty), color, -1)
        cv2.putText(out, text, (x1 + 1, ty - 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def export_detection_images(project: Any, run_id: int, out_dir: str | Path, min_confidence: float,
                            rules: Sequence[Rule], item_ids: Sequence[int] | None = None, ctx: Any = None,
                            include_rejected: bool = False) -> dict[str, Any]:
    """Write `<name>.png` per item with its boxes drawn and `detections.csv`. Unreadable images are
    skipped and listed (by file) in the returned summary; files already written are kept."""
    from anomaly_gui.core.imageio import read_image, write_image, write_text

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    known = run_classes(project, run_id)
    ids = list(item_ids) if item_ids is not None else [int(i) for i in project.scores(run_id)]
    rows: list[list[Any]] = []
    problems: list[str] = []
    written = 0
    used: set[str] = set()
    for k, item_id in enumerate(ids):
        if ctx is not None:
            ctx.check()
        it = project.item(item_id)
        dets = item_detections(project, item_id, run_id, min_confidence, rules, known)
        if not include_rejected:
            dets = [d for d in dets if d.ann.status != "rejected"]
        try:
            img = read_image(it.path)
        except DataError as exc:
            problems.append(str(exc))
            continue
        name = Path(it.path).stem
        while name in used:
            name += f"_{item_id}"
        used.add(name)
        write_image(out / f"{name}.png", draw_detections(img, dets, zones_for(project, item_id)))
        written += 1
        for d in dets:
            x1, y1, x2, y2 = d.ann.box()
            rows.append([it.path, d.ann.label, f"{d.ann.score or 0:.4f}", f"{x1:.1f}", f"{y1:.1f}", f"{x2:.1f}", f"{y2:.1f}",
                         d.ann.status, "yes" if d.flagged else "", "; ".join(d.reasons)])
        if ctx is not None:
            ctx.progress(k + 1, len(ids), f"exporting {name}")
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["image", "label", "confidence", "x1", "y1", "x2", "y2", "status", "anomaly", "reasons"])
    w.writerows(rows)
    write_text(out / "detections.csv", buf.getvalue())
    return {"written": written, "boxes": len(rows), "flagged": sum(1 for r in rows if r[8]), "problems": problems,
            "folder": str(out)}
