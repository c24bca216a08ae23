"""PatchCore fit on 300 images (ELPV-sized, 300x300 gray): wall and CPU time, coreset time, and how well
the approximate coreset covers the training patches (distance of sampled patches to their nearest bank patch).

ELPV is not in ../shared/data, so the 300 images are the 60 MVTec screw training images in 5 orientations
(rotations by 0/90/180/270 degrees and a mirror), resized to 300x300 and written to a temporary folder.
Same patch count as the issue's ELPV case: 300 x 32 x 32 = 307,200 patches -> 30,720 kept.

    python benchmarks/bench_patchcore_fit300.py [--device cpu] [--chunk 8192]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def make_images(src: Path, out: Path, n: int = 300, size: int = 300) -> list[Path]:
    import cv2

    files = sorted((src / "train" / "good").glob("*.png"))
    paths = []
    for k in range(n):
        img = cv2.imread(str(files[k % len(files)]), cv2.IMREAD_GRAYSCALE)
        variant = k // len(files)
        img = cv2.flip(img, 1) if variant == 4 else (img if variant == 0 else cv2.rotate(img, variant - 1))
        p = out / f"{k:03d}.png"
        cv2.imwrite(str(p), cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA))
        paths.append(p)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "mvtec_screw")
    ap.add_argument("--weights", type=Path, default=REPO.parent / "shared" / "weights")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--chunk", type=int, default=None, help="coreset_chunk (default: the engine's)")
    args = ap.parse_args()
    import torch

    from anomaly_gui.engines import get_engine

    with tempfile.TemporaryDirectory() as d:
        paths = make_images(args.data, Path(d))
        overrides = {} if args.chunk is None else {"coreset_chunk": args.chunk}
        eng = get_engine("patchcore")(device=args.device, weights=str(args.weights), image_size=256, **overrides)
        load0 = os.getloadavg()[0]
        t, c = time.perf_counter(), time.process_time()
        eng.fit(paths)
        fit_s, fit_cpu = time.perf_counter() - t, time.process_time() - c
        # coverage: distance of 20,000 training patches (of 20 of the images) to their nearest bank patch
        from anomaly_gui.engines.image_data import load_all
        from anomaly_gui.engines.patchcore.knn import BankIndex

        g = torch.Generator().manual_seed(0)
        x = load_all(paths[::15], 256, 3).float() / 255.0
        e = eng.model.embed(x)
        feats = e.permute(0, 2, 3, 1).reshape(-1, e.shape[1])
        q = feats[torch.randperm(len(feats), generator=g)[:20000]]
        d_bank = BankIndex(eng.model.memory_bank).search(q, 1)[0][:, 0].clamp_min(0).sqrt()
    print(json.dumps({
        "n_images": len(paths), "image_size_on_disk": 300, "n_patches": eng.stats["n_patches"],
        "bank_size": eng.stats["bank_size"], "coreset_chunk": eng.params.coreset_chunk,
        "fit_seconds": round(fit_s, 2), "fit_cpu_seconds": round(fit_cpu, 2), "coreset_seconds": eng.stats["coreset_seconds"],
        "coverage_max_distance": round(float(d_bank.max()), 3), "coverage_mean_distance": round(float(d_bank.mean()), 3),
        "note": "fit_cpu_seconds: process CPU time of all threads, load-independent (an idle 2-core machine's "
                "wall time is at most this)",
        "torch_threads": torch.get_num_threads(), "load_average_at_start": round(load0, 2),
    }))


if __name__ == "__main__":
    main()
