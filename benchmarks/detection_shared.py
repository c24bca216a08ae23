"""Detection figures on the shared HRSID chips and the bundled SAR sample (run from the project root).

    python benchmarks/detection_shared.py --engine retinanet [--param key=value ...] [--only hrsid|sample]

- `hrsid`: ../shared/data/hrsid_ships split once, by sorted file name, into 20 training chips and 6 test
  chips (indices 2, 6, 10, 14, 18, 22), laid out as two YOLO folders of symlinks in a temporary place;
  measured through `anomaly-gui evaluate TRAIN --test TEST --engine NAME --json` (the CLI's figures).
  No setting was chosen on the 6 test chips: the engine holds out its own validation chips from the 20.
- `sample`: `anomaly-gui evaluate sample_data/sar` (its own train/val/test split).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from evaluate_cli import evaluate  # the benchmarks' one `anomaly-gui evaluate` runner

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ANOMALY_GUI_DATA", ROOT / ".." / "shared" / "data"))
TEST_INDICES = (2, 6, 10, 14, 18, 22)


def hrsid_layout(dest: Path) -> tuple[Path, Path]:
    src = DATA / "hrsid_ships"
    images = sorted((src / "images").glob("*.jpg"))
    for k, img in enumerate(images):
        side = dest / ("test" if k in TEST_INDICES else "train")
        (side / "images").mkdir(parents=True, exist_ok=True)
        (side / "labels").mkdir(parents=True, exist_ok=True)
        (side / "images" / img.name).symlink_to(img.resolve())
        label = src / "labels" / f"{img.stem}.txt"
        if label.is_file():
            (side / "labels" / label.name).symlink_to(label.resolve())
    (dest / "train" / "classes.txt").write_text("ship\n")
    (dest / "test" / "classes.txt").write_text("ship\n")
    return dest / "train", dest / "test"



def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", default="retinanet")
    ap.add_argument("--param", action="append", default=[])
    ap.add_argument("--only", choices=["hrsid", "sample"], default=None)
    args = ap.parse_args()
    keys = ("map50", "map50_95", "fit_seconds", "wall_seconds", "n_train", "n_test", "boxes_at_0.5", "best_epoch", "stopped")
    if args.only in (None, "sample"):
        res = evaluate(ROOT / "sample_data" / "sar", None, args.engine, args.param)
        print("sample", json.dumps({k: res.get(k) for k in keys if k in res} | {"all": res}), flush=True)
    if args.only in (None, "hrsid"):
        with tempfile.TemporaryDirectory() as tmp:
            train, test = hrsid_layout(Path(tmp))
            res = evaluate(train, test, args.engine, args.param)
        print("hrsid", json.dumps({k: res.get(k) for k in keys if k in res} | {"all": res}), flush=True)


if __name__ == "__main__":
    main()
