"""A saved detector (a model file of `anomaly-gui evaluate ... --save-model`) scored on its held-out chips with and
without test-time views, through the engine's own scoring (`Engine.score`). The post-fit decisions (`box_refine`
auto, the calibration of every view set) are made again on the validation chips that its fit held out, as a fit
now makes them (`postfit.decide_views`); the test chips choose nothing.

    python benchmarks/detection_tta_shared.py MODEL.agm hrsid|sample [--tta d4] [--merge wbf_mean]

hrsid: the 20 / 6 chips of `detection_shared.py`; sample: `sample_data/sar` and its own split.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
from detection_shared import hrsid_layout  # noqa: E402

from anomaly_gui.core.imageio import read_image  # noqa: E402
from anomaly_gui.core.metrics.detection import map_from_items  # noqa: E402
from anomaly_gui.core.splits import train_val_split  # noqa: E402
from anomaly_gui.engines.base import Engine  # noqa: E402
from anomaly_gui.engines.detection_common import check_training_items  # noqa: E402
from anomaly_gui.engines.detection_common.cfar import CfarSettings  # noqa: E402
from anomaly_gui.engines.detection_common.postfit import CALIBRATION_FLOOR, decide_views  # noqa: E402
from anomaly_gui.engines.detection_common.tta import VIEWS  # noqa: E402
from anomaly_gui.evaluation.detection import _read, detection_splits  # noqa: E402


def redecide(eng, train: list, tta: str, merge: str) -> None:
    """`box_refine` auto and the calibrations, on the validation chips the fit held out, for views `tta`."""
    p = eng.params
    train_items, val_items = train_val_split(train)
    data = check_training_items(train_items, eng.classes)
    val = check_training_items(val_items, eng.classes) if val_items else data
    ref = val if any(len(b) for b in val.boxes) else data
    images = [eng._prepare(read_image(it.path)) for it in ref.items]
    found = eng._views_found(images, tuple(VIEWS), CALIBRATION_FLOOR)
    refine = p.box_refine if ref is val or p.box_refine != "auto" else "none"
    dec = decide_views(found, images, ref, eng._label_name, tta=tta, merge=merge, iou=eng._views_iou(), refine=refine,
                       cfar=CfarSettings(window=p.cfar_window, k=p.cfar_k, min_area=p.cfar_min_area), split=p.cfar_split,
                       min_confidence=p.min_confidence, calibrate=bool(p.calibrate))
    eng.stats.update(dec)
    print(json.dumps({"validation_chips": [Path(it.path).name for it in ref.items], "box_refine": dec["box_refine"],
                      "box_refine_validation": dec.get("box_refine_validation"), "raw_threshold": dec.get("raw_threshold")}),
          file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("data", choices=["hrsid", "sample"])
    ap.add_argument("--tta", default="d4")
    ap.add_argument("--merge", default="wbf_mean")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.data == "hrsid":
            train_dir, test_dir = hrsid_layout(Path(tmp))
            train, test = detection_splits(_read(train_dir), _read(test_dir))
        else:
            train, test = detection_splits(_read(ROOT / "sample_data" / "sar"))
        for tta in ("none", args.tta):
            eng = Engine.load(args.model, device="cpu")
            eng.params.tta, eng.params.tta_merge = tta, args.merge
            redecide(eng, train, tta, args.merge)
            t0 = time.perf_counter()
            results = eng.score(test)
            seconds = time.perf_counter() - t0
            m = map_from_items(test, [r.boxes or [] for r in results])
            print(json.dumps({"model": args.model, "data": args.data, "tta": tta, "merge": args.merge if tta != "none" else "-",
                              "map50": round(m.map50, 4), "map50_95": round(m.map50_95, 4), "n_test": len(test),
                              "boxes_at_0.5": sum(1 for r in results for b in (r.boxes or []) if (b.score or 0.0) >= 0.5),
                              "score_s_per_chip": round(seconds / max(1, len(test)), 2), "box_refine": eng.stats.get("box_refine")}),
                  flush=True)


if __name__ == "__main__":
    main()
