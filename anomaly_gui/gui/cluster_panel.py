"""Cluster view panel: t-SNE / PCA of embeddings as an interactive scatter linked to the browser.

- Source: any embedding run of the project (stored by the run pipeline, from here or the Train panel), or
  "Embed project items…" which fits the chosen embedding engine in a worker and stores a new run.
- Colour by species, DBSCAN cluster (noise in red: the map's anomalies) or anomaly score; per-species
  visibility and opacity in the legend. Hover shows the crop; a click opens the item; a lasso
  (toggle or Shift+drag) filters the dataset browser; the browser's selection is ringed here.
- DBSCAN eps from the k-distance plot (drag its line); "Noise → browser" filters to the noise points.
Maps are computed in a worker (`gui.workers.start_job`); re-clustering on the 2-D map is instant.
"""
from __future__ import annotations

from collections import Counter, OrderedDict
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QColor, QImage, QPixmap
from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QHBoxLayout, QLabel, QPushButton, QSpinBox, QSplitter,
                               QToolButton, QVBoxLayout, QWidget)

from anomaly_gui.core.crops import CropSpec, load_crop
from anomaly_gui.core.embedding_maps import ClusterMap, EmbeddingSet, dbscan_labels
from anomaly_gui.core.errors import AnomalyGuiError
from anomaly_gui.engines.base import Task, get_engine, list_engines, param_fields
from anomaly_gui.gui import cluster_jobs
from anomaly_gui.gui.cluster_legend import KDistancePlot, SpeciesLegend
from anomaly_gui.gui.cluster_view import NOISE_COLOR, ClusterPlot, palette_color, score_colors
from anomaly_gui.gui.panels import register_panel
from anomaly_gui.gui.state import AppState
from anomaly_gui.gui.workers import JobBusyError, start_job

COLOR_MODES = ("Species", "Cluster", "Score")
_EMBED_NEW = -1


