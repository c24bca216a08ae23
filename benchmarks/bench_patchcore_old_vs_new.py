"""PatchCore with the settings before issue 13 (`border=zero normalize=false image_size=256`) against the
current defaults, one after the other in one process (so both see the same machine load): fit on the
300-image ELPV-sized set of `bench_patchcore_fit300.py` and scoring of 300 px images, then scoring of the
1024 px screw test images after a 20-image fit. Prints one JSON line per case; read the ratios.

    python benchmarks/bench_patchcore_old_vs_new.py
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

OLD = {"border": "zero", "normalize": False, "image_size": 256}


def main() -> None:
    from bench_patchcore_fit300 import make_images

    from anomaly_gui.engines import get_engine

    screw = REPO.parent / "shared" / "data" / "mvtec_screw"
    test = sorted(str(p) for p in (screw / "test").glob("*/*.png"))
    train = sorted(str(p) for p in (screw / "train" / "good").glob("*.png"))[:20]
    with tempfile.TemporaryDirectory() as d:
        paths = make_images(screw, Path(d))
        for name, kw in (("old", OLD), ("new", {})):
            eng = get_engine("patchcore")(device="cpu", **kw)
            load = os.getloadavg()[0]
            t = time.perf_counter()
            eng.fit(paths)
            fit = time.perf_counter() - t
            eng.score(paths[:2])
            t = time.perf_counter()
            eng.score(paths[:40])
            rate = 40 / (time.perf_counter() - t)
            print(json.dumps({"side": name, "image_size": eng.params.image_size, "fit_s": round(fit, 1),
                              "score_img_s_300px": round(rate, 2), "coreset_s": eng.stats["coreset_seconds"],
                              "n_patches": eng.stats["n_patches"], "load": round(load, 2)}), flush=True)
    for name, kw in (("old", OLD), ("new", {})):
        eng = get_engine("patchcore")(device="cpu", **kw)
        eng.fit(train)
        eng.score(test[:2])
        t = time.perf_counter()
        eng.score(test)
        rate = len(test) / (time.perf_counter() - t)
        print(json.dumps({"side": name, "image_size": eng.params.image_size,
                          "score_img_s_1024px_screw": round(rate, 2), "load": round(os.getloadavg()[0], 2)}), flush=True)


if __name__ == "__main__":
    main()
