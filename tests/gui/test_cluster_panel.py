"""Cluster view as a user meets it: embed real camera-trap photos in a worker, lasso filters the browser,
a click opens the item, the browser's selection is ringed, eps / legend / colour modes redraw."""
from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt

from tests.conftest import shared_dataset

pytestmark = pytest.mark.gui


def _drag_lasso(qtbot, plot, poly_data: list[tuple[float, float]]) -> None:
    """Press, move along the polygon, release: as a user draws with the mouse (pyqtgraph drops mouse
    moves closer than its rate limit, so the moves are spaced as a hand would space them)."""
    vp = plot.viewport()
    pts = [plot.view_to_widget(x, y).toPoint() for x, y in poly_data]
    qtbot.mousePress(vp, Qt.MouseButton.LeftButton, pos=pts[0])
    for a, b in zip(pts, pts[1:] + pts[:1]):
        for t in np.linspace(0.2, 1.0, 5):
            qtbot.mouseMove(vp, QPoint(int(a.x() + t * (b.x() - a.x())), int(a.y() + t * (b.y() - a.y()))))
            qtbot.wait(20)
    qtbot.mouseRelease(vp, Qt.MouseButton.LeftButton, pos=pts[0])


def _show_panel(window):
    panel = window.panels["cluster_view"]
    dock = window.docks["cluster_view"]
    dock.setFloating(True)
    dock.resize(1000, 560)
    dock.show()
    dock.raise_()
    return panel


def test_embed_real_camera_traps_lasso_filters_browser_and_click_opens(window, qtbot, wait_import, tmp_path):
    from anomaly_gui.core.embedding_maps import points_in_polygon
    from anomaly_gui.gui.cluster_jobs import embedding_runs

    root = shared_dataset("camera_traps")
    assert window.open_project(tmp_path / "ct.agproj")
    assert window.import_path(root)
    assert wait_import(window) is not None
    if window.importer.problems_dialog is not None:
        window.importer.problems_dialog.close()
    project = window.state.project
    n = project.count_items()
    assert n >= 15
    panel = _show_panel(window)
    panel.source.setCurrentIndex(panel.source.findData(-1))  # "Embed project items…"
    panel.epochs.setValue(0)
    panel.method.setCurrentIndex(panel.method.findData("tsne"))
    qtbot.mouseClick(panel.compute_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.cmap is not None, timeout=180000)
    runs = embedding_runs(project)
    assert len(runs) == 1 and runs[0].status == "done"
    assert len(panel.es) == n and panel.cmap.xy.shape == (n, 2)
    assert len(project.scores(runs[0].id)) == n
    assert set(panel.es.labels) >= {"jaguar", "cougar", "deer"}
    panel.grab().save(str(tmp_path / "cluster.png"))

    # lasso around the left half of the map (in data coordinates) -> browser shows exactly those items
    xy = panel.cmap.xy
    x0, x1 = xy[:, 0].min(), xy[:, 0].max()
    y0, y1 = xy[:, 1].min(), xy[:, 1].max()
    # the lasso's right edge runs through the widest gap between points in the middle half of the map, so no point
    # lies within a pixel of it (the drag passes through pixel-rounded positions)
    xs = np.sort(xy[:, 0])
    lo, hi = len(xs) // 4, max(len(xs) // 4 + 1, 3 * len(xs) // 4)
    k = lo + int(np.argmax(np.diff(xs[lo:hi + 1])))
    mid = float(xs[k] + xs[k + 1]) / 2
    pad = 0.02 * (y1 - y0 + 1e-6)
    poly = [(x0 - pad, y0 - pad), (mid, y0 - pad), (mid, y1 + pad), (x0 - pad, y1 + pad)]
    qtbot.mouseClick(panel.lasso_btn, Qt.MouseButton.LeftButton)
    assert panel.plot.vb.lasso_mode
    _drag_lasso(qtbot, panel.plot, poly)
    expected = {int(panel.es.item_ids[k]) for k in np.flatnonzero(points_in_polygon(xy, poly))}
    assert expected and len(expected) < n
    qtbot.waitUntil(lambda: window.state.filter is not None)
    assert window.state.filter == expected
    assert window.browser.model.rowCount() == len(window.state.filter)
    qtbot.mouseClick(panel.clear_btn, Qt.MouseButton.LeftButton)
    assert window.state.filter is None and window.browser.model.rowCount() == n

    # clicking a point opens its item
    qtbot.mouseClick(panel.lasso_btn, Qt.MouseButton.LeftButton)
    k = int(np.argmax(xy[:, 0]))
    qtbot.mouseClick(panel.plot.viewport(), Qt.MouseButton.LeftButton, pos=panel.plot.view_to_widget(*xy[k]).toPoint())
    qtbot.waitUntil(lambda: window.state.current_item == int(panel.es.item_ids[k]))

    # a selection made elsewhere (browser) rings its points
    ids = [int(i) for i in panel.es.item_ids[:3]]
    window.state.set_selection(ids)
    assert len(panel.plot.rings.data) == 3

    # the stored run is a source: re-map it with PCA without embedding again
    assert panel.source.currentData() == runs[0].id
    panel.method.setCurrentIndex(panel.method.findData("pca"))
    qtbot.mouseClick(panel.compute_btn, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.cmap is not None and panel.cmap.method == "pca", timeout=60000)
    assert len(panel.es) == n and len(embedding_runs(project)) == 1


