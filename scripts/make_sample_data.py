"""Write the bundled sample data (deterministic; numpy + OpenCV only): `python scripts/make_sample_data.py [OUT]`.

OUT defaults to the repository's `sample_data/`. Prints the size of each subset.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from anomaly_gui.sample_data import REPO_SAMPLE, SUBSETS, generate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=REPO_SAMPLE, help="output folder (default: sample_data/)")
    args = parser.parse_args(argv)
    out = generate(args.out)
    total = 0
    for name in SUBSETS:
        files = [p for p in (out / name).rglob("*") if p.is_file()]
        size = sum(p.stat().st_size for p in files)
        total += size
        print(f"{name:14s} {len(files):5d} files {size / 1e6:6.2f} MB")
    print(f"{'total':14s} {'':5s}       {total / 1e6:6.2f} MB  -> {out}")
    return 0 if total < 10e6 else 1


if __name__ == "__main__":
    sys.exit(main())
