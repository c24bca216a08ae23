"""Anomaly rules for detections: "a ship where it should not be is the anomaly".

Three kinds of rule, each registered in `RULE_KINDS` (no if/elif over kinds):
- `zone`: the detection lies in a restricted zone (a polygon stored with `project.add_zone`; a zone with
  an item id applies to that item only, one without to every item). Mode `centre` (default): the box
  centre is inside the polygon; mode `overlap`: at least `min_overlap` of the box area is inside
  (estimated on a 16×16 grid of sample points in the box).
- `unseen_class`: the detection's class was not among the classes the model was trained on (or, with
  `classes`, is not in that list).
- `low_confidence`: the detection is shown (it passed the confidence slider) but its confidence is under
  `below`: the model is unsure, an analyst should look.

Rules are stored as a list of dicts in the project setting `detection.rules`; each can be disabled and its
parameters edited. Nothing here imports Qt.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from anomaly_gui.core.formats.base import Annotation
from anomaly_gui.core.geometry import points_in_polygon

SETTING_KEY = "detection.rules"


@dataclass
class Zone:
    name: str
    polygon: np.ndarray  # (n, 2) x, y in image pixels
    id: int | None = None
    item_id: int | None = None

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> "Zone":
        return cls(rec["name"], np.asarray(rec["polygon"], dtype=np.float64).reshape(-1, 2), rec.get("id"), rec.get("item_id"))


@dataclass
class RuleContext:
    zones: list[Zone] = field(default_factory=list)
    known_classes: set[str] | None = None  # classes seen in training; None: unknown (rule does not fire)


@dataclass
class Rule:
    kind: str
    enabled: bool = True
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> "RuleKind":
        return RULE_KINDS[self.kind]

    def value(self, key: str) -> Any:
        return self.params.get(key, self.spec.defaults[key])

    def describe(self) -> str:
        return self.spec.describe(self)

    def check(self, det: Annotation, ctx: RuleContext) -> str | None:
        """The reason this detection is anomalous under the rule, or None."""
        return self.spec.check(self, det, ctx) if self.enabled else None


@dataclass
class RuleKind:
    kind: str
    title: str
    defaults: dict[str, Any]
    check: Callable[[Rule, Annotation, RuleContext], str | None]
    describe: Callable[[Rule], str]
    #: parameter -> (type, minimum, maximum) or list of choices, for the GUI editor
    schema: dict[str, Any]


RULE_KINDS: dict[str, RuleKind] = {}


def register_rule(kind: RuleKind) -> RuleKind:
    RULE_KINDS[kind.kind] = kind
    return kind


# -- geometry ----------------------------------------------------------------------------------
def box_inside_fraction(box: Sequence[float], polygon: np.ndarray, n: int = 16) -> float:
    """Share of the box area inside the polygon (n×n sample points at cell centres)."""
    x1, y1, x2, y2 = box
    xs = x1 + (np.arange(n) + 0.5) * (x2 - x1) / n
    ys = y1 + (np.arange(n) + 0.5) * (y2 - y1) / n
    gx, gy = np.meshgrid(xs, ys)
    return float(points_in_polygon(np.stack([gx.ravel(), gy.ravel()], 1), polygon).mean())


# -- the rule kinds --------------------------------------------------------------------------------
def _check_zone(rule: Rule, det: Annotation, ctx: RuleContext) -> str | None:
    x1, y1, x2, y2 = det.box()
    centre = np.array([[(x1 + x2) / 2, (y1 + y2) / 2]])
    for z in ctx.zones:
        if rule.value("mode") == "overlap":
            frac = box_inside_fraction((x1, y1, x2, y2), z.polygon)
            if frac >= float(rule.value("min_overlap")):
                return f"in restricted zone '{z.name}' ({frac:.0%} of the box)"
        elif points_in_polygon(centre, z.polygon)[0]:
            return f"in restricted zone '{z.name}'"
    return None


def _check_unseen(rule: Rule, det: Annotation, ctx: RuleContext) -> str | None:
    listed = [c.strip() for c in str(rule.value("classes")).split(",") if c.strip()]
    known = set(listed) if listed else ctx.known_classes
    if known is None or det.label in known:
        return None
    return f"class '{det.label}' not seen in training"


def _check_low_conf(rule: Rule, det: Annotation, ctx: RuleContext) -> str | None:
    cut = float(rule.value("below"))
    if det.score is not None and det.score < cut:
        return f"confidence {det.score:.2f} under {cut:.2f}"
    return None


register_rule(RuleKind(
    "zone", "Inside a restricted zone", {"mode": "centre", "min_overlap": 0.5}, _check_zone,
    lambda r: "Box centre inside a restricted zone" if r.value("mode") == "centre"
    else f"At least {float(r.value('min_overlap')):.0%} of the box inside a restricted zone",
    {"mode": ["centre", "overlap"], "min_overlap": (float, 0.01, 1.0)},
))
register_rule(RuleKind(
    "unseen_class", "Class not seen in training", {"classes": ""}, _check_unseen,
    lambda r: "Class not among " + (str(r.value("classes")) or "the training classes"),
    {"classes": str},
))
register_rule(RuleKind(
    "low_confidence", "Low confidence", {"below": 0.6}, _check_low_conf,
    lambda r: f"Confidence under {float(r.value('below')):.2f}",
    {"below": (float, 0.0, 1.0)},
))


def default_rules() -> list[Rule]:
    return [Rule("zone"), Rule("unseen_class"), Rule("low_confidence", enabled=False)]


# -- storage -----------------------------------------------------------------------------------------
def load_rules(project: Any) -> list[Rule]:
    """The project's rules (defaults when none were saved); unknown kinds from newer versions are skipped."""
    raw = project.setting(SETTING_KEY) if project is not None else None
    if not raw:
        return default_rules()
    out = []
    for r in raw:
        if isinstance(r, dict) and r.get("kind") in RULE_KINDS:
            out.append(Rule(r["kind"], bool(r.get("enabled", True)), dict(r.get("params", {}))))
    return out


def save_rules(project: Any, rules: Sequence[Rule]) -> None:
    project.set_setting(SETTING_KEY, [asdict(r) for r in rules])


def zones_for(project: Any, item_id: int | None) -> list[Zone]:
    return [Zone.from_record(z) for z in project.zones(item_id)] if project is not None else []


def evaluate_rules(dets: Sequence[Annotation], rules: Sequence[Rule], ctx: RuleContext) -> list[list[str]]:
    """For each detection, the reasons it is anomalous (empty list: normal)."""
    out = []
    for d in dets:
        reasons = [r for r in (rule.check(d, ctx) for rule in rules) if r]
        out.append(reasons)
    return out