@register_panel
class ClusterPanel(QWidget):
    panel_id = "cluster_view"
    title = "Cluster view"
    area = "bottom"
    menu = "Tools"
    order = 70

    def __init__(self, state: AppState, window: Any = None):
        super().__init__()
        self.state = state
        self.window_ = window
        self.es: EmbeddingSet | None = None
        self.cmap: ClusterMap | None = None
        self.clusters = np.zeros(0, np.int64)
        self.paths: dict[int, str] = {}
        self._index_of: dict[int, int] = {}
        self._brush_cache: dict[tuple[int, int, int, int], Any] = {}
        self._thumbs: OrderedDict[int, QPixmap] = OrderedDict()
        self.job: Any = None
        self._build()
        state.projectChanged.connect(lambda _p: self.refresh_sources(clear=True))
        state.runsChanged.connect(self.refresh_sources)
        state.currentRunChanged.connect(self._on_run_changed)
        state.selectionChanged.connect(self._on_state_selection)
        self.refresh_sources(clear=True)

    # -- layout ------------------------------------------------------------------------------
    def _build(self) -> None:
        self.source = QComboBox()
        self.source.setMinimumWidth(220)
        self.source.setToolTip("Embeddings to show: a stored embedding run, or embed the project's items now")
        self.engine_box = QComboBox()
        for e in list_engines(Task.EMBEDDING):
            self.engine_box.addItem(e.title or e.name, e.name)
        self.epochs = QSpinBox()
        self.epochs.setRange(0, 500)
        self.epochs.setValue(0)
        self.epochs.setPrefix("epochs ")
        self.epochs.setToolTip("Contrastive training epochs (0 = ImageNet features, fastest)")
        self.crop_box = QComboBox()
        self.crop_box.addItem("auto (validated per fit)", "auto")
        self.crop_box.addItem("animal crop, night IR whole", "cam_day")
        self.crop_box.addItem("animal crop", "cam")
        self.crop_box.addItem("whole photo", "whole")
        self.crop_box.setToolTip("Photos without boxes: crop the animal the ImageNet classifier's activation map finds "
                                 "(no detector needed; by default only in day photos, night infrared shots stay whole), "
                                 "or embed the whole photo; auto chooses whole or the day crop per fit by leave-one-species-out "
                                 "validation on the training species. Boxes in the data are always used")
        self.engine_box.currentIndexChanged.connect(lambda _i: self.crop_box.setEnabled(self._engine_has("animal_crop")))
        self.crop_box.setEnabled(self._engine_has("animal_crop"))
        self.compute_btn = QPushButton("Compute map")
        self.compute_btn.clicked.connect(self.compute)
        self.method = QComboBox()
        self.method.addItem("t-SNE", "tsne")
        self.method.addItem("PCA", "pca")
        self.color_by = QComboBox()
        self.color_by.addItems(COLOR_MODES)
        self.color_by.currentIndexChanged.connect(lambda _i: self.redraw(autorange=False))
        self.lasso_btn = QToolButton()
        self.lasso_btn.setText("Lasso")
        self.lasso_btn.setCheckable(True)
        self.lasso_btn.setToolTip("Draw a free-hand selection (or hold Shift and drag): filters the browser")
        self.lasso_btn.toggled.connect(lambda on: self.plot.set_lasso_mode(on))
        self.clear_btn = QPushButton("Show all")
        self.clear_btn.setToolTip("Clear the browser filter set by a lasso or by noise")
        self.clear_btn.clicked.connect(lambda: self.state.set_filter(None))
        top = QHBoxLayout()
        for w in (QLabel("Source"), self.source, self.engine_box, self.epochs, self.crop_box, self.compute_btn, QLabel("Map"), self.method,
                  QLabel("Colour"), self.color_by, self.lasso_btn, self.clear_btn):
            top.addWidget(w)
        top.addStretch(1)

        self.plot = ClusterPlot()
        self.plot.pointClicked.connect(self._on_point_clicked)
        self.plot.lassoed.connect(self._on_lasso)
        self.plot.hovered.connect(self._on_hover)
        self.legend = SpeciesLegend()
        self.legend.changed.connect(lambda: self.redraw(autorange=False))
        self.inset = QLabel("no point")
        self.inset.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.inset.setFixedSize(132, 132)
        self.inset.setWordWrap(True)
        self.inset.setStyleSheet("QLabel { background: #2a2a2a; color: #cccccc; border-radius: 4px; }")
        self.inset_text = QLabel("Hover a point: its crop, species, cluster and score show here")
        self.inset_text.setWordWrap(True)
        self.kplot = KDistancePlot()
        self.kplot.epsChanged.connect(self.set_eps)
        self.eps = QDoubleSpinBox()
        self.eps.setDecimals(4)
        self.eps.setRange(1e-4, 1e6)
        self.eps.setPrefix("eps ")
        self.eps.editingFinished.connect(lambda: self.set_eps(self.eps.value()))
        self.min_samples = QSpinBox()
        self.min_samples.setRange(2, 100)
        self.min_samples.setValue(5)
        self.min_samples.setPrefix("min pts ")
        self.min_samples.valueChanged.connect(lambda _v: self.set_eps(self.eps.value()))
        self.noise_btn = QPushButton("Noise → browser")
        self.noise_btn.setToolTip("Filter the browser to DBSCAN noise points (isolated animals: anomalies)")
        self.noise_btn.clicked.connect(self.filter_noise)
        self.noise_label = QLabel("")
        side = QWidget()
        sl = QVBoxLayout(side)
        sl.setContentsMargins(0, 0, 0, 0)
        hover_row = QHBoxLayout()
        hover_row.addWidget(self.inset)
        hover_row.addWidget(self.inset_text, 1)
        sl.addLayout(hover_row)
        sl.addWidget(self.kplot, 2)
        row = QHBoxLayout()
        for w in (self.eps, self.min_samples, self.noise_btn):
            row.addWidget(w)
        sl.addLayout(row)
        sl.addWidget(self.noise_label)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.plot)
        split.addWidget(self.legend)
        split.addWidget(side)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        split.setStretchFactor(2, 1)
        split.setSizes([760, 250, 360])
        self.status = QLabel("")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(top)
        lay.addWidget(split, 1)
        lay.addWidget(self.status)

    def sizeHint(self):  # noqa: N802 (Qt naming)
        from PySide6.QtCore import QSize

        return QSize(1000, 560)

    def actions(self) -> list[QAction]:
        a = QAction("Cluster view: compute embedding map", self)
        a.triggered.connect(self.compute)
        return [a]

    # -- sources and jobs ----------------------------------------------------------------------
    def refresh_sources(self, clear: bool = False) -> None:
        proj = self.state.project
        current = self.source.currentData()
        self.source.blockSignals(True)
        self.source.clear()
        if proj is not None:
            for r in cluster_jobs.embedding_runs(proj):
                self.source.addItem(f"Run {r.title}", r.id)
        self.source.addItem("Embed project items…", _EMBED_NEW)
        k = self.source.findData(current)
        self.source.setCurrentIndex(k if k >= 0 else 0)
        self.source.blockSignals(False)
        self.compute_btn.setEnabled(proj is not None or self.es is not None)
        if clear:
            self.set_embedding_set(None)

    def compute(self) -> None:
        """Embed the project (new run) or load the chosen run, then map it, in workers."""
        proj = self.state.project
        src = self.source.currentData()
        follower = getattr(self.window_, "dock_follower", None)
        if follower is not None:
            follower.give_room(self.panel_id)  # the map an analyst came for is never a 150-px strip
        try:
            if proj is not None and src == _EMBED_NEW:
                self.compute_embeddings(self.engine_box.currentData(), self.embed_params())
            elif proj is not None and src is not None:
                self.set_embedding_set(cluster_jobs.load_run_embeddings(proj, int(src)), paths=None)
                self.start_map()
            elif self.es is not None:
                self.start_map()
        except (AnomalyGuiError, JobBusyError) as exc:
            self.status.setText(str(exc))

    def embed_params(self) -> dict[str, Any]:
        """Parameters of "Embed project items…" for the chosen engine (the crop choice only where it has one)."""
        params: dict[str, Any] = {"epochs": int(self.epochs.value())}
        if self._engine_has("animal_crop"):
            params["animal_crop"] = self.crop_box.currentData()
        return params

    def _engine_has(self, name: str) -> bool:
        engine = self.engine_box.currentData()
        try:
            return engine is not None and name in {f.name for f in param_fields(get_engine(engine).Params)}
        except KeyError:
            return False

    def _on_run_changed(self, run_id: Any) -> None:
        """An embedding run made current anywhere (Train panel, Runs list) is mapped here."""
        proj = self.state.project
        if proj is None or run_id is None:
            return
        try:
            run = proj.run(int(run_id))
        except KeyError:
            return
        if run.task != Task.EMBEDDING.value or run.status != "done":
            return
        self.refresh_sources()
        k = self.source.findData(int(run_id))
        if k < 0 or (self.es is not None and self.es.meta.get("run_id") == int(run_id)):
            return
        self.source.setCurrentIndex(k)
        self.compute()

    def compute_embeddings(self, engine: str, params: dict[str, Any]) -> Any:
        """Fit `engine` with `params` on the project's items in a worker (a new run), then map them.

        Returns the embedding job (None when another embedding job runs: the status says so)."""
        proj = self.state.project
        if proj is None:
            return None
        try:
            self.job = start_job(cluster_jobs.embed_project_job, proj, engine, dict(params),
                                 title="Embedding items", kind="embedding")
        except JobBusyError as exc:
            self.status.setText(str(exc))
            return None
        self.job.result.connect(lambda out: self._on_embedded(*out))
        self._connect_job(self.job)
        return self.job

    def _on_embedded(self, run_id: int, es: EmbeddingSet) -> None:
        self.refresh_sources()
        k = self.source.findData(run_id)
        if k >= 0:
            self.source.setCurrentIndex(k)
        self.set_embedding_set(es)
        self.start_map()

    def start_map(self) -> None:
        if self.es is None or len(self.es) == 0:
            self.status.setText("No embeddings: choose a source and press Compute map")
            return
        try:
            self.job = start_job(cluster_jobs.map_job, self.es, self.method.currentData(), int(self.min_samples.value()),
                                 title="Cluster map", kind="cluster-map")
        except JobBusyError as exc:
            self.status.setText(str(exc))
            return
        self.job.result.connect(self.set_map)
        self._connect_job(self.job)

    def _connect_job(self, job: Any) -> None:
        self.compute_btn.setEnabled(False)
        job.progress.connect(lambda d, t, m: self.status.setText(f"{m} ({d}/{t})"))
        job.failed.connect(lambda msg: self.status.setText(f"Failed: {msg}"))
        job.cancelled.connect(lambda: self.status.setText("Cancelled"))
        job.finished.connect(lambda: self.compute_btn.setEnabled(True))

    # -- data ----------------------------------------------------------------------------------
    def set_embedding_set(self, es: EmbeddingSet | None, paths: dict[int, str] | None = None) -> None:
        """Show `es` (its map comes from `start_map` or `set_map`); paths of items for hover crops."""
        self.es = es
        self.cmap = None
        self.clusters = np.zeros(0 if es is None else len(es), np.int64)
        self._thumbs.clear()
        self._index_of = {} if es is None else {int(i): k for k, i in enumerate(es.item_ids)}
        if paths is None and es is not None and self.state.project is not None:
            paths = {int(it.id): it.path for it in self.state.project.items(ids=[int(i) for i in es.item_ids])}  # type: ignore[arg-type]
        self.paths = dict(paths or {})
        self.plot.set_points(np.zeros((0, 2)), np.zeros(0, np.int64), [])
        if es is None:
            self.legend.set_species([], {}, {})
            self.status.setText("Choose a source and press Compute map")
            return
        counts = Counter(es.labels)
        names = sorted(counts)
        self.legend.set_species(names, dict(counts), {n: palette_color(k) for k, n in enumerate(names)})
        self.status.setText(f"{len(es)} embeddings of {len(names)} species; computing the map…")

    def set_map(self, cmap: ClusterMap) -> None:
        """Show a computed map (called on the GUI thread with the worker's result)."""
        self.cmap = cmap
        self.clusters = cmap.clusters
        self.eps.blockSignals(True)
        self.eps.setValue(cmap.eps)
        self.eps.blockSignals(False)
        self.min_samples.blockSignals(True)
        self.min_samples.setValue(cmap.min_samples)
        self.min_samples.blockSignals(False)
        self.kplot.set_curve(cmap.kdist, cmap.eps)
        self.redraw(autorange=True)
        self._update_noise_label()
        self.status.setText(f"{cmap.method.upper()} of {len(cmap.xy)} points in {cmap.seconds:.2f} s; "
                            "click a point to open it, lasso to filter the browser")
        self._on_state_selection(self.state.selection)

    def set_eps(self, eps: float) -> None:
        """Re-run DBSCAN on the 2-D map with a new eps (instant)."""
        if self.cmap is None:
            return
        self.cmap.eps = float(eps)
        self.cmap.min_samples = int(self.min_samples.value())
        self.clusters = dbscan_labels(self.cmap.xy, self.cmap.eps, self.cmap.min_samples)
        self.cmap.clusters = self.clusters
        self.eps.blockSignals(True)
        self.eps.setValue(eps)
        self.eps.blockSignals(False)
        self.kplot.set_eps(eps)
        self._update_noise_label()
        if self.color_by.currentText() == "Cluster":
            self.redraw(autorange=False)

    def noise_ids(self) -> list[int]:
        if self.es is None or self.cmap is None:
            return []
        return [int(self.es.item_ids[k]) for k in np.flatnonzero(self.clusters < 0)]

    def filter_noise(self) -> None:
        ids = self.noise_ids()
        self.state.set_filter(set(ids))
        self.state.message.emit(f"Browser shows {len(ids)} DBSCAN noise point(s)")

    def _update_noise_label(self) -> None:
        n_cl = len(set(self.clusters.tolist()) - {-1})
        self.noise_label.setText(f"{n_cl} cluster(s), {int((self.clusters < 0).sum())} noise point(s) = anomalies")

    # -- drawing -------------------------------------------------------------------------------
    def point_codes(self) -> tuple[np.ndarray, list[QColor]]:
        """Colour code of each point for the current colour mode, and the colour of each code."""
        assert self.es is not None
        mode = self.color_by.currentText()
        if mode == "Cluster" and self.cmap is not None:
            top = int(self.clusters.max(initial=-1)) + 1
            return self.clusters + 1, [QColor(NOISE_COLOR)] + [palette_color(c) for c in range(top)]
        if mode == "Score" and self.es.scores is not None:
            idx, cols = score_colors(self.es.scores)
            return idx, cols
        names, inv = np.unique(np.asarray(self.es.labels, dtype=object).astype(str), return_inverse=True)
        return inv.astype(np.int64), [palette_color(k) for k in range(len(names))]

    def point_colors(self) -> list[QColor]:
        """Colour of each point (before opacity)."""
        codes, cols = self.point_codes()
        return [cols[int(c)] for c in codes]

    def redraw(self, autorange: bool = False) -> None:
        if self.es is None or self.cmap is None:
            return
        codes, cols = self.point_codes()
        names, sp = np.unique(np.asarray(self.es.labels, dtype=object).astype(str), return_inverse=True)
        alpha = np.array([int(round(255 * self.legend.opacity(n))) for n in names], np.int64)[sp]
        visible = np.array([self.legend.is_visible(n) for n in names], bool)[sp]
        keys, group = np.unique(codes * 256 + alpha, return_inverse=True)
        brushes = []
        for key in keys.tolist():
            c = cols[key // 256]
            bkey = (c.red(), c.green(), c.blue(), key % 256)
            b = self._brush_cache.get(bkey)
            if b is None:
                b = self._brush_cache[bkey] = pg.mkBrush(*bkey)
            brushes.append(b)
        self.plot.set_points(self.cmap.xy, group, brushes, visible, autorange=autorange)
        self._on_state_selection(self.state.selection)

    # -- interaction ---------------------------------------------------------------------------
    def _on_point_clicked(self, k: int) -> None:
        if self.es is not None:
            self.state.set_current_item(int(self.es.item_ids[k]))

    def _on_lasso(self, indices: list[int]) -> None:
        if self.es is None:
            return
        ids = [int(self.es.item_ids[k]) for k in indices]
        self.state.set_filter(set(ids))
        self.state.set_selection(ids)
        self.status.setText(f"Lasso: {len(ids)} item(s); the browser shows only them (Show all to clear)")

    def _on_state_selection(self, ids: list[int]) -> None:
        self.plot.highlight([self._index_of[i] for i in ids if i in self._index_of])

    def _on_hover(self, k: int) -> None:
        if k < 0 or self.es is None:
            return
        item_id = int(self.es.item_ids[k])
        parts = [f"#{item_id}", self.es.labels[k] or "(no label)"]
        if self.cmap is not None and len(self.clusters) > k:
            parts.append("noise" if self.clusters[k] < 0 else f"cluster {int(self.clusters[k])}")
        if self.es.scores is not None:
            parts.append(f"score {float(self.es.scores[k]):.3g}")
        self.inset_text.setText(" · ".join(parts))
        pm = self._thumb(k)
        if pm is not None:
            self.inset.setPixmap(pm)
        else:
            self.inset.setText("(no image)")

    def _thumb(self, k: int) -> QPixmap | None:
        assert self.es is not None
        item_id = int(self.es.item_ids[k])
        if item_id in self._thumbs:
            self._thumbs.move_to_end(item_id)
            return self._thumbs[item_id]
        path = self.paths.get(item_id)
        if not path:
            return None
        box = self.es.crop_boxes[k] if k < len(self.es.crop_boxes) else None
        try:
            arr = load_crop(CropSpec(path, tuple(box) if box else None), pad=0.1, size=128)  # type: ignore[arg-type]
        except AnomalyGuiError as exc:
            self.inset_text.setText(str(exc))
            return None
        img = QImage(arr.data, arr.shape[1], arr.shape[0], 3 * arr.shape[1], QImage.Format.Format_RGB888).copy()
        pm = QPixmap.fromImage(img)
        self._thumbs[item_id] = pm
        if len(self._thumbs) > 256:
            self._thumbs.popitem(last=False)
        return pm
