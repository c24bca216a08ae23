"""Reports: a self-contained HTML file and a PDF with the expected pages, made without a display."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from anomaly_gui.core.export import ExportExistsError
from anomaly_gui.core.report import build_context, make_report
from anomaly_gui.core.report.pdf import expected_pages


def _pdf_pages(path: Path) -> int:
    """Page count from the PDF's page objects (matplotlib writes them uncompressed)."""
    data = path.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    return len(re.findall(rb"/Type\s*/Page(?![s\w])", data))


def test_html_report_is_self_contained_and_complete(scored_project, tmp_path):
    out = tmp_path / "report.html"
    res = make_report(scored_project, out, n_gallery=4)
    assert res.n_items == 12
    html = out.read_text(encoding="utf-8")
    srcs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', html)
    assert srcs and all(s.startswith("data:image/") for s in srcs), [s[:40] for s in srcs if not s.startswith("data:")]
    assert "<link" not in html and "@import" not in html and "url(" not in html
    for section in ("Dataset", "Model and parameters", "Decision", "Metrics", "Worst 4", "Best 4", "Items (12)"):
        assert section in html
    assert html.count("data:image/jpeg;base64,") == 8  # two galleries of 4
    assert html.count("data:image/png;base64,") == 1  # ROC / PR / histogram
    assert "TP 6" in html and "TN 6" in html and "FP 0" in html and "FN 0" in html
    assert "brightness" in html and "stride" in html  # engine and its parameters
    assert html.count("<tr><td>") >= 12


def test_pdf_report_has_the_expected_pages(scored_project, tmp_path):
    out = tmp_path / "report.pdf"
    make_report(scored_project, out)
    assert _pdf_pages(out) == expected_pages(12) == 5
    if shutil.which("pdftoppm"):
        subprocess.run(["pdftoppm", "-r", "30", "-png", str(out), str(tmp_path / "page")], check=True, timeout=60)
        pages = sorted(tmp_path.glob("page-*.png"))
        assert len(pages) == 5
        from anomaly_gui.core.imageio import read_image

        for p in pages:
            assert read_image(p).std() > 5  # every page has content
    many = expected_pages(100)
    assert many == 4 + 4  # 32 rows a page


def test_report_follows_the_analysts_labels_and_the_decision(scored_project):
    proj = scored_project
    bad_ids = {it.id for it in proj.items() if it.is_anomalous}
    first_bad = min(bad_ids)
    proj.set_verdict(first_bad, verdict="normal", verified=True)
    ctx = build_context(proj, n_gallery=2)
    assert ctx["confusion"] == {"tp": 5, "fp": 1, "tn": 6, "fn": 0}
    ctx = build_context(proj, n_gallery=2, truth="dataset")
    assert ctx["confusion"] == {"tp": 6, "fp": 0, "tn": 6, "fn": 0}
    ctx = build_context(proj, n_gallery=2, threshold=0.95)
    assert ctx["confusion"]["tp"] == 0
    worst = ctx["galleries"][0]["tiles"]
    assert len(worst) == 2 and {t["item_id"] for t in worst} <= bad_ids  # highest scores: the blobs


def test_metrics_are_measured_on_the_test_split(scored_project):
    proj = scored_project
    ids = proj.item_ids()
    proj.set_split(ids[:3], "val")  # validation items set the threshold: they must not flatter the metrics
    ctx = build_context(proj, n_gallery=2)
    ev = ctx["evaluation"]
    assert len(ev.rows) == 12 and ev.metrics["n_items"] == 9 and ev.metrics["split"] == "test"
    assert sum(ctx["confusion"].values()) == 9
    assert all(t["item_id"] not in ids[:3] for g in ctx["galleries"] for t in g["tiles"])


def test_report_without_a_run_and_name_clash(tmp_project, tmp_path):
    out = tmp_path / "empty.html"
    make_report(tmp_project, out)
    assert "No run with scores" in out.read_text()
    with pytest.raises(ExportExistsError):
        make_report(tmp_project, out)
    make_report(tmp_project, tmp_path / "empty.pdf")
    assert _pdf_pages(tmp_path / "empty.pdf") == expected_pages(0)


def test_cli_report_without_a_display(scored_project, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    out = tmp_path / "cli.pdf"
    code = ("import sys; from anomaly_gui.cli import main; rc = main(sys.argv[1:]); "
            "assert not any(m.startswith('PySide6') for m in sys.modules), 'Qt was imported'; sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, "report", str(scored_project.path), "--out", str(out), "--json"],
                          env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert '"n_items": 12' in proc.stdout
    assert _pdf_pages(out) == 5


def test_gallery_tiles_show_the_runs_detections(scored_project):
    import numpy as np

    from anomaly_gui.core.formats.base import Annotation
    from anomaly_gui.core.report.data import run_evaluation, overlay_thumbnail

    proj = scored_project
    run = proj.runs()[0]
    good = next(it for it in proj.items() if not it.is_anomalous)
    ev = run_evaluation(proj, run.id)
    row = next(r for r in ev.rows if r.item_id == good.id)
    plain = overlay_thumbnail(proj, ev, row)
    proj.add_annotation(good.id, Annotation("box", "ship", {"x1": 5, "y1": 5, "x2": 40, "y2": 30}, score=0.9,
                                            source="model"), run_id=run.id)
    boxed = overlay_thumbnail(proj, ev, row)
    assert plain.shape == boxed.shape == (48, 64, 3)
    yellow = (boxed[..., 0] > 200) & (boxed[..., 1] > 180) & (boxed[..., 2] < 60)
    assert yellow[5, 5:40].all() and not yellow[20, 20]  # the outline, not the inside
    assert not ((plain[..., 0] > 200) & (plain[..., 1] > 180) & (plain[..., 2] < 60)).any()
    assert np.array_equal(plain[20, 20], boxed[20, 20])
