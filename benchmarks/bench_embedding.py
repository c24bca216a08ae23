"""Wildlife embeddings: t-SNE / PCA / DBSCAN at 10,000 points, cluster-view interaction at 10,000 points,
and on the real camera-trap photos the embedding throughput and the novelty AUROC of held-out species.

    python benchmarks/bench_embedding.py [--n 10000] [--dim 1280] [--sklearn] [--epochs 5] [--device cpu]

Map timings use synthetic clustered embeddings (species-like Gaussian clusters plus isolated points) of
the encoder's size (1280-d). Interaction timings drive a real ClusterPanel offscreen: recolour, legend
toggle, pan/zoom repaint, hover look-up, lasso selection, eps change. Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def clustered(n: int, dim: int, k: int = 20, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)) * 3
    lab = rng.integers(0, k, n)
    x = centres[lab] + rng.normal(size=(n, dim))
    n_out = max(1, n // 200)
    x[:n_out] = rng.normal(size=(n_out, dim)) * 6  # isolated animals
    return x.astype(np.float32), [f"species_{i:02d}" for i in lab]


def timed(fn, *a, **kw):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*a, **kw)
    timed.cpu = time.process_time() - c0
    return out, time.perf_counter() - t0


def rec(out: dict, key: str, fn, *a, **kw):
    """Run fn, store its wall seconds under `key` and its process CPU seconds under `key_cpu` (on a shared,
    contended machine the CPU time of single-threaded work is what an idle machine's wall time would be)."""
    res, wall = timed(fn, *a, **kw)
    out[key] = round(wall, 4)
    out[key + "_cpu"] = round(timed.cpu, 4)
    return res


def bench_maps(n: int, dim: int, sklearn: bool, threads: int, compare_iterations: bool = False) -> dict:
    from anomaly_gui.core.embedding_maps import dbscan_labels, k_distance, pca_2d, suggest_eps, tsne_2d

    x, _ = clustered(n, dim)
    out: dict = {"n_points": n, "dim": dim}
    xy = rec(out, "tsne_opentsne_seconds", tsne_2d, x, n_jobs=threads, backend="opentsne")
    _ = rec(out, "pca_seconds", pca_2d, x)
    kd = rec(out, "kdistance_seconds", k_distance, xy, 4)
    eps = suggest_eps(kd)
    cl = rec(out, "dbscan_seconds", dbscan_labels, xy, eps, 5)
    out["dbscan_clusters"] = int(len(set(cl.tolist()) - {-1}))
    out["dbscan_noise"] = int((cl < 0).sum())
    out["tsne_trustworthiness"] = trust(x, xy)
    if compare_iterations:  # the quality the shorter default schedule gives up, measured
        xy500 = rec(out, "tsne_500_iterations_seconds", tsne_2d, x, n_jobs=threads, backend="opentsne", n_iter=500,
                    early_exaggeration_iter=150)
        out["tsne_trustworthiness_500_iterations"] = trust(x, xy500)
    if sklearn:
        _ = rec(out, "tsne_sklearn_seconds", tsne_2d, x, backend="sklearn")
    return out


def trust(x, xy, sample: int = 2000, k: int = 10) -> float:
    """Trustworthiness (k=10) of the map on a fixed random sample of points, against their 50-d PCA."""
    import numpy as np
    from sklearn.manifold import trustworthiness

    from anomaly_gui.core.embedding_maps import pca_reduce

    idx = np.random.default_rng(0).choice(len(x), min(sample, len(x)), replace=False)
    return round(float(trustworthiness(pca_reduce(x, 50)[idx], xy[idx], n_neighbors=k)), 4)


def bench_interaction(n: int) -> dict:
    import numpy as np
    from PySide6.QtCore import QPointF
    from PySide6.QtWidgets import QApplication

    from anomaly_gui.core.embedding_maps import EmbeddingSet, compute_cluster_map
    from anomaly_gui.gui.cluster_panel import ClusterPanel
    from anomaly_gui.gui.state import AppState

    app = QApplication.instance() or QApplication([])
    x, labels = clustered(n, 32)
    es = EmbeddingSet(np.arange(1, n + 1), x, labels, np.random.default_rng(0).random(n).astype(np.float32), [None] * n)
    cmap = compute_cluster_map(es, method="pca", min_samples=5)
    panel = ClusterPanel(AppState())
    panel.resize(1400, 700)
    panel.show()
    app.processEvents()
    out: dict = {"n_points": n}

    def paint() -> None:
        panel.plot.repaint()
        app.processEvents()

    panel.set_embedding_set(es, paths={})
    _ = rec(out, "set_map_seconds", lambda: (panel.set_map(cmap), paint()))
    walls, cpus = [], []
    for mode in ("Cluster", "Score", "Species") * 2:
        _, t = timed(lambda: (panel.color_by.setCurrentText(mode), paint()))
        walls.append(t)
        cpus.append(timed.cpu)
    out["recolour_ms_median"], out["recolour_ms_median_cpu"] = 1000 * float(np.median(walls)), 1000 * float(np.median(cpus))
    rec(out, "legend_toggle_seconds", lambda: (panel.legend.set_visible("species_03", False), paint()))
    vb = panel.plot.vb
    walls, cpus = [], []
    for k in range(20):
        _, t = timed(lambda: (vb.scaleBy((0.9, 0.9)) if k % 2 else vb.translateBy((0.5, 0.3)), paint()))
        walls.append(t)
        cpus.append(timed.cpu)
    out["pan_zoom_repaint_ms_median"], out["pan_zoom_repaint_ms_median_cpu"] = 1000 * float(np.median(walls)), 1000 * float(np.median(cpus))
    out["pan_zoom_fps"] = round(1000.0 / out["pan_zoom_repaint_ms_median"], 1)
    out["pan_zoom_fps_cpu"] = round(1000.0 / max(out["pan_zoom_repaint_ms_median_cpu"], 1e-3), 1)
    pts = cmap.xy[np.random.default_rng(1).integers(0, n, 1000)]
    rec(out, "hover_1000_lookups_seconds", lambda: [panel.plot.nearest(QPointF(float(a), float(b))) for a, b in pts])
    lo, hi = cmap.xy.min(0), cmap.xy.max(0)
    ang = np.linspace(0, 2 * np.pi, 300)
    poly = list(zip((lo[0] + hi[0]) / 2 + (hi[0] - lo[0]) / 4 * np.cos(ang), (lo[1] + hi[1]) / 2 + (hi[1] - lo[1]) / 4 * np.sin(ang)))
    got: list = []
    panel.plot.lassoed.connect(got.append)
    rec(out, "lasso_300_vertices_seconds", lambda: (panel.plot.finish_lasso(poly), paint()))
    out["lasso_selected"] = len(got[0]) if got else 0
    rec(out, "eps_change_seconds", lambda: (panel.set_eps(cmap.eps * 1.3), paint()))
    panel.close()
    return out


def bench_real(epochs: int, device: str) -> dict:
    import torch

    from anomaly_gui.core.crops import crop_specs
    from anomaly_gui.core.formats.base import import_dataset
    from anomaly_gui.engines.base import get_engine
    from anomaly_gui.evaluation import get_evaluator
    from anomaly_gui.engines.base import Task

    root = REPO.parent / "shared" / "data" / "camera_traps"
    if not root.is_dir():
        return {"skipped": f"{root} not found"}
    items = import_dataset(root).items
    eng = get_engine("simclr_ocsvm")(device=device, image_size=96, epochs=0)
    eng.net.load_imagenet(__import__("anomaly_gui.engines.embedding.network", fromlist=["x"]).find_mobilenet_weights())
    specs = crop_specs(items)
    eng.embed_specs(specs[:2])  # warm-up
    _, t = timed(eng.embed_specs, specs)
    out: dict = {"n_photos": len(items), "n_crops": len(specs), "embed_crops_per_second": round(len(specs) / t, 2),
                 "torch_threads": torch.get_num_threads()}
    evaluate = get_evaluator(Task.EMBEDDING)
    for name, ep in (("simclr_ocsvm", 0), ("simclr_ocsvm", epochs), ("triplet_ocsvm", epochs)):
        res = evaluate(dataset=root, engine=name, test=None, device=device, params={"epochs": ep, "image_size": 96, "batch_size": 8})
        out[f"{name}_epochs{ep}"] = {k: res[k] for k in ("novelty_auroc", "f1_max", "known_species_accuracy", "fit_seconds",
                                                         "items_per_second", "n_train", "n_test", "n_novel")}
    out["known_species"] = res["known_species"]
    out["novel_species"] = res["novel_species"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--dim", type=int, default=1280)
    ap.add_argument("--sklearn", action="store_true", help="also time scikit-learn's t-SNE (slow)")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--compare-iterations", action="store_true", help="also run t-SNE with 500 iterations (quality)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    result = {"maps": bench_maps(args.n, args.dim, args.sklearn, args.threads, args.compare_iterations), "interaction": bench_interaction(args.n)}
    if not args.skip_real:
        result["real_camera_traps"] = bench_real(args.epochs, args.device)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
