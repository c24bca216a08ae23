"""Review panel: sliders drive overlays and every item's verdict from the cache (pytest-qt, offscreen)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt

from anomaly_gui.core.project import open_project
from anomaly_gui.pipeline import train_run

from c2_engines import MeanDiffEngine, make_images, register_tiny_engine, stop_jobs

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def trained_master(tmp_path_factory):
    """One trained project per module (training is the slow part); each test gets a copy."""
    root = tmp_path_factory.mktemp("review_master")
    with pytest.MonkeyPatch.context() as mp:
        register_tiny_engine(mp)
        with open_project(root / "proj" / "p.agproj") as proj:
            proj.add_items(make_images(root / "data", size=128, n_good=5, n_bad=5))
            run_id = train_run(proj, "c2_meandiff", {"size": 64, "blur": 3}, device="cpu")
    return root / "proj", run_id


@pytest.fixture
def trained(trained_master, tmp_path, monkeypatch):
    import shutil

    register_tiny_engine(monkeypatch)
    folder, run_id = trained_master
    shutil.copytree(folder, tmp_path / "proj")
    return tmp_path / "proj" / "p.agproj", run_id


def _open(qtbot, path):
    from anomaly_gui.gui.main_window import MainWindow
    from anomaly_gui.gui.state import AppState

    state = AppState()
    win = MainWindow(state)
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    state.set_project(open_project(path))
    rp = win.panels["review"]
    qtbot.waitUntil(lambda: rp.data is not None and rp.data.run_id == state.current_run, timeout=20000)
    return win


@pytest.fixture
def window(qtbot, trained):
    win = _open(qtbot, trained[0])
    yield win
    stop_jobs(qtbot)
    win.state.project.close()


def _bad_items(win):
    return [it for it in win.state.project.items(split="test") if it.is_anomalous]


def _n_regions(mask) -> int:
    return 0 if mask is None else cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)[0] - 1


def test_reopened_run_is_reviewed_from_the_cache(qtbot, window, trained):
    path, run_id = trained
    state, rp = window.state, window.panels["review"]
    assert state.current_run == run_id and rp.data is not None and rp.data.run_id == run_id
    run = state.project.run(run_id)
    assert state.threshold == pytest.approx(run.threshold) and rp.threshold.value() == pytest.approx(run.threshold, rel=1e-3)
    assert len(state.predictions) == len(rp.data) == 2 + 10
    assert rp.histogram.threshold() == pytest.approx(state.threshold)
    assert sum(rp.histogram.hist["anomalous"]) == 5 and sum(rp.histogram.hist["normal"]) == 7
    qtbot.waitUntil(lambda: bool(rp.finetune.curves), timeout=20000)
    assert len(rp.finetune.curves["n_regions"]) == 40
    metrics = window.panels["metrics"]
    assert metrics.values["image_auroc"].text() == "1.000"
    c = metrics.truth.counts
    assert c["tp"] + c["fn"] == 5 and c["fp"] + c["tn"] == 7


def test_video_run_shows_the_frames_the_player_flags_which_do_not_follow_the_map_sliders(qtbot, trained):
    """A run with a frame threshold (a video run's, on frame scores) gets a third box in the Metrics panel: its
    frames' verdicts at that threshold against ground truth, counted from the stored scores; moving the map
    threshold slider changes the map-based counts and leaves these alone. An image run has no such box."""
    path, run_id = trained
    with open_project(path) as proj:
        run = proj.run(run_id)
        scores = proj.scores(run_id)
        labels = {it.id: it.is_anomalous for it in proj.items()}
        normal = sorted(scores[i].score for i in scores if not labels[i])
        thr = float(normal[-2])  # between the two highest normal scores: one normal item is flagged
        proj.update_run(run_id, metrics={**run.metrics, "frame_threshold": thr})
    expected = {"tp": sum(1 for i in scores if labels[i] and scores[i].score >= thr),
                "fn": sum(1 for i in scores if labels[i] and scores[i].score < thr),
                "fp": sum(1 for i in scores if not labels[i] and scores[i].score >= thr),
                "tn": sum(1 for i in scores if not labels[i] and scores[i].score < thr)}
    assert expected["fp"] == 2  # the threshold item and the one above it
    win = _open(qtbot, path)
    try:
        metrics, rp = win.panels["metrics"], win.panels["review"]
        qtbot.waitUntil(lambda: metrics.frames.counts is not None, timeout=5000)
        assert not metrics.frames.isHidden() and metrics.frames.counts == expected
        assert f"score ≥ {thr:.4g}" in metrics.frames.title() and f"score ≥ {thr:.4g}" in metrics.setting.text()
        before = dict(metrics.truth.counts)
        rp.threshold.slider.setValue(rp.threshold.slider.maximum())  # nothing anomalous by the maps
        assert metrics.truth.counts["tp"] == 0 != before["tp"]
        assert metrics.frames.counts == expected  # the player's frame verdicts did not move
        # the user picks a run without a frame threshold (an image run): the box goes away
        win.state.project.update_run(run_id, metrics={k: v for k, v in run.metrics.items()})
        win.state.runsChanged.emit()
        qtbot.waitUntil(lambda: metrics.frames.isHidden(), timeout=5000)
    finally:
        stop_jobs(qtbot)
        win.state.project.close()


def test_threshold_slider_changes_overlay_verdicts_and_line(qtbot, window):
    state, rp, viewer = window.state, window.panels["review"], window.viewer
    bad = _bad_items(window)[-1]  # the largest defect
    state.set_current_item(bad.id)
    assert viewer.heatmap_item.isVisible() and viewer.heatmap_item.levels is not None
    assert tuple(viewer.heatmap_item.levels) == pytest.approx((rp.data.range.lo, rp.data.range.hi))

    rp.threshold.slider.setValue(0)  # the lowest threshold: everything is anomalous
    low_t, low_n = state.threshold, sum(state.predictions.values())
    low_pixels = int(rp.current_mask().sum())
    assert low_n == len(rp.data) and viewer.layer_item_count("contours") == 1
    # drag towards higher thresholds step by step, as a user would with the keyboard
    rp.threshold.slider.setFocus()
    counts = [low_n]
    pixels = [low_pixels]
    for _ in range(6):
        qtbot.keyClick(rp.threshold.slider, Qt.Key.Key_PageUp)
        counts.append(sum(state.predictions.values()))
        pixels.append(int(rp.current_mask().sum()))
    assert state.threshold > low_t
    assert counts == sorted(counts, reverse=True) and counts[-1] < counts[0]
    assert pixels == sorted(pixels, reverse=True) and pixels[-1] < pixels[0]
    assert rp.histogram.threshold() == pytest.approx(state.threshold)
    assert all(line.value() == pytest.approx(state.threshold) for line in rp.finetune.lines)
    assert rp.threshold.spin.value() == pytest.approx(state.threshold, abs=10 ** -rp.threshold.spin.decimals())
    # above every score nothing is anomalous and the outline is gone
    rp.threshold.slider.setValue(rp.threshold.slider.maximum())
    assert sum(state.predictions.values()) == 0 and viewer.layer_item_count("contours") == 0
    assert "0 of 12" in rp.summary.text()
    assert window.panels["metrics"].truth.counts["tp"] == 0


def test_min_area_slider_removes_small_regions(qtbot, window):
    state, rp = window.state, window.panels["review"]
    bads = _bad_items(window)
    state.set_current_item(bads[0].id)  # the smallest defect (6x6 px)
    t = float(np.median(rp.data.critical(0.0)[rp.data.labels == 1])) * 0.5
    state.set_display(threshold=t, min_area=0.0)
    before_items = sum(state.predictions.values())
    before_regions = _n_regions(rp.current_mask())
    assert before_regions >= 1
    rp.min_area.spin.setValue(400)  # typed in the spin box
    assert state.min_area == 400 and rp.min_area.slider.value() > 0
    assert sum(state.predictions.values()) < before_items
    assert _n_regions(rp.current_mask()) < before_regions
    assert not state.predictions[bads[0].id] and state.predictions[bads[-1].id]  # 18x18 defect stays
    # the slider end is far above any region: nothing survives
    rp.min_area.slider.setValue(rp.min_area.slider.maximum())
    assert sum(state.predictions.values()) == 0
    # the histogram follows the min area (debounced)
    qtbot.waitUntil(lambda: rp._hist_area == state.min_area, timeout=5000)


def test_histogram_line_drag_and_bar_click_filter(qtbot, window):
    state, rp, hist = window.state, window.panels["review"], window.panels["review"].histogram
    target = float(np.mean(hist.edges[[0, -1]]))
    hist.line.setValue(target)  # what a drag of the line does
    assert state.threshold == pytest.approx(target)
    assert rp.threshold.value() == pytest.approx(target, abs=10 ** -rp.threshold.spin.decimals())
    # click on the highest anomalous bar: the browser shows only the items of that bin
    k = int(np.flatnonzero(hist.hist["anomalous"])[-1])
    x = (hist.edges[k] + hist.edges[k + 1]) / 2
    vb = hist.getPlotItem().vb
    y = float(hist.hist["normal"][k] + hist.hist["unlabelled"][k] + hist.hist["anomalous"][k]) / 2
    scene_pt = vb.mapViewToScene(pg_point(x, y))
    widget_pt = hist.mapFromScene(scene_pt)
    qtbot.mouseClick(hist.viewport(), Qt.MouseButton.LeftButton, pos=QPoint(int(widget_pt.x()), int(widget_pt.y())))
    values = rp.data.critical(state.min_area)
    expected = {int(i) for i, v in zip(rp.data.item_ids, values) if hist.edges[k] <= v <= hist.edges[k + 1]}
    assert expected and state.filter == expected
    assert set(window.browser.model.visible_ids()) == expected
    qtbot.mouseClick(rp.clear_filter_button, Qt.MouseButton.LeftButton)
    assert state.filter is None


def pg_point(x: float, y: float):
    from PySide6.QtCore import QPointF

    return QPointF(x, y)


def test_verdict_filters_follow_the_sliders(qtbot, window):
    state, rp = window.state, window.panels["review"]
    rp.filter_combo.setCurrentText("predicted anomalous")
    first = set(state.filter)
    assert first == {i for i, a in state.predictions.items() if a}
    qtbot.keyClick(rp.threshold.slider, Qt.Key.Key_PageDown)
    qtbot.keyClick(rp.threshold.slider, Qt.Key.Key_PageDown)
    assert state.filter == {i for i, a in state.predictions.items() if a} and state.filter >= first
    rp.filter_combo.setCurrentText("false positives")
    assert state.filter == {i for i, a in state.predictions.items() if a and not window.state.project.item(i).is_anomalous}
    # the analyst's verdicts: disagreement filter and their own confusion counts
    bad = _bad_items(window)[0]
    state.project.set_verdict(bad.id, "normal")
    qtbot.waitUntil(lambda: (rp.data.analyst >= 0).any(), timeout=3000)
    rp.filter_combo.setCurrentText("disagrees with analyst")
    assert state.filter == ({bad.id} if state.predictions[bad.id] else set())
    assert window.panels["metrics"].analyst.counts is not None


def test_setting_is_saved_per_run_and_restored_without_scoring(qtbot, trained, monkeypatch):
    import anomaly_gui.gui.review_panel as review_panel

    monkeypatch.setattr(review_panel, "SYNC_LOAD_BYTES", 0)  # the worker path, as for a big run
    path, run_id = trained
    win = _open(qtbot, path)
    rp, state = win.panels["review"], win.state
    state.set_display(threshold=rp.threshold.hi * 0.6, min_area=50.0)
    saved = (state.threshold, state.min_area)
    qtbot.waitUntil(lambda: (state.project.run(run_id).threshold, state.project.run(run_id).min_area) == saved,
                    timeout=5000)
    predictions = dict(state.predictions)
    state.project.close()
    state.set_project(None)
    win.close()
    monkeypatch.setattr(MeanDiffEngine, "score", lambda *a, **k: pytest.fail("re-scored on reopen"))
    win2 = _open(qtbot, path)
    assert win2.state.current_run == run_id
    assert (win2.state.threshold, win2.state.min_area) == pytest.approx(saved)
    assert win2.state.predictions == predictions
    qtbot.waitUntil(lambda: win2.panels["review"]._load_job is None, timeout=5000)  # its worker ended
    win2.state.project.close()


def test_grab_review_window(qtbot, window, tmp_path):
    """The docked panels paint real content (not blank grey panes)."""
    from PySide6.QtGui import QImage

    window.state.set_current_item(_bad_items(window)[-1].id)
    for pid in ("review", "metrics"):
        window.docks[pid].raise_()
        qtbot.wait(50)
        img = window.panels[pid].grab().toImage().convertToFormat(QImage.Format.Format_Grayscale8)
        arr = np.frombuffer(img.constBits(), np.uint8, count=img.bytesPerLine() * img.height())
        assert arr.std() > 10, pid


def test_damaged_map_cache_is_named_and_skipped(trained):
    """A truncated cache file: the item falls back to its image score, the file is named; nothing is lost."""
    from anomaly_gui.gui.review_model import ReviewData

    path, run_id = trained
    with open_project(path) as proj:
        scores = proj.scores(run_id)
        victim = sorted(scores)[0]
        f = proj.cache_dir / scores[victim].map_path
        f.write_bytes(f.read_bytes()[:40])
        data = ReviewData(proj, run_id)
        assert len(data) == len(scores) and data.map(victim) is None
        assert len(data.problems) == 1 and str(f) in data.problems[0]
        flags = data.verdicts(proj.run(run_id).threshold, 0.0)
        assert len(flags) == len(scores)
        assert proj.scores(run_id)[victim].score == scores[victim].score


def test_many_signal_emits_do_not_exhaust_true():
    """PySide6 6.12.0 drops a reference to True per emit(); the guard in `anomaly_gui.gui` keeps the
    process alive through the millions of emits a review session makes (it aborted at exit before)."""
    import sys

    import anomaly_gui.gui  # noqa: F401  (installs the guard)
    from PySide6.QtCore import QObject, Signal

    class _S(QObject):
        sig = Signal()

    s = _S()
    before = sys.getrefcount(True)
    for _ in range(20000):
        s.sig.emit()
    after = sys.getrefcount(True)
    assert after >= before - 100 or after > 1_000_000  # no leak, or True pinned by the guard


def test_fast_verdicts_match_full_postprocessing(trained):
    """The slider path (critical thresholds / small maps) agrees with post-processing each full map."""
    from anomaly_gui.core.postprocess import postprocess
    from anomaly_gui.gui.review_model import ReviewData

    path, run_id = trained
    with open_project(path) as proj:
        data = ReviewData(proj, run_id)
        maps = {int(i): proj.score_map(run_id, int(i)) for i in data.item_ids}
        lo, hi = data.range.lo, float(np.max(data.critical(0.0)))
        for t in np.linspace(lo, hi, 7):
            for a in (0.0, 40.0, 160.0, 400.0):
                ref = np.array([postprocess(maps[int(i)], t, a, data.image_size(int(i)), with_regions=False).anomalous
                                for i in data.item_ids])
                assert (data.verdicts(t, a) == ref).all(), (t, a)
                data.critical(a)  # from now on this min area uses the cached critical thresholds
                assert (data.verdicts(t, a) == ref).all(), (t, a)
