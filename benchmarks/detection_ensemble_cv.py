"""Compare snapshot, seed and test-time-flip ensembles of RetinaNet on the scene-grouped CV folds of
`detection_cv.py` (20 HRSID training chips; the 6 test chips are never read), without training again.

    python benchmarks/detection_cv.py --param seed=S --save RUN_S/models --save-epochs RUN_S/epochs   # once per seed
    python benchmarks/detection_ensemble_cv.py RUN_0 [RUN_1 ...] [--tta]

For every fold, each rule picks checkpoints (epoch weights saved by `--save-epochs`, with their log entry and
validation mAP on the fold's own inner validation chips: no rule looks at the fold's held-out chips), their
boxes on the fold's chips are fused by weighted box fusion exactly as the engine fuses test-time flips, and
one mAP is pooled over the 20 chips. Detections of a checkpoint are computed once and reused by every rule.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
from detection_cv import FOLDS, training_items  # noqa: E402


def epochs_of(run: Path, fold: int) -> list[dict]:
    folder = run / "epochs" / f"fold{fold}"
    entries = [json.loads(p.read_text()) for p in folder.glob("epoch*.json")]
    return sorted(entries, key=lambda e: e["epoch"])


def best_key(e: dict) -> tuple:
    return (round(e.get("map50", -1), 4), round(e.get("map50_95", -1), 4), e["epoch"])


def rules(k_max: int) -> dict[str, Callable[[list[dict]], list[int]]]:
    """Checkpoint choices from the log entries of one run (validation mAP of the inner validation chips only)."""
    def best(es: list[dict]) -> list[int]:  # the engine keeps the first epoch with the best validation mAP
        top = max(best_key(e)[:2] for e in es)
        return [next(e["epoch"] for e in es if best_key(e)[:2] == top)]

    out: dict[str, Callable[[list[dict]], list[int]]] = {"best": best, "last": lambda es: [es[-1]["epoch"]]}
    for k in range(2, k_max + 1):
        # as the engine's `snapshots`: the best epoch, then the next best validated (later first at equal mAP)
        out[f"top{k}"] = lambda es, k=k: (best(es) + [e["epoch"] for e in sorted(es, key=best_key, reverse=True) if e["epoch"] != best(es)[0]])[:k]
        out[f"last{k}"] = lambda es, k=k: [e["epoch"] for e in es[-k:]]
        out[f"best+last{k - 1}"] = lambda es, k=k: list(dict.fromkeys(best(es) + [e["epoch"] for e in es[::-1]]))[:k]
        # evenly spaced over the second half of the run (cyclic-free snapshot ensembling)
        out[f"spread{k}"] = lambda es, k=k: sorted({es[int(round(x))]["epoch"] for x in np.linspace(len(es) // 2, len(es) - 1, k)})
    return out


def main() -> None:
    from anomaly_gui.core.imageio import read_image
    from anomaly_gui.core.metrics.detection import Boxes, mean_average_precision
    from anomaly_gui.engines.base import Engine
    from anomaly_gui.engines.detection_common import item_boxes
    from anomaly_gui.engines.detection_common.cfar import CfarSettings, bright_blobs, snap_to_blobs
    from anomaly_gui.engines.detection_common.tta import fuse_variants
    from anomaly_gui.engines.retinanet import load_weights
    from safetensors.torch import load_file

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="folders with models/fold<k>.agm and epochs/fold<k>/")
    ap.add_argument("--tta", action="store_true", help="also compare test-time flips on the chosen checkpoints")
    ap.add_argument("--refine", action="store_true", help="snap the fused boxes to CFAR bright blobs (box_refine=cfar)")
    ap.add_argument("--split", action="store_true", help="with --refine: a box over several blobs gives one box per blob (cfar_split)")
    ap.add_argument("--k", type=int, default=4, help="largest number of checkpoints per run in a rule")
    ap.add_argument("--folds", default="0,1,2,3")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    items = training_items()
    scene = lambda it: Path(it.path).name.split("_")[0]  # noqa: E731
    chosen_rules = rules(args.k)
    gts: list[Boxes] = []
    # results[rule][tta][n_runs] -> list of fused detections over all folds' chips
    fused: dict[str, list] = {}
    for f in (int(x) for x in args.folds.split(",")):
        test = [copy.deepcopy(it) for it in items if scene(it) in FOLDS[f]]
        gts += [Boxes(*item_boxes(it)) for it in test]
        cache: dict[tuple[int, int, bool], list[list[dict]]] = {}  # (run, epoch, flips) -> per image, per flip detections
        engines = [Engine.load(run / "models" / f"fold{f}.agm", device="cpu") for run in args.runs]
        images = [engines[0]._prepare(read_image(it.path)) for it in test]
        p0 = engines[0].params
        blobs = [bright_blobs(im, CfarSettings(window=p0.cfar_window, k=p0.cfar_k, min_area=p0.cfar_min_area)) if args.refine else None
                 for im in images]

        def detections(r: int, epoch: int, tta: bool) -> list[list[dict]]:
            if (r, epoch, tta) not in cache:
                eng = engines[r]
                net = eng._build(len(eng.classes), None)
                load_weights(net, load_file(str(args.runs[r] / "epochs" / f"fold{f}" / f"epoch{epoch}.safetensors")))
                eng.params.tta = tta
                cache[(r, epoch, tta)] = eng._variants(images, [net])
            return cache[(r, epoch, tta)]

        merge_iou, classes = float(engines[0].params.merge_iou), engines[0].classes
        for name, rule in chosen_rules.items():
            picks = [rule(epochs_of(run, f)) for run in args.runs]
            print(f"fold {f} {name}: " + " | ".join(",".join(map(str, p)) for p in picks), file=sys.stderr, flush=True)
            for n_runs in range(1, len(args.runs) + 1):
                for tta in ((False, True) if args.tta else (False,)):
                    if tta and name not in ("best", "top2", "last2", "best+last1"):
                        continue
                    key = f"{name}{'+tta' if tta else ''} x{n_runs} seeds"
                    per_image = [[] for _ in images]
                    for r in range(n_runs):
                        for ep in picks[r]:
                            per_image = [acc + variants for acc, variants in zip(per_image, detections(r, ep, tta))]
                    for v, bl in zip(per_image, blobs):
                        d = fuse_variants(v, iou=merge_iou)
                        d = snap_to_blobs(d, bl, split=args.split) if bl is not None else d
                        fused.setdefault(key, []).append((d["boxes"], [classes[int(c) - 1] for c in d["labels"]], d["scores"]))
    rows = []
    for key, dets in fused.items():
        res = mean_average_precision(gts, [Boxes(b.reshape(-1, 4), lab, sc) for b, lab, sc in dets])
        rows.append({"rule": key, "pooled_map50": round(res.map50, 4), "pooled_map50_95": round(res.map50_95, 4)})
        print(json.dumps(rows[-1] | {"refine": args.refine}), flush=True)
    if args.out:
        Path(args.out).write_text("\n".join(json.dumps(r) for r in rows) + "\n")


if __name__ == "__main__":
    main()
