"""ELPV solar cells (Buerhop-Lutz / Deitsch et al.) laid out as MVTec AD folders for `anomaly-gui evaluate`.

The data is not in ../shared/data: it comes from the PyPI wheel `elpv-dataset` (CC BY-NC-SA 4.0), which we
unpack outside the repository (`pip download elpv-dataset --no-deps -d /tmp/elpv` and unzip the wheel).
Issue 13's case is the monocrystalline cells: fit on 300 good cells, test good vs defective ones. Defective
here means defect probability 1.0 in `labels.csv`; cells rated 1/3 or 2/3 are left out (uncertain). With a
fixed seed the 588 good mono cells are split 300 train / 138 validation / 150 test, and the 313 defective
ones 150 validation / 163 test, into two layouts sharing `train/good` (symlinks, nothing copied):

    OUT/val/{train/good, test/good, test/defect}   choose settings here
    OUT/test/{train/good, test/good, test/defect}  read once for the before/after

    python benchmarks/elpv_layout.py /path/to/elpv_dataset/data OUT [--type mono]
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np


def read_labels(data: Path) -> list[tuple[str, float, str]]:
    rows = []
    with open(data / "labels.csv", encoding="utf-8") as f:
        for line in csv.reader(f, delimiter=" ", skipinitialspace=True):
            if line:
                rows.append((line[0], float(line[1]), line[2]))
    return rows


def make_layout(data: Path, out: Path, cell_type: str = "mono", seed: int = 0) -> dict[str, dict[str, int]]:
    rows = [r for r in read_labels(data) if r[2] == cell_type]
    good = sorted(r[0] for r in rows if r[1] == 0.0)
    bad = sorted(r[0] for r in rows if r[1] == 1.0)
    rng = np.random.default_rng(seed)
    good = [good[k] for k in rng.permutation(len(good))]
    bad = [bad[k] for k in rng.permutation(len(bad))]
    n_val_good = len(good) - 300 - 150
    parts = {"train": good[:300], "val_good": good[300:300 + n_val_good], "test_good": good[300 + n_val_good:],
             "val_bad": bad[:150], "test_bad": bad[150:]}
    counts: dict[str, dict[str, int]] = {}
    for name in ("val", "test"):
        folders = {"train/good": parts["train"], "test/good": parts[f"{name}_good"], "test/defect": parts[f"{name}_bad"]}
        for sub, files in folders.items():
            d = out / name / sub
            d.mkdir(parents=True, exist_ok=True)
            for rel in files:
                link = d / Path(rel).name
                if not link.exists():
                    link.symlink_to((data / rel).resolve())
        counts[name] = {k: len(v) for k, v in folders.items()}
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path, help="the elpv_dataset/data folder (labels.csv, images/)")
    ap.add_argument("out", type=Path)
    ap.add_argument("--type", default="mono", choices=["mono", "poly"])
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    print(make_layout(a.data, a.out, a.type, a.seed))


if __name__ == "__main__":
    main()
