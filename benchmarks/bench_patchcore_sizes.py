"""PatchCore fit and scoring time on the 1024 px screw images at several input sizes (and coreset ratios), the
cases interleaved in one process so they see the same machine load: fit on 20 `train/good` images, score the
20 test images (the second pass is timed, after one warm-up image). One JSON line per case; read the ratios.

    python benchmarks/bench_patchcore_sizes.py [--case '{"image_size": 256}' ...] [--rounds 2]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CASES = ['{"image_size": 256}', '{"image_size": 384}', '{"image_size": 512}']


def main() -> None:
    from anomaly_gui.engines import get_engine

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", action="append", default=[], help="JSON engine parameters (repeatable)")
    ap.add_argument("--rounds", type=int, default=1, help="times each case is run, interleaved")
    args = ap.parse_args()
    screw = REPO.parent / "shared" / "data" / "mvtec_screw"
    test = sorted(str(p) for p in (screw / "test").glob("*/*.png"))
    train = sorted(str(p) for p in (screw / "train" / "good").glob("*.png"))[:20]
    cases = [json.loads(c) for c in args.case or CASES]
    times: dict[int, dict[str, list[float]]] = {i: {"fit_s": [], "score_img_s": []} for i in range(len(cases))}
    for _ in range(args.rounds):
        for i, kw in enumerate(cases):
            eng = get_engine("patchcore")(device="cpu", **kw)
            t = time.perf_counter()
            eng.fit(train)
            times[i]["fit_s"].append(time.perf_counter() - t)
            eng.score(test[:1])
            t = time.perf_counter()
            eng.score(test)
            times[i]["score_img_s"].append(len(test) / (time.perf_counter() - t))
    for i, kw in enumerate(cases):
        row = {"params": kw, "fit_s": round(min(times[i]["fit_s"]), 2),
               "score_img_s": round(max(times[i]["score_img_s"]), 2), "load": round(os.getloadavg()[0], 2),
               "threads": int(os.environ.get("OMP_NUM_THREADS", "0") or 0)}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
