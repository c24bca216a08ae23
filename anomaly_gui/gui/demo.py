"""Demos: each kind of imagery from the first screen, with a small run trained on first open.

`DEMOS` names the four sample data sets (`anomaly_gui.sample_data`), the engine and the small schedule of
the run each demo trains, and the dock an analyst comes for. `DemoController(window).open(domain)` opens
(making it once) the domain's own project under `~/.anomaly_gui/demos/`, imports the sample subset in the
import worker, prepares it once (SAR: a restricted zone; camera traps: one species held out of training so
the map shows an unseen species), then trains the run through the domain's own panel (Train, Detection or
Cluster view: a worker with progress, Cancel and the live curves; the status bar shows the same progress),
or reuses the finished run of an earlier open. When the run is there it shows the main view populated:
heatmap and sliders on a defective fabric; ship boxes with the zone; the t-SNE / DBSCAN map; a test clip
playing with its anomaly curve. `ready(domain)` fires then, with `seconds` since `open`.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QLabel, QProgressBar

from anomaly_gui.core.errors import AnomalyGuiError
from anomaly_gui.core.project import PROJECT_SUFFIX
from anomaly_gui.gui import settings as app_settings_mod

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoSpec:
    domain: str
    subset: str  # folder of the sample data
    title: str
    short: str  # one line under the title on the welcome page
    blurb: str
    engine: str
    task: str
    dock: str  # the dock with the domain's main view
    params: dict[str, Any] = field(default_factory=dict)  # the engine's defaults, a shorter schedule


DEMOS: dict[str, DemoSpec] = {
    "product": DemoSpec("product", "product", "Product images", "fabric defects · PatchCore",
                        "Woven fabric in the MVTec AD layout (holes, stains, loose threads): heatmaps, threshold and "
                        "minimum-area sliders, score histogram.", "patchcore", "image", "review"),
    "sar": DemoSpec("sar", "sar", "SAR ships", "ship boxes · restricted zone",
                    "Speckled SAR chips with ships (YOLO + VOC labels): a RetinaNet trained for about a minute, a "
                    "confidence slider, and a restricted zone whose ships are flagged.", "retinanet", "detection",
                    "detection", {"max_minutes": 1.0}),
    "wildlife": DemoSpec("wildlife", "camera_traps", "Camera traps", "t-SNE map · unseen species",
                         "Camera-trap photos (COCO Camera Traps) of deer, fox and boar; the boar is kept out of "
                         "training, so the embedding map and the per-species novelty scores show it as an unseen species.",
                         "simclr_ocsvm", "embedding", "cluster_view", {"epochs": 0}),
    "video": DemoSpec("video", "video", "Surveillance video", "clip playback · anomaly curve",
                      "Walkway clips in the UCSD layout (a cart, a runner): a future-frame predictor, per-frame "
                      "scores, and the clip playing with its anomaly curve.", "future_frame", "video", "video_player",
                      # one model, not the default's three: a quick first look; the predictor alone, without the
                      # appearance term (0036): on these synthetic silhouettes the term lowers the raw frame AUC
                      # (0.970 -> 0.934) and lifts the test clips' normal frames above the threshold; and the demo
                      # then needs no ImageNet weights file
                      {"epochs": 10, "ensemble": 1, "appearance_weight": 0.0}),
}

UNSEEN_SPECIES = "boar"  # held out of the wildlife demo's training
#: the SAR demo's restricted zone (chip pixels): a harbour entrance in the top-left quarter of every chip
SAR_ZONE = [(0.0, 0.0), (74.0, 0.0), (64.0, 40.0), (36.0, 70.0), (0.0, 74.0)]


def demo_project_path(domain: str) -> Path:
    return app_settings_mod.data_home() / "demos" / f"{domain}{PROJECT_SUFFIX}"


def prepare_project(spec: DemoSpec, project: Any) -> None:
    """One-time set-up of a freshly imported demo project (idempotent: marked in the project's settings)."""
    if project.setting("demo.prepared"):
        return
    if spec.domain == "sar" and not project.zones():
        project.add_zone("Harbour (restricted)", sar_zone(project))
    if spec.domain == "wildlife":
        by_species: dict[str, list[int]] = {}
        for it in project.items():
            by_species.setdefault(it.label or "", []).append(int(it.id))  # type: ignore[arg-type]
        train: list[int] = []
        test: list[int] = list(by_species.pop(UNSEEN_SPECIES, []))
        for ids in by_species.values():
            n_test = max(1, round(len(ids) * 0.3)) if len(ids) > 1 else 0
            train += ids[: len(ids) - n_test]
            test += ids[len(ids) - n_test:]
        project.set_split(train, "train")
        project.set_split(test, "test")
    project.set_setting("demo.prepared", {"domain": spec.domain, "time": time.time()})


def sar_zone(project: Any, margin: float = 10.0) -> list[tuple[float, float]]:
    """The SAR demo's restricted zone: an area (same in every chip) around the first labelled ship of the
    held-out chips, so the demo shows a ship flagged inside it; `SAR_ZONE` when there is none."""
    held = sorted((it for it in project.items(with_annotations=True) if it.split in ("val", "test")),
                  key=lambda it: it.path)
    for it in held:
        boxes = [a.box() for a in it.annotations if a.kind == "box" and a.source != "model"]
        if boxes:
            x1, y1, x2, y2 = boxes[0]
            w, h = float(it.width or 128), float(it.height or 128)
            x1, y1 = max(0.0, x1 - margin), max(0.0, y1 - margin)
            x2, y2 = min(w, x2 + margin), min(h, y2 + margin)
            cut = min(x2 - x1, y2 - y1) / 3  # a bevelled corner: a harbour basin, not a box
            return [(x1, y1), (x2 - cut, y1), (x2, y1 + cut), (x2, y2), (x1, y2)]
    return list(SAR_ZONE)


def finished_run(project: Any, spec: DemoSpec) -> int | None:
    """The newest finished run of the demo's task, if an earlier open trained one."""
    runs = [r for r in project.runs(spec.task) if r.status == "done"]
    return max((r.id for r in runs), default=None)


class DemoController(QObject):
    """Opens demos in a main window; see the module docstring."""

    ready = Signal(str)  # domain, once the main view is populated
    failed = Signal(str)

    def __init__(self, window: Any):
        super().__init__(window)
        self.window = window
        self.spec: DemoSpec | None = None
        self.started = 0.0
        self.seconds: float | None = None  # open -> main view populated
        self.summary = ""  # what the populated view shows (SAR: boxes on screen)
        self.trained = False  # whether this open trained the run (False: reused)
        self.waiting = False  # a demo run is training
        self.bar = QProgressBar()
        self.bar.setMaximumWidth(220)
        self.bar.setTextVisible(True)
        self.label = QLabel("")
        self.label.setContentsMargins(6, 0, 6, 0)
        # permanent widgets: status messages (import, training) would hide normal ones
        window.statusBar().insertPermanentWidget(0, self.label)
        window.statusBar().insertPermanentWidget(1, self.bar)
        self._set_busy(False)

    # -- flow ----------------------------------------------------------------------------------------
    def open(self, domain: str, project: str | Path | None = None) -> bool:
        """Open the demo of `domain` (in `project` when given, else its own file under the data folder)."""
        spec = DEMOS.get(domain)
        if spec is None:
            self.window._error("Demo", f"unknown demo {domain!r}; choose one of: {', '.join(DEMOS)}")
            return False
        from anomaly_gui.sample_data import ensure_sample_data

        try:
            data = Path(ensure_sample_data()) / spec.subset
        except (AnomalyGuiError, OSError) as exc:
            self.window._error("Demo", f"the sample data could not be prepared: {exc}")
            return False
        self.spec, self.started, self.seconds, self.trained, self.summary = spec, time.perf_counter(), None, False, ""
        if not self.window.open_project(Path(project) if project else demo_project_path(domain)):
            return False
        if self.window.state.project.count_items() == 0:
            self.window.importer.finished.connect(self._on_imported)
            self._set_busy(True, f"Demo: importing the {spec.title.lower()} sample …")
            if not self.window.import_path(data):
                self.window.importer.finished.disconnect(self._on_imported)
                self._set_busy(False)
                return False
        else:
            QTimer.singleShot(0, self._continue)
        return True

    def _on_imported(self, result: Any) -> None:
        self.window.importer.finished.disconnect(self._on_imported)
        if result is None:
            self._fail(f"the sample import failed: {self.window.importer.last_error}")
            return
        self._continue()

    def _continue(self) -> None:
        spec, project = self.spec, self.window.state.project
        if spec is None or project is None:
            return
        prepare_project(spec, project)
        self.window.state.itemsChanged.emit()
        self.window.dock_follower.update()
        self.window.dock_follower.give_room(spec.dock)
        run_id = finished_run(project, spec)
        if run_id is not None:
            self._show(run_id)
        else:
            self._train()

    def _train(self) -> None:
        spec = self.spec
        assert spec is not None
        panel = self.window.panels.get(spec.dock if spec.task in ("detection", "embedding") else "train")
        if panel is None:
            self._fail(f"the {spec.dock} panel is not available ({self.window.panel_errors.get(spec.dock, '')})")
            return
        self.trained = self.waiting = True
        self._set_busy(True, f"Demo: training a small {spec.engine} run (first open only) …")
        try:
            job = getattr(self, f"_train_{spec.task}")(panel, spec)
        except (KeyError, ValueError, AnomalyGuiError) as exc:
            self._fail(str(exc))
            return
        if job is None:
            self._fail(getattr(panel, "status", getattr(panel, "train_status", None)).text() or "training did not start")
            return
        job.progress.connect(self._on_progress)
        job.failed.connect(lambda msg: self._fail(f"training failed: {msg}"))
        job.cancelled.connect(lambda: self._fail("training cancelled"))
        job.finished.connect(lambda: self._set_busy(False) if not self.waiting else None)

    def _train_image(self, panel: Any, spec: DemoSpec) -> Any:
        panel.select_engine(spec.engine)
        panel.form.set_values(spec.params)
        if not getattr(self, "_train_connected", False):
            panel.runFinished.connect(self._on_run_finished)
            self._train_connected = True
        panel.start()
        return panel.job

    _train_video = _train_image

    def _train_detection(self, panel: Any, spec: DemoSpec) -> Any:
        k = panel.engine_combo.findData(spec.engine)
        if k < 0:
            raise KeyError(f"engine {spec.engine} is not installed")
        panel.engine_combo.setCurrentIndex(k)
        panel.param_form.set_values(spec.params)
        panel.tabs.setCurrentIndex(1)  # the Train tab: progress and the mAP curve while it trains
        panel.start_training()
        if panel.job is not None:
            panel.job.result.connect(lambda rid: QTimer.singleShot(0, lambda: self._on_run_finished(int(rid))))
        return panel.job

    def _train_embedding(self, panel: Any, spec: DemoSpec) -> Any:
        from anomaly_gui.engines.backbones import find_weights

        params = dict(spec.params)
        if find_weights("mobilenet_v2", None) is None:
            params["pretrained"] = False  # offline without ImageNet weights: a random-feature map, said below
            self.window.state.message.emit("Demo: MobileNetV2 weights not found; embedding without pretraining")
        embed = panel.compute_embeddings(spec.engine, params)
        if embed is not None:
            embed.result.connect(lambda _out: QTimer.singleShot(0, self._watch_map))
        return embed

    def _watch_map(self) -> None:
        panel = self.window.panels["cluster_view"]
        if panel.job is not None and panel.cmap is None:
            panel.job.result.connect(lambda _m: QTimer.singleShot(0, lambda: self._on_run_finished(None)))
        else:
            self._on_run_finished(None)

    def _on_progress(self, done: int, total: int, msg: str) -> None:
        if total > 0:
            self.bar.setRange(0, total)
            self.bar.setValue(min(done, total))
        self.bar.setFormat(f"%p%  {msg}"[:60] if msg else "%p%")

    def _on_run_finished(self, run_id: int | None) -> None:
        if not self.waiting:
            return  # a run the analyst started later, not the demo's
        self.waiting = False
        project = self.window.state.project
        if self.spec is None or project is None:
            return
        self._show(run_id if run_id is not None else finished_run(project, self.spec))

    # -- the populated main view ------------------------------------------------------------------------
    def _show(self, run_id: int | None) -> None:
        spec, project = self.spec, self.window.state.project
        if spec is None or project is None:
            return
        if run_id is not None:
            self.window.state.set_current_run(int(run_id))
        getattr(self, f"_show_{spec.task}")(project, run_id)
        self.window.dock_follower.give_room(spec.dock)
        self.seconds = time.perf_counter() - self.started
        self._set_busy(False)
        what = "trained" if self.trained else "reopened"
        self.window.state.message.emit(f"Demo {spec.title}: run {what}, main view ready in {self.seconds:.1f} s"
                                       + (f"; {self.summary}" if self.summary else ""))
        log.info("demo %s ready in %.1f s (%s)", spec.domain, self.seconds, what)
        self.ready.emit(spec.domain)

    def _show_image(self, project: Any, run_id: int | None) -> None:
        bad = [it for it in project.items(split="test") if it.is_anomalous]
        if bad:
            self.window.state.set_current_item(int(bad[0].id))

    def _show_detection(self, project: Any, run_id: int | None) -> None:
        panel = self.window.panels["detection"]
        panel.tabs.setCurrentIndex(0)
        if run_id is not None and panel.run_combo.findData(int(run_id)) >= 0:
            panel.run_combo.setCurrentIndex(panel.run_combo.findData(int(run_id)))
        # the scored chip with the most boxes at the slider's confidence, a flagged one first, then the one
        # with the most labelled ships (what the analyst should see found)
        from anomaly_gui.core.detection_export import item_detections

        best, best_key = None, (-1, -1, -1)
        for it in project.items(with_annotations=True):
            if it.split == "train" or run_id is None:
                continue
            dets = item_detections(project, int(it.id), int(run_id), panel.confidence, panel.rules_editor.rules,
                                   panel.known_classes)
            truth = sum(a.kind == "box" and a.source != "model" for a in it.annotations)
            key = (sum(d.flagged for d in dets), len(dets), truth)
            if key > best_key:
                best, best_key = int(it.id), key
        if best is not None:
            self.window.state.set_current_item(best)
        self.summary = (f"{len(panel.detections)} box(es) on screen at confidence ≥ {panel.confidence:.2f}, "
                        f"{sum(d.flagged for d in panel.detections)} in the restricted zone")

    def _show_embedding(self, project: Any, run_id: int | None) -> None:
        panel = self.window.panels["cluster_view"]
        panel.color_by.setCurrentText("Species")
        unseen = [it for it in project.items() if it.label == UNSEEN_SPECIES]
        if unseen:
            self.window.state.set_current_item(int(unseen[0].id))

    def _show_video(self, project: Any, run_id: int | None) -> None:
        frames = [it for it in project.items(split="test") if it.kind == "frame"]
        if not frames:
            return
        clip = sorted({it.group for it in frames})[0]
        first = min((it for it in frames if it.group == clip), key=lambda it: it.frame_index or 0)
        self.window.state.set_current_item(int(first.id))
        player = self.window.panels.get("video_player")
        if player is not None and player.clip is not None:
            player.play()

    # -- status ---------------------------------------------------------------------------------------
    def _set_busy(self, busy: bool, text: str = "") -> None:
        self.label.setText(text)
        self.label.setVisible(busy)
        self.bar.setVisible(busy)
        if busy:
            self.bar.setRange(0, 0)
            self.bar.setFormat("starting …")

    def _fail(self, message: str) -> None:
        self.waiting = False
        self._set_busy(False)
        domain = self.spec.domain if self.spec else "?"
        self.window.state.message.emit(f"Demo {domain}: {message}")
        log.error("demo %s: %s", domain, message)
        self.failed.emit(message)
