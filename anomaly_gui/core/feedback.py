"""Retrain on mistakes: the analyst's corrections become ground truth and data for the next run.

- `ground_truth(project)`: per item, anomalous or not according to the analyst (verdict normal /
  anomalous, or a user-drawn or accepted defect shape), falling back to the dataset's label.
- `corrections(project, run_id)`: items where the analyst disagrees with a run (false positives and
  false negatives of the model as the analyst judged them), plus reviewed detections.
- `plan_feedback` / `apply_feedback`: the split for the next run. Items the analyst called normal go to
  training (most of them; a share to validation so the threshold sees them), anomalies go to validation
  (image engines learn from normal data only; detectors learn from the analyst's boxes, with rejected
  detections removed). Corrected masks are written as the items' ground-truth masks. The dataset's
  original label is kept in the item's meta (`dataset_is_anomalous`).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from anomaly_gui.core.formats.base import Annotation
from anomaly_gui.core.project import Project

TRUTH_SOURCES = ("analyst", "dataset")


def _defect_shapes(anns: list[Annotation]) -> list[Annotation]:
    """Shapes that assert a defect: drawn by the analyst, imported, or model output the analyst accepted."""
    out = []
    for a in anns:
        if a.kind == "point" or a.status == "rejected":
            continue
        if a.source == "model" and a.status != "accepted":
            continue
        if a.source == "user" or a.status == "accepted":
            out.append(a)
    return out


def analyst_label(verdict: str, anns: list[Annotation]) -> bool | None:
    """The analyst's word on one item: True/False, or None when they said nothing (or 'unsure')."""
    if verdict == "anomalous":
        return True
    if verdict == "normal":
        return False
    if verdict == "" and _defect_shapes(anns):
        return True
    return None


def ground_truth(project: Project, source: str = "analyst") -> dict[int, tuple[bool | None, str]]:
    """{item id: (anomalous?, 'analyst' | 'dataset' | '')}. With source='dataset' the analyst is ignored."""
    if source not in TRUTH_SOURCES:
        raise ValueError(f"truth source must be one of {TRUTH_SOURCES}")
    out: dict[int, tuple[bool | None, str]] = {}
    rows = project.db.execute("SELECT id, is_anomalous FROM items").fetchall()
    verdicts = project.verdicts() if source == "analyst" else {}
    anns = project.annotations_by_item() if source == "analyst" else {}
    for r in rows:
        iid = int(r[0])
        v = verdicts.get(iid)
        mine = analyst_label(v.verdict if v else "", anns.get(iid, [])) if source == "analyst" else None
        if mine is not None:
            out[iid] = (mine, "analyst")
        elif r[1] is not None:
            out[iid] = (bool(r[1]), "dataset")
        else:
            out[iid] = (None, "")
    return out


@dataclass
class Correction:
    item_id: int
    kind: str  # false_positive | false_negative | detection_rejected | detection_accepted | shape_added
    detail: str = ""


def corrections(project: Project, run_id: int, threshold: float | None = None, min_area: float | None = None) -> list[Correction]:
    """Where the analyst corrected a run: wrong verdicts (against the analyst's labels) and reviewed boxes."""
    from anomaly_gui.core.report.data import run_evaluation

    ev = run_evaluation(project, run_id, threshold, min_area, truth="analyst")
    out: list[Correction] = []
    for r in ev.rows:
        if r.truth_source != "analyst" or r.predicted is None or r.truth is None or r.truth == r.predicted:
            continue
        kind = "false_positive" if r.predicted else "false_negative"
        out.append(Correction(r.item_id, kind, f"score {r.score:.4g}" if r.score is not None else ""))
    for iid, anns in project.annotations_by_item(run_id=run_id).items():
        for a in anns:
            if a.source == "model" and a.status in ("accepted", "rejected"):
                out.append(Correction(iid, f"detection_{a.status}", f"{a.label} {a.score if a.score is not None else ''}".strip()))
    for iid, anns in project.annotations_by_item().items():
        n_user = sum(1 for a in anns if a.source == "user")
        if n_user:
            out.append(Correction(iid, "shape_added", f"{n_user} shape(s) drawn"))
    return out


