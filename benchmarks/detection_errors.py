"""Error analysis of saved detection CV fold models (training chips only): per fold chip, every true object
(found: score, rank in its chip, IoU; missed: the nearest detection) and every false alarm (size, score,
overlap with the truth, peak grey level).

    python benchmarks/detection_errors.py DIR [--seeds 0,1,2] [--folds 0] [--param key=value ...]

DIR holds `seed<N>/fold<k>.agm` (or `fold<k>.agm` without --seeds) written by `detection_cv.py --save`.
Matching is greedy by score at IoU 0.5, as the mAP50 of `core.metrics.detection` does.
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
from detection_cv import FOLDS, training_items


def chip_report(gt: np.ndarray, dets: np.ndarray, grey: np.ndarray, min_score: float) -> list[str]:
    """Lines for one chip: dets are rows x1, y1, x2, y2, score."""
    from anomaly_gui.core.metrics.detection import box_iou

    dets = dets[np.argsort(-dets[:, 4], kind="mergesort")]
    iou = box_iou(gt, dets[:, :4]) if len(gt) and len(dets) else np.zeros((len(gt), len(dets)))
    taken: dict[int, int] = {}  # detection -> object
    for j in range(len(dets)):
        free = [i for i in range(len(gt)) if i not in taken.values() and iou[i, j] >= 0.5]
        if free:
            taken[j] = max(free, key=lambda i: iou[i, j])
    lines = []
    for i, b in enumerate(gt):
        size = f"{b[2] - b[0]:.0f}x{b[3] - b[1]:.0f}"
        hits = [j for j, k in taken.items() if k == i]
        if hits:
            j = hits[0]
            lines.append(f"    found {size} score {dets[j, 4]:.3f} rank {int((dets[:, 4] > dets[j, 4]).sum())} iou {iou[i, j]:.2f}")
        else:
            j = int(iou[i].argmax()) if len(dets) else -1
            near = f"best iou {iou[i, j]:.2f} (score {dets[j, 4]:.3f})" if j >= 0 and iou[i, j] > 0 else "no detection overlaps"
            lines.append(f"    MISSED {size} at ({(b[0] + b[2]) / 2:.0f},{(b[1] + b[3]) / 2:.0f}): {near}")
    for j, d in enumerate(dets):
        if j in taken or d[4] < min_score:
            continue
        patch = grey[int(d[1]):int(np.ceil(d[3])), int(d[0]):int(np.ceil(d[2]))]
        overlap = iou[:, j].max() if len(gt) else 0.0
        lines.append(f"    false alarm {d[2] - d[0]:.0f}x{d[3] - d[1]:.0f} at ({(d[0] + d[2]) / 2:.0f},{(d[1] + d[3]) / 2:.0f}) "
                     f"score {d[4]:.3f} iou with truth {overlap:.2f} peak {patch.max() if patch.size else 0:.0f}")
    return lines


def main() -> None:
    from anomaly_gui.cli.evaluate import parse_params
    from anomaly_gui.core.imageio import read_image
    from anomaly_gui.core.metrics.detection import map_from_items
    from anomaly_gui.engines.base import Engine
    from anomaly_gui.engines.detection_common import item_boxes

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--seeds", default="")
    ap.add_argument("--folds", default="0,1,2,3")
    ap.add_argument("--param", action="append", default=[])
    ap.add_argument("--min-score", type=float, default=0.05, help="false alarms below this score are not listed")
    args = ap.parse_args()
    items = training_items()
    scene = lambda it: Path(it.path).name.split("_")[0]
    for seed in [s for s in args.seeds.split(",") if s.strip()] or [None]:
        for f in (int(x) for x in args.folds.split(",")):
            eng = Engine.load(Path(args.folder) / (f"seed{seed}" if seed is not None else "") / f"fold{f}.agm", device="cpu")
            for k, v in parse_params(args.param, type(eng.params)).items():
                setattr(eng.params, k, v)
            test = [copy.deepcopy(it) for it in items if scene(it) in FOLDS[f]]
            preds = [r.boxes or [] for r in eng.score(test)]
            m = map_from_items(test, preds)
            print(f"== seed {seed} fold {f}: mAP50 {m.map50:.3f}, steps {eng.stats.get('steps')}, anchor {eng.stats.get('anchor_base')}")
            for it, p in zip(test, preds):
                grey = np.asarray(read_image(it.path), np.float32)
                grey = grey.mean(axis=2) if grey.ndim == 3 else grey
                dets = np.array([[b.geometry[k] for k in ("x1", "y1", "x2", "y2")] + [b.score] for b in p]).reshape(-1, 5)
                gt = item_boxes(it)[0]
                print(f"  {Path(it.path).name}: {len(gt)} objects, {len(dets)} detections, {int((dets[:, 4] >= 0.5).sum())} at >= 0.5")
                print("\n".join(chip_report(gt, dets, grey, args.min_score)))


if __name__ == "__main__":
    main()
