"""Retrain on mistakes: analyst labels as ground truth, corrections of a run, the next run's split."""
from __future__ import annotations

import numpy as np

from anomaly_gui.core.export.masks import mask_geometry, read_mask_png
from anomaly_gui.core.feedback import (
    apply_feedback,
    corrections,
    ground_truth,
    plan_feedback,
)
from anomaly_gui.core.formats.base import Annotation


def test_ground_truth_prefers_the_analyst(scored_project):
    proj = scored_project
    good = [it.id for it in proj.items() if not it.is_anomalous]
    bad = [it.id for it in proj.items() if it.is_anomalous]
    proj.set_verdict(good[0], verdict="anomalous")
    proj.set_verdict(bad[0], verdict="unsure")  # unsure: the dataset's label stands
    proj.add_annotation(good[1], Annotation("box", "dent", {"x1": 1, "y1": 1, "x2": 5, "y2": 5}, source="user"))
    proj.add_annotation(good[2], Annotation("box", "dent", {"x1": 1, "y1": 1, "x2": 5, "y2": 5}, source="model",
                                            status="rejected"))
    gt = ground_truth(proj)
    assert gt[good[0]] == (True, "analyst")
    assert gt[bad[0]] == (True, "dataset")
    assert gt[good[1]] == (True, "analyst")  # a drawn defect says anomalous
    assert gt[good[2]] == (False, "dataset")  # a rejected detection says nothing
    assert ground_truth(proj, "dataset")[good[0]] == (False, "dataset")


def test_corrections_list_model_mistakes_as_the_analyst_sees_them(scored_project):
    proj = scored_project
    run = proj.runs()[0]
    good = [it.id for it in proj.items() if not it.is_anomalous]
    bad = [it.id for it in proj.items() if it.is_anomalous]
    proj.set_verdict(bad[0], verdict="normal")  # the model flagged it: a false positive
    proj.set_verdict(good[0], verdict="anomalous")  # the model missed it: a false negative
    proj.set_verdict(good[1], verdict="normal")  # agrees with the model: no correction
    proj.add_annotation(bad[1], Annotation("box", "blob", {"x1": 0, "y1": 0, "x2": 4, "y2": 4}, source="model",
                                           status="rejected"), run_id=run.id)
    kinds = {(c.item_id, c.kind) for c in corrections(proj, run.id)}
    assert (bad[0], "false_positive") in kinds and (good[0], "false_negative") in kinds
    assert (bad[1], "detection_rejected") in kinds
    assert not any(i == good[1] for i, _ in kinds)


def test_plan_and_apply_feedback_moves_items_and_writes_masks(scored_project):
    proj = scored_project
    good = [it.id for it in proj.items() if not it.is_anomalous]
    bad = [it.id for it in proj.items() if it.is_anomalous]
    for i in good[:4]:
        proj.set_verdict(i, verdict="normal", verified=True)
    m = np.zeros((48, 64), bool)
    m[10:22, 20:36] = True
    proj.add_annotation(bad[0], Annotation("mask", "blob", mask_geometry(m), source="user"))
    proj.set_verdict(bad[1], verdict="anomalous")
    plan = plan_feedback(proj, proj.runs()[0].id, val_fraction=0.25)
    assert sorted(plan.train + plan.val) == sorted(good[:4] + bad[:2])
    assert set(bad[:2]) <= set(plan.val)  # image engines learn from normal items only
    assert len(set(good[:4]) & set(plan.val)) == 1 and len(plan.train) == 3
    assert set(plan.masks) == {bad[0]}
    counts = apply_feedback(proj, plan)
    assert counts == {"train": 3, "val": 3, "labels": 6, "masks": 1}
    items = {it.id: it for it in proj.items()}
    assert all(items[i].split == "train" and items[i].is_anomalous is False for i in plan.train)
    assert items[bad[0]].split == "val" and items[bad[0]].mask_path
    assert (read_mask_png(items[bad[0]].mask_path) == m).all()
    assert items[bad[0]].meta["dataset_is_anomalous"] is True
    assert len(proj.annotations(bad[0])) == 1  # annotations untouched
    assert items[good[5]].split == "test"  # items the analyst did not label stay where they were
    detector = plan_feedback(proj, normal_only_training=False, val_fraction=0.5)
    assert set(detector.train) & set(bad[:2])  # a detector trains on the labelled anomalies too
