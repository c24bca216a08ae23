"""Dataset import without the GUI: detect + read + store N items per format, time and memory.

Writes synthetic datasets of N small images (MVTec AD layout, image folder, YOLO with labels, COCO
JSON) into a temporary folder, then for each: detects the layout, reads it (`import_dataset`, header
probe of every image), and stores it in a fresh project (`import_into_project`). Prints one JSON
object with wall seconds, CPU seconds of the read (steadier on a shared machine), items per second
and the process's peak RSS.

    python benchmarks/bench_import.py [--n 10000] [--size 64]
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def make_images(root: Path, rel_paths: list[str], size: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    for k, rel in enumerate(rel_paths):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        arr = base.copy()
        arr[k % size, :, 0] = 255
        Image.fromarray(arr).save(p, compress_level=1)


def build(tmp: Path, n: int, size: int) -> dict[str, Path]:
    from anomaly_gui.core.formats.base import DatasetItem
    from anomaly_gui.core.formats.coco import write_coco
    from anomaly_gui.core.formats.common import box_annotation
    from anomaly_gui.core.formats.yolo import write_yolo

    mv = [f"train/good/{i:05d}.png" for i in range(int(n * 0.8))]
    mv += [f"test/good/{i:05d}.png" for i in range(int(n * 0.1))]
    mv += [f"test/{'scratch' if i % 2 else 'dent'}/{i:05d}.png" for i in range(n - len(mv))]
    make_images(tmp / "mvtec", mv, size)
    make_images(tmp / "folder", [f"{'ok' if i % 3 else 'ng'}/{i:05d}.png" for i in range(n)], size)
    items = [DatasetItem(str(tmp / "mvtec" / rel), split="train" if i % 5 else "val", width=size, height=size,
                         annotations=[box_annotation("ship", 2, 3, 20, 30), box_annotation("buoy", 30, 30, 40, 44)])
             for i, rel in enumerate(mv)]
    write_yolo(items, tmp / "yolo", ["ship", "buoy"])
    write_coco(items, tmp / "coco", ["ship", "buoy"])
    return {"mvtec": tmp / "mvtec", "folder": tmp / "folder", "yolo": tmp / "yolo", "coco": tmp / "coco"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000, help="images per dataset")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--device", default="cpu", help="ignored (no model here)")
    args = parser.parse_args()

    from anomaly_gui.core.formats.base import detect_format, import_dataset
    from anomaly_gui.core.importer import import_into_project
    from anomaly_gui.core.project import open_project

    out: dict = {"n": args.n, "image_size": args.size, "formats": {}}
    with tempfile.TemporaryDirectory(prefix="bench_import_") as td:
        tmp = Path(td)
        t0 = time.perf_counter()
        roots = build(tmp, args.n, args.size)
        out["make_seconds"] = round(time.perf_counter() - t0, 2)
        for name, root in roots.items():
            t0 = time.perf_counter()
            fmt = detect_format(root).name
            t_detect = time.perf_counter() - t0
            t0, c0 = time.perf_counter(), time.process_time()
            result = import_dataset(root)
            t_read, c_read = time.perf_counter() - t0, time.process_time() - c0
            t0 = time.perf_counter()
            with open_project(tmp / f"{name}.agproj") as proj:
                import_into_project(proj, root)
                n_db = proj.count_items()
            t_store = time.perf_counter() - t0
            out["formats"][name] = {
                "detected": fmt, "items": len(result.items), "problems": len(result.problems),
                "boxes": sum(len(it.annotations) for it in result.items),
                "detect_seconds": round(t_detect, 3), "read_seconds": round(t_read, 2),
                "read_items_per_second": round(len(result.items) / max(t_read, 1e-9)),
                "read_cpu_seconds": round(c_read, 2),
                "import_into_project_seconds": round(t_store, 2), "items_in_project": n_db,
            }
            print(f"{name}: {out['formats'][name]}", file=sys.stderr)
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