def _blobs(n_per: int = 60, seed: int = 0):
    from anomaly_gui.core.embedding_maps import EmbeddingSet

    rng = np.random.default_rng(seed)
    centres = np.eye(3, 16) * 8
    far = np.zeros((4, 16))
    far[:, :3] = [[-8, -8, 0], [16, 16, 0], [0, -10, 12], [14, -6, 14]]  # isolated animals
    emb = np.concatenate([c + rng.normal(size=(n_per, 16)) for c in centres] + [far])
    labels = ["deer"] * n_per + ["fox"] * n_per + ["owl"] * n_per + ["fox"] * 4
    scores = np.r_[rng.random(3 * n_per), np.full(4, 5.0)].astype(np.float32)
    ids = np.arange(1, len(labels) + 1)
    return EmbeddingSet(ids, emb.astype(np.float32), labels, scores, [None] * len(labels))


def test_cluster_panel_modes_legend_eps_and_hover(qtbot, tmp_path):
    from PIL import Image

    from anomaly_gui.core.embedding_maps import compute_cluster_map
    from anomaly_gui.gui.cluster_panel import ClusterPanel
    from anomaly_gui.gui.state import AppState

    state = AppState()
    panel = ClusterPanel(state)
    qtbot.addWidget(panel)
    panel.resize(1000, 560)
    panel.show()
    es = _blobs()
    img = tmp_path / "a.png"
    Image.fromarray(np.full((40, 60, 3), 200, np.uint8)).save(img)
    panel.set_embedding_set(es, paths={int(i): str(img) for i in es.item_ids})
    cmap = compute_cluster_map(es, method="pca", min_samples=5)
    panel.set_map(cmap)
    assert panel.plot.point_count() == len(es)
    n_noise = int((panel.clusters < 0).sum())
    assert len(set(panel.clusters.tolist()) - {-1}) >= 3, "three blobs make three clusters"
    assert n_noise >= 1 and "noise" in panel.noise_label.text()
    # colour modes give different brushes; cluster mode paints noise red
    for mode in ("Cluster", "Score", "Species"):
        panel.color_by.setCurrentText(mode)
        assert panel.plot.point_count() == len(es)
    panel.color_by.setCurrentText("Cluster")
    noise_k = int(np.flatnonzero(panel.clusters < 0)[0])
    assert panel.point_colors()[noise_k].name() == "#d62728"
    # a larger eps swallows the noise
    panel.set_eps(float(cmap.kdist.max()) * 2)
    assert int((panel.clusters < 0).sum()) == 0
    # legend: untick a species -> its points leave the plot; opacity reaches the brushes
    panel.legend.set_visible("owl", False)
    assert panel.plot.point_count() == len(es) - 60
    panel.legend.sliders["deer"].setValue(30)
    deer_k = es.labels.index("deer")
    assert panel.plot.brush_of(deer_k).color().alpha() == round(255 * 0.30)
    # hover shows the crop
    panel._on_hover(0)
    assert panel.inset.pixmap() is not None and not panel.inset.pixmap().isNull()
    assert "#1" in panel.inset_text.text()
    # noise -> browser filter
    panel.set_eps(float(cmap.eps))
    panel.filter_noise()
    assert state.filter == set(panel.noise_ids())
    panel.grab().save(str(tmp_path / "cluster_blobs.png"))
