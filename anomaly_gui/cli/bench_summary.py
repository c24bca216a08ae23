"""The headline CPU figures of `anomaly-gui bench` (issue 15) in one list: ours, the reference, the ratio.

References: anomalib 2.7 measured in the same run (interleaved), an older checkout (`--before-src`), or
the figure the issue gave before the work (marked "issue", measured on a quiet machine; a figure measured
now on a loaded machine is not comparable with it, which the row says).
"""
from __future__ import annotations

from typing import Any

#: issue 15's "before" figures (2-core machine), for rows without a reference measured in the same run
ISSUE_BEFORE = {
    "fit300_seconds": 280.0, "fit300_coreset_seconds": 266.0, "tsne_10000_seconds": 13.6,
    "cluster_pan_zoom_fps": 19.0, "cluster_recolour_ms": 67.0,
}


def _get(d: dict, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _row(figure: str, ours: Any, reference: Any, ref_name: str, ratio: Any, goal: str = "") -> dict:
    return {"figure": figure, "ours": ours, "reference": reference, "reference_is": ref_name, "ratio": ratio,
            "goal": goal}


def _speedup(before: Any, after: Any, higher_is_better: bool = False) -> float | None:
    if not isinstance(before, (int, float)) or not isinstance(after, (int, float)) or min(before, after) <= 0:
        return None
    return round(after / before if higher_is_better else before / after, 2)


def summarize(results: dict) -> list[dict]:
    """Rows for the figures found in `results` (benchmark name -> its JSON)."""
    rows: list[dict] = []
    pc = results.get("patchcore_vs_anomalib") or {}
    if "ours" in pc:
        o, a, r = pc["ours"], pc.get("anomalib") or {}, pc.get("ratio") or {}
        ref = "anomalib 2.7, same run"
        rows += [
            _row(f"image AUROC (MVTec screw, {o.get('n_test', 20)} test images: one pair moves it 0.01)",
                 o.get("image_auroc"), a.get("image_auroc"), ref, r.get("auroc_difference"),
                 "see the fold rows"),
            _row("coreset selection, s", o.get("coreset_seconds"), a.get("coreset_seconds"), ref, r.get("coreset_speedup")),
            _row("fit (features + coreset), s", o.get("fit_seconds"), a.get("fit_seconds"), ref, r.get("fit_speedup"),
                 ">= 10x"),
            _row("model-only scoring, batch 1, img/s", o.get("model_images_per_second_batch1"),
                 a.get("model_images_per_second_batch1"), ref, r.get("model_throughput_batch1"), ">= 2x"),
        ]
        key = next((k for k in o if k.startswith("model_images_per_second_batch") and k != "model_images_per_second_batch1"
                    and not k.endswith("_torch_runtime")), None)
        if key:
            b = key.removeprefix("model_images_per_second_batch")
            rows.append(_row(f"model-only scoring, batch {b}, img/s", o.get(key), a.get(key), ref,
                             r.get(f"model_throughput_batch{b}"), ">= 2x"))
            rows.append(_row(f"ONNX Runtime vs torch runtime (ours), batch {b}, img/s", o.get(key),
                             o.get(key + "_torch_runtime"), "ours with runtime=torch, same run",
                             r.get(f"onnxruntime_vs_torch_batch{b}")))
        before = pc.get("before") or {}
        rows.append(_row("folder -> scores (decode included), img/s", o.get("folder_to_scores_images_per_second"),
                         before.get("folder_to_scores_images_per_second"),
                         "older checkout, same run" if before else "not measured (pass --before-src)",
                         r.get("folder_to_scores_vs_before"), ">= 2x today's"))
    rows += _auroc_rows(results.get("auroc_vs_anomalib") or {})
    rows += _export_rows(results.get("export_runtimes") or {})
    f3 = results.get("patchcore_fit300") or {}
    if "fit_seconds" in f3:
        cpu = f3.get("fit_cpu_seconds")
        rows += [
            _row("fit, 300 images (307,200 patches), wall s", f3["fit_seconds"], ISSUE_BEFORE["fit300_seconds"],
                 "issue (quiet machine)", _speedup(ISSUE_BEFORE["fit300_seconds"], f3["fit_seconds"]), "< 60 s"),
            _row("fit, 300 images, CPU s (all threads; an idle machine's wall time is at most this)", cpu,
                 ISSUE_BEFORE["fit300_seconds"], "issue (quiet machine, wall)",
                 _speedup(ISSUE_BEFORE["fit300_seconds"], cpu), "< 60 s"),
            _row("coreset, 300 images, wall s", f3.get("coreset_seconds"), ISSUE_BEFORE["fit300_coreset_seconds"],
                 "issue (quiet machine)", _speedup(ISSUE_BEFORE["fit300_coreset_seconds"], f3.get("coreset_seconds"))),
        ]
    maps, inter = _get(results, "embedding", "maps") or {}, _get(results, "embedding", "interaction") or {}
    if "tsne_opentsne_seconds" in maps:
        t = maps["tsne_opentsne_seconds"]
        n = maps.get("n_points")
        rows.append(_row(f"t-SNE of {n} points, wall s", t, ISSUE_BEFORE["tsne_10000_seconds"],
                         "issue (quiet machine)", _speedup(ISSUE_BEFORE["tsne_10000_seconds"], t), "< 10 s"))
        if "tsne_500_iterations_seconds_cpu" in maps:
            ratio = _speedup(maps["tsne_500_iterations_seconds_cpu"], maps.get("tsne_opentsne_seconds_cpu"))
            rows.append(_row(f"t-SNE of {n} points, CPU s (default vs 500 iterations)", maps.get("tsne_opentsne_seconds_cpu"),
                             maps["tsne_500_iterations_seconds_cpu"], "500 iterations, same run", ratio,
                             f"issue's 13.6 s / ratio = {ISSUE_BEFORE['tsne_10000_seconds'] / ratio:.1f} s" if ratio else ""))
        if "tsne_trustworthiness" in maps:
            rows.append(_row("t-SNE trustworthiness (k=10, 2,000-point sample)", maps["tsne_trustworthiness"],
                             maps.get("tsne_trustworthiness_500_iterations"), "500 iterations, same run", None))
    if "pan_zoom_fps" in inter:
        fps = inter.get("pan_zoom_fps_cpu", inter["pan_zoom_fps"])
        rows.append(_row("Cluster view pan/zoom at 10,000 points, fps (CPU time)", fps, ISSUE_BEFORE["cluster_pan_zoom_fps"],
                         "issue (quiet machine)", _speedup(ISSUE_BEFORE["cluster_pan_zoom_fps"], fps, True), ">= 60 fps"))
        ms = inter.get("recolour_ms_median_cpu", inter.get("recolour_ms_median"))
        rows.append(_row("Cluster view recolour, ms (CPU time)", ms, ISSUE_BEFORE["cluster_recolour_ms"],
                         "issue (quiet machine)", _speedup(ISSUE_BEFORE["cluster_recolour_ms"], ms), "< 16 ms"))
    return rows


def _auroc_rows(au: dict) -> list[dict]:
    """Image AUROC over folds (`bench_auroc_vs_anomalib.py`): ours vs anomalib, the paired difference with its
    95 % bootstrap interval, and the variants that locate a difference."""
    a = au.get("all") or {}
    if "auroc_ours" not in a:
        return []
    ds = ", ".join(f"{k.removeprefix('mvtec_')} {v['folds']}" for k, v in (au.get("per_dataset") or {}).items())
    what = f"{a['folds']} folds ({ds}), {a['good_defect_pairs']} good/defect pairs"
    ref = "anomalib 2.7, same folds and inputs"
    lo, hi = a.get("difference_ci95", [None, None])
    rows = [_row(f"image AUROC, mean over {what}", a["auroc_ours"], a["auroc_anomalib"], ref, a["auroc_difference"],
                 "difference within +-0.005"),
            _row("image AUROC difference ours - anomalib, 95 % bootstrap interval", a["auroc_difference"],
                 f"[{lo}, {hi}]", "paired bootstrap (images resampled)", None, "interval inside [-0.005, 0.005]"),
            _row("image AUROC without coreset (whole training set as bank)", a.get("full_bank_auroc_ours"),
                 a.get("full_bank_auroc_anomalib"), ref + ": embedding + scoring only",
                 a.get("full_bank_auroc_difference"))]
    if "full_bank_anomalib_pooling_auroc_ours" in a:
        rows.append(_row("image AUROC without coreset, ours with anomalib's border pooling",
                         a["full_bank_anomalib_pooling_auroc_ours"], a.get("full_bank_auroc_anomalib"), ref,
                         round(a["full_bank_anomalib_pooling_auroc_ours"] - a["full_bank_auroc_anomalib"], 4)))
    seeds = a.get("ours_seed_aurocs") or []
    if len(seeds) > 1:
        rows.append(_row("image AUROC of ours over coreset seeds (min / max)", min(seeds), max(seeds),
                         "same folds, other seeds", round(max(seeds) - min(seeds), 4), "spread = coreset randomness"))
    if "auroc_ours_app_defaults" in a:
        rows.append(_row("image AUROC of ours with the app's defaults (reflect border, normalised)",
                         a["auroc_ours_app_defaults"], a["auroc_anomalib"], ref,
                         round(a["auroc_ours_app_defaults"] - a["auroc_anomalib"], 4)))
    return rows


def _export_rows(ex: dict) -> list[dict]:
    """Exported models (`bench_export_runtimes.py`): img/s of ONNX Runtime / OpenVINO vs the torch path."""
    rows: list[dict] = []
    for name, e in (ex.get("engines") or {}).items():
        for key in sorted(k for k in e if k.startswith("images_per_second_batch")):
            b = key.removeprefix("images_per_second_batch")
            ips, sp = e[key], e.get(f"speedup_vs_torch_batch{b}") or {}
            for rt in ("app", "onnxruntime", "openvino"):
                if rt in ips:
                    label = "the app's own path (ONNX Runtime embedder + faiss)" if rt == "app" else f"exported, {rt}"
                    rows.append(_row(f"{name} scoring, batch {b}, img/s: {label}", ips[rt], ips.get("torch"),
                                     f"{name} in torch, same run", sp.get(rt)))
        f2s = e.get("folder_to_scores_images_per_second") or {}
        for rt in ("onnxruntime", "openvino"):
            if rt in f2s:
                rows.append(_row(f"{name} folder -> scores, img/s: exported, {rt}", f2s[rt], f2s.get("app"),
                                 "the app's model file, same run", _speedup(f2s.get("app"), f2s[rt], True)))
        diff = e.get("max_score_difference") or {}
        if diff:
            rows.append(_row(f"{name} exported: largest score difference from the engine", max(diff.values()),
                             e.get("max_score"), "largest score", None, "tested: < 1e-4 relative"))
    return rows


def markdown_table(rows: list[dict]) -> str:
    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| figure | ours | reference | reference is | ratio | goal |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['figure']} | {fmt(r['ours'])} | {fmt(r['reference'])} | {r['reference_is']} | "
              f"{fmt(r['ratio'])} | {r['goal']} |" for r in rows]
    return "\n".join(lines)
