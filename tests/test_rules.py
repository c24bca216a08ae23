"""Anomaly rules: zones (centre and overlap), unseen classes, low confidence; stored in the project."""
from __future__ import annotations

import numpy as np

from anomaly_gui.core.formats.base import Annotation
from anomaly_gui.core.rules import (
    Rule, RuleContext, Zone, box_inside_fraction, default_rules, evaluate_rules, load_rules, points_in_polygon,
    save_rules, zones_for,
)


def _det(x1, y1, x2, y2, label="ship", score=0.9):
    return Annotation("box", label, {"x1": x1, "y1": y1, "x2": x2, "y2": y2}, score=score, source="model")


L_SHAPE = np.array([[0, 0], [100, 0], [100, 40], [40, 40], [40, 100], [0, 100]], float)  # concave


def test_points_in_concave_polygon():
    pts = np.array([[10, 10], [80, 20], [80, 80], [20, 80], [50, 50], [150, 10]], float)
    assert points_in_polygon(pts, L_SHAPE).tolist() == [True, True, False, True, False, False]
    assert box_inside_fraction((0, 0, 40, 40), L_SHAPE) == 1.0
    assert box_inside_fraction((60, 60, 90, 90), L_SHAPE) == 0.0
    assert abs(box_inside_fraction((20, 20, 60, 60), L_SHAPE) - 0.75) < 0.02


def test_zone_centre_and_overlap_modes():
    ctx = RuleContext(zones=[Zone("harbour", L_SHAPE)], known_classes={"ship"})
    inside, outside, straddling = _det(5, 5, 25, 25), _det(60, 60, 90, 90), _det(30, 30, 70, 70)
    centre = Rule("zone")
    reasons = evaluate_rules([inside, outside, straddling], [centre], ctx)
    assert reasons[0] and "harbour" in reasons[0][0]
    assert reasons[1] == [] and reasons[2] == []  # centre (50, 50) is in the notch
    overlap = Rule("zone", params={"mode": "overlap", "min_overlap": 0.3})
    assert evaluate_rules([straddling], [overlap], ctx)[0]  # ~44% of the box lies in the L
    assert not evaluate_rules([straddling], [Rule("zone", params={"mode": "overlap", "min_overlap": 0.6})], ctx)[0]


def test_unseen_class_low_confidence_and_disabled():
    ctx = RuleContext(known_classes={"ship"})
    boat, ship_low = _det(0, 0, 5, 5, label="boat"), _det(0, 0, 5, 5, score=0.4)
    rules = [Rule("unseen_class"), Rule("low_confidence", params={"below": 0.5})]
    r = evaluate_rules([boat, ship_low], rules, ctx)
    assert r[0] == ["class 'boat' not seen in training"]
    assert r[1] == ["confidence 0.40 under 0.50"]
    rules[1].enabled = False
    assert evaluate_rules([ship_low], rules, ctx) == [[]]
    # an explicit class list overrides the training classes
    assert evaluate_rules([_det(0, 0, 1, 1, label="ship")], [Rule("unseen_class", params={"classes": "boat"})], ctx)[0]
    # without known classes the rule cannot tell and stays silent
    assert evaluate_rules([boat], [Rule("unseen_class")], RuleContext()) == [[]]


def test_rules_and_zones_in_project(tmp_project):
    assert [r.kind for r in load_rules(tmp_project)] == [r.kind for r in default_rules()]
    rules = [Rule("zone", params={"mode": "overlap", "min_overlap": 0.25}), Rule("low_confidence", False, {"below": 0.7})]
    save_rules(tmp_project, rules)
    back = load_rules(tmp_project)
    assert back[0].value("min_overlap") == 0.25 and back[1].enabled is False and back[1].value("below") == 0.7
    assert "25%" in back[0].describe()
    tmp_project.set_setting("detection.rules", [{"kind": "from_the_future"}, {"kind": "zone"}])
    assert [r.kind for r in load_rules(tmp_project)] == ["zone"]
    zid = tmp_project.add_zone("pier", [[0, 0], [10, 0], [10, 10]])
    zones = zones_for(tmp_project, None)
    assert zones[0].id == zid and zones[0].polygon.shape == (3, 2)
