"""Test-time views (`tta`) compared on saved CV fold models (YOLO or RetinaNet), without training: one network pass
per D4 view and chip, then every view set x fusion (`detection_common/tta.py`) re-scored from those detections.
Each variant's post-fit decisions (`box_refine` auto, the calibration) are made on the fold's inner validation
chips with that variant's views (`postfit.decide_views`, as a fit with that `tta` makes them); the figures are on the
fold's own chips: mAP50, mAP50-95, boxes >= 0.5 (true ones at IoU 0.5), and the network time per chip and view.

    python benchmarks/detection_tta_rescore.py MODEL.agm:FOLD [MODEL.agm:FOLD ...] [--out FILE.jsonl] [--refine cfar]
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
from detection_cv import FOLDS, training_items  # noqa: E402

from anomaly_gui.core.imageio import read_image  # noqa: E402
from anomaly_gui.core.metrics.detection import Boxes, mean_average_precision  # noqa: E402
from anomaly_gui.core.splits import train_val_split  # noqa: E402
from anomaly_gui.engines.base import Engine  # noqa: E402
from anomaly_gui.engines.detection_common import check_training_items, item_boxes  # noqa: E402
from anomaly_gui.engines.detection_common.calibration import calibrate, match_detections  # noqa: E402
from anomaly_gui.engines.detection_common.cfar import CfarSettings  # noqa: E402
from anomaly_gui.engines.detection_common.postfit import CALIBRATION_FLOOR, above, decide_views, fused_views, snap_all  # noqa: E402
from anomaly_gui.engines.detection_common.tta import TTA_MERGES, VIEW_SETS, VIEWS  # noqa: E402


def figures(gt: list[tuple[np.ndarray, list[str]]], found: list[dict[str, np.ndarray]], label_name) -> dict:
    res = mean_average_precision([Boxes(g, lab) for g, lab in gt],
                                 [Boxes(f["boxes"], [label_name(int(c)) for c in f["labels"]], f["scores"]) for f in found])
    at05 = [np.c_[f["boxes"][f["scores"] >= 0.5], f["scores"][f["scores"] >= 0.5]] for f in found]
    _, tp, n = match_detections([g for g, _ in gt], at05, 0.5)
    return {"map50": round(float(res.map50), 4), "map50_95": round(float(res.map50_95), 4),
            "boxes_at_0.5": int(sum(len(a) for a in at05)), "true_at_0.5": int(tp.sum()), "ships": n}


def views_timed(eng, images: list[np.ndarray]) -> tuple[list[dict], float]:
    """Every D4 view's detections per image, and the network seconds per chip and view."""
    t0 = time.perf_counter()
    found = eng._views_found(images, tuple(VIEWS), CALIBRATION_FLOOR)
    return found, (time.perf_counter() - t0) / max(1, len(images) * len(VIEWS))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("models", nargs="+", help="MODEL.agm:FOLD")
    ap.add_argument("--out", default=None)
    ap.add_argument("--refine", default=None, choices=["auto", "cfar", "none"], help="override the models' box_refine (diagnosis)")
    args = ap.parse_args()
    items = training_items()
    scene = lambda it: Path(it.path).name.split("_")[0]  # noqa: E731
    out = open(args.out, "a") if args.out else None
    for spec in args.models:
        path, _, fold = spec.rpartition(":")
        f = int(fold)
        test = [copy.deepcopy(it) for it in items if scene(it) in FOLDS[f]]
        train = [copy.deepcopy(it) for it in items if scene(it) not in FOLDS[f]]
        for it in train + test:
            it.split = ""
        eng = Engine.load(path, device="cpu")
        p = eng.params
        p.tta = "none"
        train_items, val_items = train_val_split(train)
        val = check_training_items(val_items, eng.classes) if val_items else check_training_items(train_items, eng.classes)
        vimg = [eng._prepare(read_image(it.path)) for it in val.items]
        timg = [eng._prepare(read_image(it.path)) for it in test]
        gt = [item_boxes(it) for it in test]
        vfound, _ = views_timed(eng, vimg)
        tfound, per_view_s = views_timed(eng, timg)
        cfar = CfarSettings(window=p.cfar_window, k=p.cfar_k, min_area=p.cfar_min_area)
        refine = args.refine or p.box_refine
        for name, views in VIEW_SETS.items():
            for merge in (TTA_MERGES if len(views) > 1 else TTA_MERGES[:1]):
                t0 = time.perf_counter()
                dec = decide_views(vfound, vimg, val, eng._label_name, tta=name, merge=merge, iou=eng._views_iou(), refine=refine,
                                   cfar=cfar, split=p.cfar_split, min_confidence=p.min_confidence, calibrate=True)
                shift = float(dec["score_shift"])
                floor = float(calibrate(np.array([p.min_confidence]), -shift)[0]) if shift else p.min_confidence
                t1 = time.perf_counter()
                found = fused_views(tfound, views, eng._views_iou(), merge, floor)
                if dec["box_refine"] == "cfar":
                    found = snap_all(found, timg, cfar, p.cfar_split)
                found = [above({**x, "scores": calibrate(x["scores"], shift) if shift else x["scores"]}, p.min_confidence) for x in found]
                post_s = (time.perf_counter() - t1) / max(1, len(timg))
                row = {"model": path, "engine": eng.name, "fold": f, "tta": name, "merge": merge if len(views) > 1 else "-",
                       "views": len(views), **figures(gt, found, eng._label_name), "box_refine": dec["box_refine"],
                       "refine_validation": dec.get("box_refine_validation"), "raw_threshold": round(dec["raw_threshold"], 4),
                       "network_s_per_chip": round(per_view_s * len(views), 2), "fusion_snap_s_per_chip": round(post_s, 3),
                       "decide_s": round(t1 - t0, 2)}
                print(json.dumps(row), flush=True)
                if out:
                    out.write(json.dumps(row) + "\n")
                    out.flush()


if __name__ == "__main__":
    main()
