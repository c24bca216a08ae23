"""Docks follow the data: which docks a project's kind of imagery can use, and one layout per kind.

A project's *profile* is the set of imagery kinds it holds, read from its items and imports:
`product` (plain / MVTec images), `detection` (images with boxes: YOLO, VOC, COCO), `wildlife`
(camera traps) and `video` (frames or video files). Each dock lists the kinds it serves
(`PANEL_KINDS`; a dock not listed serves every kind). On opening a project the window shows the docks of
its kinds and hides the others (they stay in View ▸ Panels), restoring the layout last used for that
profile from QSettings (`layout/<profile>`) when there is one, else the default sizes for the profile.
"""
from __future__ import annotations

from typing import Any

KINDS = ("product", "detection", "wildlife", "video")

#: dock id -> the imagery kinds it is useful for (docks not listed: every kind)
PANEL_KINDS: dict[str, frozenset[str]] = {
    "review": frozenset({"product"}),
    "train": frozenset({"product", "video"}),
    "metrics": frozenset({"product", "video"}),  # image AUROC / AUPRO / pixel figures of image and frame runs
    "labeling": frozenset({"product", "detection", "wildlife"}),
    "detection": frozenset({"detection"}),
    "video_player": frozenset({"video"}),
    "cluster_view": frozenset({"wildlife"}),
}

#: the dock an analyst comes for, per kind (raised in its tab group, given room)
MAIN_DOCK: dict[str, str] = {"product": "review", "detection": "detection", "wildlife": "cluster_view",
                             "video": "video_player"}

_DETECTION_FORMATS = {"yolo", "voc", "coco", "labelme"}
_WILDLIFE_FORMATS = {"coco_camtrap", "camtrap"}
_PRODUCT_FORMATS = {"mvtec", "folder"}
_RUN_KINDS = {"image": "product", "detection": "detection", "embedding": "wildlife", "video": "video"}


def project_profile(project: Any) -> frozenset[str]:
    """The imagery kinds a project holds, from its items, its imports and its runs (empty without items)."""
    if project is None or project.count_items() == 0:
        return frozenset()
    kinds: set[str] = set()
    if project.count_items(kind="frame") or project.count_items(kind="video"):
        kinds.add("video")
    formats = {str(rec.get("format", "")) for rec in project.imports()}
    if formats & _WILDLIFE_FORMATS:
        kinds.add("wildlife")
    if formats & _DETECTION_FORMATS:
        kinds.add("detection")
    kinds |= {_RUN_KINDS[r.task] for r in project.runs() if r.task in _RUN_KINDS}  # what was trained on it
    if formats & _PRODUCT_FORMATS or (project.count_items(kind="image") and not kinds - {"video"}):
        kinds.add("product")  # normal / defective images, or images that are neither boxes nor camera traps
    return frozenset(kinds)


def profile_key(profile: frozenset[str]) -> str:
    """Name of the profile in settings ('' for no project)."""
    return "+".join(k for k in KINDS if k in profile)


def dock_wanted(panel_id: str, profile: frozenset[str]) -> bool:
    """Whether the dock serves one of the profile's kinds (every dock is wanted without a profile)."""
    kinds = PANEL_KINDS.get(panel_id)
    return not profile or kinds is None or bool(kinds & profile)


def main_docks(profile: frozenset[str]) -> list[str]:
    return [MAIN_DOCK[k] for k in KINDS if k in profile]
