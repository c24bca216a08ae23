"""Dataset browser: tree with counts, lazy cached thumbnails, filters, sort by score, clicks and selection."""
from __future__ import annotations


import numpy as np
import pytest
from PySide6.QtCore import Qt

from anomaly_gui.core.formats.base import DatasetItem
from anomaly_gui.gui.browser import DatasetBrowser
from anomaly_gui.gui.browser_model import (BrokenRole, ScoreRole, ScoreTextRole, VerdictRole, VerifiedRole,
                                          decimals_for_span)
from anomaly_gui.gui.state import AppState
from conftest import write_png

pytestmark = pytest.mark.gui


@pytest.fixture
def browser_setup(qtbot, tmp_path, tmp_project):
    rng = np.random.default_rng(0)
    items = []
    for split, label, n in (("train", "good", 8), ("test", "good", 3), ("test", "crack", 4)):
        for i in range(n):
            p = write_png(tmp_path / "data" / split / label / f"{label}_{i}.png",
                          rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))
            items.append(DatasetItem(path=str(p), split=split, label=label, is_anomalous=label != "good"))
    bad = tmp_path / "data" / "test" / "crack" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    items.append(DatasetItem(path=str(bad), split="test", label="crack", is_anomalous=True))
    tmp_project.add_items(items)
    state = AppState()
    state.set_project(tmp_project)
    b = DatasetBrowser(state)
    qtbot.addWidget(b)
    b.resize(460, 700)
    b.show()
    qtbot.waitExposed(b)
    yield state, b
    b.shutdown()


def _tree_texts(b: DatasetBrowser) -> list[str]:
    out = []

    def walk(node, depth):
        out.append("  " * depth + node.text(0))
        for i in range(node.childCount()):
            walk(node.child(i), depth + 1)

    for i in range(b.tree.topLevelItemCount()):
        walk(b.tree.topLevelItem(i), 0)
    return out


