"""YOLO fold models saved by `detection_cv.py --engine yolo --save DIR` re-scored with the post-fit variants
(learnt boxes / CFAR snap / box_refine auto; raw / calibrated confidences; min_confidence 0.05 / 0.01) in one
network pass per chip. Every decision (auto, the calibration) is made on the fold's inner validation chips,
as the fit makes it; the figures are pooled over the folds' own chips, with boxes >= 0.5 against ships.

    python benchmarks/detection_postfit_rescore.py DIR [FOLDS]      # FOLDS: 0,1,2,3 (default)
"""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
from detection_cv import FOLDS, training_items  # noqa: E402

from anomaly_gui.core.imageio import read_image
from anomaly_gui.core.metrics.detection import Boxes, mean_average_precision
from anomaly_gui.core.splits import train_val_split
from anomaly_gui.engines.base import Engine
from anomaly_gui.engines.detection_common import check_training_items, item_boxes
from anomaly_gui.engines.detection_common.calibration import best_f1_threshold, calibrate, logit, match_detections
from anomaly_gui.engines.detection_common.cfar import CfarSettings
from anomaly_gui.engines.detection_common.postfit import score_shift, snap_all

root = Path(sys.argv[1])
folds = [int(x) for x in (sys.argv[2] if len(sys.argv) > 2 else "0,1,2,3").split(",")]
items = training_items()
scene = lambda it: Path(it.path).name.split("_")[0]  # noqa: E731


def mapv(gt, lab, found, min_conf):
    g = [Boxes(b, ["s"] * len(b)) for b in gt]
    d = [Boxes(f["boxes"][f["scores"] >= min_conf], ["s"] * int((f["scores"] >= min_conf).sum()), f["scores"][f["scores"] >= min_conf]) for f in found]
    r = mean_average_precision(g, d)
    return float(r.map50), float(r.map50_95)


pooled = {}
for f in folds:
    test = [copy.deepcopy(it) for it in items if scene(it) in FOLDS[f]]
    train = [copy.deepcopy(it) for it in items if scene(it) not in FOLDS[f]]
    for it in train + test:
        it.split = ""
    eng = Engine.load(root / f"fold{f}.agm", device="cpu")
    hist = eng.stats.get("history", [])
    _, val_items = train_val_split(train)
    val = check_training_items(val_items, eng.classes)
    eng.params.box_refine, eng.stats["score_shift"] = "none", 0.0
    vimg = [eng._prepare(read_image(it.path)) for it in val.items]
    timg = [eng._prepare(read_image(it.path)) for it in test]
    fv, ft = eng._raw(vimg, floor=0.001), eng._raw(timg, floor=0.001)
    cf = CfarSettings()
    variants = {"none": (fv, ft), "cfar": (snap_all(fv, vimg, cf, True), snap_all(ft, timg, cf, True))}
    tgt = [item_boxes(it)[0] for it in test]
    vm = {k: mapv(val.boxes, None, v[0], 0.05) for k, v in variants.items()}
    choice = "cfar" if vm["cfar"][0] >= vm["none"][0] else "none"
    row = {"fold": f, "epochs": len(hist), "val_map50_hist": [round(e["map50"], 3) for e in hist], "val_refine": vm, "choice": choice}
    for name, refine in (("none", "none"), ("cfar", "cfar"), ("auto", choice)):
        v, t = variants[refine]
        cal = score_shift(val.boxes, [np.c_[x["boxes"], x["scores"]] for x in v])
        wthr, wf1 = best_f1_threshold(val.boxes, [np.c_[x["boxes"], x["scores"]] for x in v], bounds=(0.02, 0.9999))
        row[f"wide_{name}"] = (round(wthr, 5), round(wf1, 3))
        for calname, shift in (("raw", 0.0), ("cal", cal["score_shift"]), ("wide", float(logit(wthr)))):
            tt = [{**x, "scores": calibrate(x["scores"], shift) if shift else x["scores"]} for x in t]
            for mc in (0.05, 0.01):
                if calname != "cal" and mc == 0.01:
                    continue
                # the floor is on calibrated scores (as predict_arrays); "wide": the best-F1 threshold bounded at 0.9999, not 0.98
                key = f"{name}/{calname}/{mc}"
                pooled.setdefault(key, {"gt": [], "dets": []})
                pooled[key]["gt"] += tgt
                pooled[key]["dets"] += [{**x, "boxes": x["boxes"][x["scores"] >= mc], "scores": x["scores"][x["scores"] >= mc]} for x in tt]
        row[f"shift_{name}"] = round(cal["score_shift"], 3)
        row[f"rawthr_{name}"] = round(cal["raw_threshold"], 3)
    print(json.dumps(row), flush=True)

for key, p in pooled.items():
    m50, m5095 = mapv(p["gt"], None, p["dets"], 0.0)
    at05 = [np.c_[x["boxes"][x["scores"] >= 0.5], x["scores"][x["scores"] >= 0.5]] for x in p["dets"]]
    _, tp, n = match_detections(p["gt"], at05, 0.5)
    nb = int(sum(len(a) for a in at05))
    print(json.dumps({"variant": key, "map50": round(m50, 4), "map50_95": round(m5095, 4), "ships": n, "boxes_at_0.5": nb,
                      "tp_at_0.5": int(tp.sum()), "precision_at_0.5": round(tp.sum() / max(nb, 1), 3),
                      "recall_at_0.5": round(tp.sum() / max(n, 1), 3)}), flush=True)
