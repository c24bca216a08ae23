"""`anomaly-gui evaluate DATASET --engine yolo|retinanet`: fit a detector and report COCO-style mAP.

DATASET is any layout the format readers know (YOLO, Pascal VOC, COCO). Test items are those of
`--test OTHER` when given (refused when a file is byte-identical to a training file), else the dataset's
own `test` split, else the original split by group (10% test, then 20% of the rest for validation, seed 42;
tiles of one scene stay together, `core.splits`). Polygons and masks count as their bounding box; crowd
and difficult objects are ignored and counted. Problems met while reading (bad XML, boxes outside the image,
unknown classes, labels without images) are printed to stderr, one per file, and never stop the run.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.formats.base import DatasetItem, import_dataset
from anomaly_gui.core.metrics.detection import map_from_items
from anomaly_gui.core.splits import split_items
from anomaly_gui.engines.base import RunContext, Stopwatch, Task, get_engine
from anomaly_gui.evaluation import register_evaluator
from anomaly_gui.evaluation.checks import check_overlap

log = logging.getLogger(__name__)


def _read(path: Path) -> list[DatasetItem]:
    res = import_dataset(path)
    for problem in res.problems:
        print(f"warning: {problem}", file=sys.stderr)
    items = [it for it in res.items if it.kind in ("image", "frame")]
    if not items:
        raise DataError(path, f"no images found ({res.format} layout)")
    return items


def detection_splits(items: list[DatasetItem], test_items: list[DatasetItem] | None = None) -> tuple[list[DatasetItem], list[DatasetItem]]:
    """(items to fit on, items to test on) following the module's rules."""
    if test_items is not None:
        return items, test_items
    if not any(it.split == "test" for it in items):
        split_items(items, overwrite=True)
    return [it for it in items if it.split != "test"], [it for it in items if it.split == "test"]


def _stderr_ctx() -> RunContext:
    def on_log(entry: dict[str, Any]) -> None:
        print("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in entry.items()), file=sys.stderr)

    return RunContext(log=on_log)


@register_evaluator(Task.DETECTION)
def evaluate_detection(dataset: Path, engine: str, test: Path | None = None, device: str = "auto",
                       params: dict[str, Any] | None = None, save_model: Path | None = None,
                       allow_overlap: bool = False) -> dict[str, Any]:
    warnings: list[str] = []
    items = _read(Path(dataset))
    train, test_items = detection_splits(items, _read(Path(test)) if test else None)
    if not test_items:
        raise DataError(dataset, "no test items (the dataset is too small to split)")
    n_overlap = check_overlap(train, test_items, allow_overlap, warnings, test or dataset)
    eng = get_engine(engine)(params=params or {}, device=device)
    ctx = _stderr_ctx()
    sw = Stopwatch()
    eng.fit(train, ctx)
    fit_seconds = sw.seconds
    for problem in eng.stats.get("problems", []):
        print(f"warning: {problem}", file=sys.stderr)
    if save_model:
        eng.save(save_model)
    sw = Stopwatch()
    results = eng.score(test_items, ctx)
    score_seconds = sw.seconds
    res = map_from_items(test_items, [r.boxes or [] for r in results])
    counts = object_counts(test_items)
    if counts["n_ignored"]:
        warnings.append(f"{counts['n_ignored']} crowd / difficult object(s) ignored (neither true nor false positives)")
    min_conf = getattr(eng.params, "min_confidence", None)
    return {
        "map50": res.map50, "map50_95": res.map50_95, "fit_seconds": round(fit_seconds, 3),
        "items_per_second": round(len(test_items) / max(score_seconds, 1e-9), 3),
        "n_train": int(eng.stats.get("n_train", len(train))), "n_val": int(eng.stats.get("n_val", 0)),
        "n_test": len(test_items), "engine": engine, "device": str(eng.device),
        "per_class": res.per_class, "classes": eng.stats.get("classes", []), **counts,
        "threshold": min_conf,
        "threshold_source": "none chosen: mAP integrates over confidence; boxes below the engine's "
                            f"min_confidence ({min_conf}) are not reported",
        "n_overlap": n_overlap, "warnings": warnings,
        "boxes_at_0.5": sum(1 for r in results for b in (r.boxes or []) if (b.score or 0.0) >= 0.5),
        # how training ended (engines that log it): epochs-to-quality without re-running
        **{k: eng.stats[k] for k in ("best_epoch", "steps", "stopped") if k in eng.stats},
    }


def object_counts(items: list[DatasetItem]) -> dict[str, int]:
    """Ground-truth objects of `items` as the metric counts them: all, polygon / mask ones among them
    (measured as their bounding box), ignored ones (crowd, difficult)."""
    from anomaly_gui.core.metrics.detection import OBJECT_KINDS, is_ignored

    anns = [a for it in items for a in it.annotations if a.source != "model" and a.kind in OBJECT_KINDS]
    return {"n_objects": sum(1 for a in anns if not is_ignored(a)),
            "n_polygon_objects": sum(1 for a in anns if a.kind != "box" and not is_ignored(a)),
            "n_ignored": sum(1 for a in anns if is_ignored(a))}