def test_tree_counts_and_filter_by_node(browser_setup, qtbot):
    state, b = browser_setup
    assert _tree_texts(b) == ["All items (16)", "  test (8)", "    crack (5)", "    good (3)",
                              "  train (8)", "    good (8)"]
    assert b.model.rowCount() == 16 and b.count_label.text() == "16 items"
    crack = b.tree.topLevelItem(0).child(0).child(0)
    rect = b.tree.visualItemRect(crack)
    qtbot.mouseClick(b.tree.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert b.model.rowCount() == 5 and b.count_label.text() == "5 of 16 shown"
    assert all(r.label == "crack" and r.split == "test" for r in b.model.rows)
    b.search.setText("broken")
    assert b.model.rowCount() == 1
    b.search.clear()
    b.tree.setCurrentItem(b.tree.topLevelItem(0))
    assert b.model.rowCount() == 16


def test_thumbnails_made_in_workers_cached_on_disk_and_broken_marked(browser_setup, qtbot):
    state, b = browser_setup
    model = b.model
    good_ids = [r.id for r in model.rows if "broken.png" not in r.name]
    broken_id = next(r.id for r in model.rows if "broken.png" in r.name)
    visible = [i for i in good_ids if not b.grid.visualRect(model.index(model.row_of(i))).isEmpty()
               and b.grid.viewport().rect().intersects(b.grid.visualRect(model.index(model.row_of(i))))]
    assert visible, "some thumbnails are on screen"
    qtbot.waitUntil(lambda: all(model.has_thumbnail(i) for i in visible), timeout=10000)
    cached = list((state.project.cache_dir / "thumbs").rglob("*.jpg"))
    assert len(cached) >= len(visible)
    b.grid.scrollToBottom()
    qtbot.waitUntil(lambda: bool(model.data(model.index(model.row_of(broken_id)), BrokenRole)), timeout=10000)
    assert "broken.png" in b.loader.errors[broken_id]
    assert "broken.png" in model.data(model.index(model.row_of(broken_id)), Qt.ItemDataRole.ToolTipRole)


def test_click_sets_current_item_and_ctrl_click_selects_many(browser_setup, qtbot):
    state, b = browser_setup
    idx0, idx2 = b.model.index(0), b.model.index(2)
    qtbot.mouseClick(b.grid.viewport(), Qt.MouseButton.LeftButton, pos=b.grid.visualRect(idx2).center())
    assert state.current_item == b.model.item_id(2)
    qtbot.mouseClick(b.grid.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ControlModifier,
                     pos=b.grid.visualRect(idx0).center())
    assert sorted(state.selection) == sorted([b.model.item_id(0), b.model.item_id(2)])
    # the state drives the browser too
    state.set_current_item(b.model.item_id(5))
    assert b.grid.currentIndex().row() == 5
    state.set_selection([b.model.item_id(1), b.model.item_id(3), b.model.item_id(4)])
    rows = sorted(i.row() for i in b.grid.selectionModel().selectedIndexes())
    assert rows == [1, 3, 4]


def test_move_state_filter_verdict_badges_and_score_sort(browser_setup, qtbot):
    state, b = browser_setup
    project = state.project
    assert b.move(1) == b.model.item_id(0), "no current item: move goes to the first"
    assert b.move(1) == b.model.item_id(1)
    assert b.move(-5) == b.model.item_id(0)
    keep = set(b.model.visible_ids()[3:7])
    state.set_filter(keep)
    assert set(b.model.visible_ids()) == keep
    state.set_filter(None)
    assert b.model.rowCount() == 16
    first = b.model.item_id(0)
    project.set_verdict(first, "anomalous", verified=True)
    qtbot.waitUntil(lambda: b.model.data(b.model.index(0), VerdictRole) == "anomalous", timeout=2000)
    assert b.model.data(b.model.index(0), VerifiedRole) is True
    run = project.create_run("test-engine", "image", {})
    ids = project.item_ids()
    project.save_scores(run.id, ids, [float(i % 7) for i in range(len(ids))])
    state.set_current_run(run.id)
    b.sort.setCurrentText("score (high first)")
    scores = [b.model.data(b.model.index(r), ScoreRole) for r in range(b.model.rowCount())]
    assert scores == sorted(scores, reverse=True) and scores[0] == 6.0
    assert b.model.data(b.model.index(0), ScoreTextRole) == "6.00", "scores 0..6: the badge prints 3 digits of the range"
    tiny = {i: (1.33e-6 if n == 0 else 2.77 * (n % 2)) for n, i in enumerate(ids)}
    project.save_scores(run.id, list(tiny), list(tiny.values()))
    b.model.set_scores(tiny)
    texts = {b.model.item_id(r): b.model.data(b.model.index(r), ScoreTextRole) for r in range(b.model.rowCount())}
    assert texts[ids[0]] == "0.00" and texts[ids[1]] == "2.77", "a score of 1e-6 in a run spanning 0..2.77 reads 0.00"
    b.sort.setCurrentText("name")
    names = [r.name.lower() for r in b.model.rows]
    assert names == sorted(names)
    grab = b.grab().toImage()
    assert not grab.isNull()


def test_decimals_follow_the_range_of_the_scores():
    assert decimals_for_span(4.0) == 2 and decimals_for_span(0.004) == 5 and decimals_for_span(250.0) == 0
    assert decimals_for_span(3.0, significant=5, least=2) == 4 and decimals_for_span(1e-12) == 8
    assert decimals_for_span(0.0) == 2 and decimals_for_span(float("nan")) == 2


def test_items_added_later_and_project_switch(browser_setup, qtbot, tmp_path):
    from anomaly_gui.core.project import open_project

    state, b = browser_setup
    p = write_png(tmp_path / "extra.png", np.zeros((8, 8), np.uint8))
    state.project.add_items([DatasetItem(path=str(p), split="val", label="good")])
    qtbot.waitUntil(lambda: b.model.rowCount() == 17, timeout=2000)
    assert any(t.startswith("  val (1)") for t in _tree_texts(b))
    other = open_project(tmp_path / "other.agproj")
    state.set_project(other)
    assert b.model.rowCount() == 0 and b.empty_label.isVisibleTo(b)
    state.set_project(None)
    assert b.loader is None


def test_thumbnail_of_16bit_tiff_exif_jpeg_and_video(tmp_path):
    import cv2
    import tifffile
    from PIL import Image

    from anomaly_gui.core.errors import DataError
    from anomaly_gui.gui.thumbnails import load_thumbnail, make_thumbnail, thumb_cache_path

    tif = tmp_path / "deep.tif"
    tifffile.imwrite(tif, (np.arange(300 * 200, dtype=np.uint32).reshape(200, 300) % 60000).astype(np.uint16))
    t = make_thumbnail(tif, size=64)
    assert t.shape == (43, 64, 3) and t.dtype == np.uint8 and t.std() > 1
    jpg = tmp_path / "rot.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90°: stored 120x40 is shown 40x120
    Image.fromarray(np.full((40, 120, 3), 128, np.uint8)).save(jpg, exif=exif)
    assert make_thumbnail(jpg, size=60).shape[:2] == (60, 20)
    video = tmp_path / "v.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (80, 60))
    for i in range(3):
        w.write(np.full((60, 80, 3), 200, np.uint8))
    w.release()
    assert make_thumbnail(video, 0, "video", size=40).shape[:2] == (30, 40)
    img = load_thumbnail(tif, None, "image", 64, tmp_path / "cache")
    assert (img.width(), img.height()) == (64, 43)
    first = thumb_cache_path(tmp_path / "cache", tif, None, 64)
    assert first.is_file()
    tifffile.imwrite(tif, np.zeros((10, 10), np.uint16))
    assert thumb_cache_path(tmp_path / "cache", tif, None, 64) != first, "an edited file gets a new thumbnail"
    with pytest.raises(DataError, match="missing.png"):
        make_thumbnail(tmp_path / "missing.png")