@dataclass
class FeedbackPlan:
    train: list[int] = field(default_factory=list)
    val: list[int] = field(default_factory=list)
    labels: dict[int, bool] = field(default_factory=dict)  # analyst labels to store on the items
    masks: dict[int, list[Annotation]] = field(default_factory=dict)  # items whose defect shapes become masks
    n_corrections: int = 0

    def summary(self) -> str:
        return (f"{len(self.train)} item(s) to train, {len(self.val)} to validation, "
                f"{len(self.labels)} analyst label(s), {len(self.masks)} corrected mask(s), "
                f"from {self.n_corrections} correction(s)")


def plan_feedback(project: Project, run_id: int | None = None, val_fraction: float = 0.3, seed: int = 0,
                  normal_only_training: bool = True) -> FeedbackPlan:
    """Which items go where for the next run, from every item the analyst labelled.

    `normal_only_training`: image anomaly engines (train on normal data; anomalies to validation).
    False for detectors: every labelled item can train, a `val_fraction` share validates.
    """
    gt = ground_truth(project, "analyst")
    anns = project.annotations_by_item()
    plan = FeedbackPlan()
    if run_id is not None:
        plan.n_corrections = len(corrections(project, run_id))
    rng = random.Random(seed)
    normals, anomalies = [], []
    for iid, (truth, src) in sorted(gt.items()):
        if src != "analyst" or truth is None:
            continue
        plan.labels[iid] = truth
        (anomalies if truth else normals).append(iid)
        shapes = [a for a in _defect_shapes(anns.get(iid, [])) if a.kind in ("box", "polygon", "mask")]
        if truth and shapes:
            plan.masks[iid] = shapes
    rng.shuffle(normals)
    rng.shuffle(anomalies)
    n_val_norm = int(round(len(normals) * val_fraction))
    plan.val.extend(normals[:n_val_norm])
    plan.train.extend(normals[n_val_norm:])
    if normal_only_training:
        plan.val.extend(anomalies)
    else:
        n_val_anom = int(round(len(anomalies) * val_fraction))
        plan.val.extend(anomalies[:n_val_anom])
        plan.train.extend(anomalies[n_val_anom:])
    plan.train.sort()
    plan.val.sort()
    return plan


def apply_feedback(project: Project, plan: FeedbackPlan) -> dict[str, Any]:
    """Write the plan into the project: splits, analyst labels (dataset's kept in meta), corrected masks.

    Returns counts. Masks are written as PNGs under the project's cache (`feedback_masks/`).
    """
    from anomaly_gui.core.formats.common import item_size
    from anomaly_gui.core.export.masks import rasterize
    from anomaly_gui.core.imageio import write_image

    ids = sorted(set(plan.train) | set(plan.val) | set(plan.labels))
    items = {int(it.id or 0): it for it in project.items(ids=ids)} if ids else {}
    mask_dir = project.cache_dir / "feedback_masks"
    n_masks = 0
    for iid, it in items.items():
        if iid in plan.train:
            it.split = "train"
        elif iid in plan.val:
            it.split = "val"
        if iid in plan.labels:
            it.meta.setdefault("dataset_is_anomalous", it.is_anomalous)
            it.is_anomalous = plan.labels[iid]
        if iid in plan.masks:
            size = item_size(it)
            path = mask_dir / f"{iid}.png"
            write_image(path, rasterize(plan.masks[iid], size))
            it.meta.setdefault("dataset_mask_path", it.mask_path)
            it.mask_path = str(path)
            n_masks += 1
        it.annotations = []  # never touch stored annotations here
    if items:
        project.add_items(list(items.values()))
    return {"train": len(plan.train), "val": len(plan.val), "labels": len(plan.labels), "masks": n_masks}
