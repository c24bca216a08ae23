"""Video player panel: play a clip frame by frame with its anomaly overlay and per-frame score curve.

Keys (while the panel has focus): Space play/pause, Left/Right step one frame, Ctrl+Left/Ctrl+Right previous/
next anomalous segment, Home/End first/last frame. The curve seeks on click; its dashed red line is the frame
threshold and can be dragged. A clip comes from the project (the current frame or video item) or from
"Open clip…"; scores come from the current run in the project or from a video model loaded here.
Decoding runs ahead of the playhead in a prefetch thread (`video_cache.FrameCache`); scoring and export run
through `workers.start_job`.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeyEvent
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QSlider,
    QSpinBox,
    QSplitter,
    QStyle,
    QMenu,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from anomaly_gui.core.errors import AnomalyGuiError
from anomaly_gui.core.formats.base import Annotation
from anomaly_gui.core.protocol import ClipScores
from anomaly_gui.core.run_metrics import run_frame_threshold
from anomaly_gui.core.video_export import flagged_mask
from anomaly_gui.core.video_io import Clip, clips_from_items
from anomaly_gui.gui.panels import register_panel
from anomaly_gui.gui.state import AppState
from anomaly_gui.gui.video_cache import FrameCache
from anomaly_gui.gui.video_curve import ScoreCurve, segments
from anomaly_gui.gui.video_player_files import ClipFilesMixin
from anomaly_gui.gui.viewer import ImageViewer
from anomaly_gui.gui.workers import JobBusyError, start_job
from anomaly_gui.pipeline import score_clip, store_clip_run

SPEEDS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


@register_panel
class VideoPlayerPanel(ClipFilesMixin, QWidget):
    """Frame-by-frame player with scores, overlays, segment jumps and export."""

    panel_id = "video_player"
    title = "Video player"
    area = "bottom"
    menu = "Video"
    order = 60

    frameShown = Signal(int)

    def __init__(self, state: AppState, window: Any = None):
        super().__init__()
        self.state = state
        self.window_ = window
        self.clip: Clip | None = None
        self.cache: FrameCache | None = None
        self.scores: np.ndarray | None = None
        self.errors: np.ndarray | None = None
        self.maps: np.ndarray | None = None
        self.labels: np.ndarray | None = None
        self.threshold = 0.5
        self.engine: Any = None
        self.index = 0
        self.frames_shown = 0
        self._job: Any = None
        self._build()
        self.timer = QTimer(self)
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self._tick)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        from anomaly_gui.gui.player_keys import PlayerKeys

        self.keys = PlayerKeys.install(self)  # Space / arrows wherever focus is, unless a text field has it
        state.currentItemChanged.connect(self._on_current_item)
        state.projectChanged.connect(lambda _p: self.close_clip())
        state.currentRunChanged.connect(self._on_current_run)
        self._update_enabled()

    # -- layout -----------------------------------------------------------------------------------
    def _button(self, text: str, tip: str, slot: Any, icon: QStyle.StandardPixmap | None = None) -> QToolButton:
        b = QToolButton()
        b.setText(text)
        if icon is not None:
            b.setIcon(self.style().standardIcon(icon))
            b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonIconOnly)
        b.setToolTip(tip)
        b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        b.clicked.connect(slot)
        return b

    def _build(self) -> None:
        top = QHBoxLayout()
        self.open_btn = self._button("Open clip…", "Open a video file or a folder of frames", self.open_dialog)
        open_menu = QMenu(self.open_btn)
        open_menu.addAction("Video file…", self.open_file_dialog)
        open_menu.addAction("Folder of frames (UCSD, ShanghaiTech clip)…", self.open_folder_dialog)
        self.open_btn.setMenu(open_menu)
        self.open_btn.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.model_btn = self._button("Load model…", "Load a trained video model (.agm)", self.load_model_dialog)
        self.score_btn = self._button("Score clip", "Score every frame of the clip with the loaded model", self.score_clip)
        self.export_video_btn = self._button("Export video…", "Write the clip with its overlay as mp4", self.export_video_dialog)
        self.export_csv_btn = self._button("Export CSV…", "Write per-frame scores and verdicts", self.export_csv_dialog)
        for b in (self.open_btn, self.model_btn, self.score_btn, self.export_video_btn, self.export_csv_btn):
            top.addWidget(b)
        top.addStretch(1)
        self.status = QLabel("Open a clip (video file or frame folder) or select a frame in the browser.")
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        top.addWidget(self.status)

        self.viewer = ImageViewer(self.state)
        self.viewer.view.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.curve = ScoreCurve()
        self.curve.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.curve.seekRequested.connect(self.seek)
        self.curve.thresholdChanged.connect(self.set_threshold)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.viewer)
        split.addWidget(self.curve)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        split.setSizes([360, 140])

        controls = QHBoxLayout()
        self.prev_seg_btn = self._button("⏮", "Previous anomalous segment (Ctrl+Left)", self.prev_segment,
                                         QStyle.StandardPixmap.SP_MediaSkipBackward)
        self.step_back_btn = self._button("◀", "Previous frame (Left)", lambda: self.step(-1),
                                          QStyle.StandardPixmap.SP_MediaSeekBackward)
        self.play_btn = self._button("▶", "Play / pause (Space)", self.toggle_play,
                                     QStyle.StandardPixmap.SP_MediaPlay)
        self.step_fwd_btn = self._button("▶|", "Next frame (Right)", lambda: self.step(1),
                                         QStyle.StandardPixmap.SP_MediaSeekForward)
        self.next_seg_btn = self._button("⏭", "Next anomalous segment (Ctrl+Right)", self.next_segment,
                                        QStyle.StandardPixmap.SP_MediaSkipForward)
        for b in (self.prev_seg_btn, self.step_back_btn, self.play_btn, self.step_fwd_btn, self.next_seg_btn):
            controls.addWidget(b)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.slider.valueChanged.connect(self.seek)
        controls.addWidget(self.slider, 1)
        self.frame_label = QLabel("0 / 0")
        self.frame_label.setMinimumWidth(80)
        controls.addWidget(self.frame_label)
        self.speed = QComboBox()
        self.speed.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        for s in SPEEDS:
            self.speed.addItem(f"{s:g}×", s)
        self.speed.setCurrentIndex(SPEEDS.index(1.0))
        self.speed.setToolTip("Playback speed")
        self.speed.currentIndexChanged.connect(self._apply_speed)
        controls.addWidget(self.speed)
        controls.addWidget(QLabel("pixel thr"))
        self.pixel_thr = QDoubleSpinBox()
        self.pixel_thr.setDecimals(4)
        self.pixel_thr.setRange(0.0, 1e6)
        self.pixel_thr.setSingleStep(0.01)
        self.pixel_thr.setToolTip("Pixels whose box-summed error is above this are flagged")
        self.pixel_thr.valueChanged.connect(lambda _v: self.show_frame(self.index))
        controls.addWidget(self.pixel_thr)
        controls.addWidget(QLabel("min area"))
        self.min_area = QSpinBox()
        self.min_area.setRange(0, 100000)
        self.min_area.setValue(20)
        self.min_area.setToolTip("Flagged regions smaller than this many pixels are ignored")
        self.min_area.valueChanged.connect(lambda _v: self.show_frame(self.index))
        controls.addWidget(self.min_area)
        self.overlay_box = QCheckBox("overlay")
        self.overlay_box.setChecked(True)
        self.overlay_box.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.overlay_box.toggled.connect(lambda _v: self.show_frame(self.index))
        controls.addWidget(self.overlay_box)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(top)
        lay.addWidget(split, 1)
        lay.addLayout(controls)
        self.viewer.set_info("no clip")

    def actions(self) -> list[QAction]:
        out = []
        for text, slot in (("Open video file…", self.open_file_dialog), ("Open folder of frames…", self.open_folder_dialog),
                           ("Load video model…", self.load_model_dialog),
                           ("Score clip", self.score_clip), ("Export annotated video…", self.export_video_dialog),
                           ("Export frame scores (CSV)…", self.export_csv_dialog)):
            a = QAction(text, self)
            a.triggered.connect(slot)
            out.append(a)
        return out

    def sizeHint(self):
        from PySide6.QtCore import QSize

        return QSize(900, 620)

    # -- clip and results ---------------------------------------------------------------------------
    def load_clip(self, clip: Clip, index: int = 0) -> None:
        """Show `clip` (scores cleared unless the project has some for it)."""
        self.pause()
        self.close_clip()
        self.clip = clip
        self.cache = FrameCache(clip.source)
        self.labels = clip.labels
        n = len(clip)
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, n - 1))
        self.slider.blockSignals(False)
        self.curve.set_scores(None)
        self._load_project_scores()
        problems = "; ".join(str(p) for p in clip.source.problems)
        self.status.setText(f"{clip.name}: {n} frames at {clip.source.fps:g} fps" + (f" — {problems}" if problems else ""))
        self._update_enabled()
        self._bring_forward()
        self.seek(index, force=True)

    def _bring_forward(self) -> None:
        """In the main window, show this dock and give it most of the height: video is watched, not glanced at."""
        win = self.window_
        dock = getattr(win, "docks", {}).get(self.panel_id) if win is not None else None
        if dock is None:
            return
        dock.show()
        dock.raise_()
        if dock.height() < 0.5 * win.height():
            win.resizeDocks([dock], [int(win.height() * 0.62)], Qt.Orientation.Vertical)

    def close_clip(self) -> None:
        self.pause()
        if self.cache is not None:
            self.cache.close()
        self.clip = self.cache = None
        self.scores = self.errors = self.maps = self.labels = None
        self.curve.set_scores(None)
        self.curve.set_detected(None)
        self._update_enabled()

    def set_results(self, scores: np.ndarray, maps: np.ndarray | None = None, errors: np.ndarray | None = None,
                    threshold: float | None = None, pixel_threshold: float | None = None) -> None:
        """Per-frame scores (and raw maps at model resolution) for the loaded clip."""
        self.scores = np.asarray(scores, np.float32)
        self.maps = maps
        self.errors = errors
        self.curve.set_scores(self.scores, self.labels)
        if threshold is None:
            threshold = float(np.quantile(self.scores, 0.9)) if self.scores.size else 0.5
        if pixel_threshold is None and maps is not None:
            pixel_threshold = float(np.quantile(maps[:, ::2, ::2], 0.999))
        if pixel_threshold is not None:
            self.pixel_thr.blockSignals(True)
            self.pixel_thr.setSingleStep(max(pixel_threshold / 20, 1e-4))
            self.pixel_thr.setValue(pixel_threshold)
            self.pixel_thr.blockSignals(False)
        self.set_threshold(threshold)
        self._update_enabled()

    def set_threshold(self, value: float) -> None:
        self.threshold = float(value)
        self.curve.set_threshold(self.threshold)
        self.curve.set_detected(self.detected())
        self.show_frame(self.index)

    def detected(self) -> np.ndarray | None:
        # in float64: numpy casts the Python threshold to the scores' float32, where a threshold just above a
        # raw error of ~100 (spacing 7.6e-6) would round back onto it
        return None if self.scores is None else np.asarray(self.scores, np.float64) >= self.threshold

    def _on_current_run(self, _run_id: Any) -> None:
        """A run was chosen or has just been trained: an open project clip shows that run's scores (none if it
        did not score the clip, so no curve is ever shown under another run's name)."""
        clip = self.clip
        if clip is not None and clip.items and clip.items[0].id is not None:
            self.scores = self.errors = self.maps = None
            self.curve.set_scores(None)
            self.curve.set_detected(None)
            self._load_project_scores()
            self._update_enabled()
            self.show_frame(self.index)

    def _load_project_scores(self) -> None:
        """Scores of the current run for the clip's project items, when the run has them."""
        proj, run_id, clip = self.state.project, self.state.current_run, self.clip
        if proj is None or run_id is None or clip is None or not clip.items or clip.items[0].id is None:
            return
        stored = proj.scores(run_id)
        ids = [it.id for it in clip.items]
        run = proj.run(run_id)
        if not clip.per_frame_items:
            s = stored.get(int(ids[0]))
            if s is not None and "frame_scores" in s.extra:
                self.set_results(np.asarray(s.extra["frame_scores"], np.float32), threshold=run_frame_threshold(proj, run))
            return
        if not all(i in stored for i in ids):
            return
        maps = [proj.score_map(run_id, int(i)) for i in ids]
        stack = np.stack(maps) if all(m is not None for m in maps) else None
        self.set_results(np.array([stored[i].score for i in ids], np.float32), stack,
                         threshold=run_frame_threshold(proj, run),
                         pixel_threshold=run.params.get("pixel_threshold", run.metrics.get("pixel_threshold")))

    # -- playback ---------------------------------------------------------------------------------
    def seek(self, index: int, force: bool = False) -> None:
        if self.clip is None:
            return
        index = int(np.clip(index, 0, len(self.clip) - 1))
        if index == self.index and not force and self.frames_shown:
            return
        self.show_frame(index)

    def show_frame(self, index: int) -> None:
        """Draw frame `index` with its overlay, move slider, playhead and labels."""
        if self.clip is None or self.cache is None:
            return
        self.index = index
        try:
            frame = self.cache.get(index)
        except (IndexError, AnomalyGuiError) as exc:
            self.pause()
            self.status.setText(str(exc))
            return
        self.viewer.set_image(frame)
        info = f"{self.clip.name}  frame {index + 1}/{len(self.clip)}"
        self.viewer.clear_layer("contours:anomaly")
        self.viewer.clear_layer("boxes:regions")
        if self.scores is not None and index < len(self.scores):
            s = float(self.scores[index])
            flag = s >= self.threshold
            info += f"  score {s:.3f}" + ("  ANOMALY" if flag else "")
            if self.maps is not None and self.overlay_box.isChecked() and index < len(self.maps):
                mask, boxes = flagged_mask(self.maps[index], self.pixel_thr.value(), (frame.shape[1], frame.shape[0]),
                                           self.min_area.value())
                self.viewer.set_mask_contours(mask, color="#ff3b30", layer="contours:anomaly")
                self.viewer.set_boxes([Annotation("box", "anomaly", {"x1": x, "y1": y, "x2": x + w, "y2": y + h})
                                       for x, y, w, h, _ in boxes], {"anomaly": "#ff3b30"}, layer="boxes:regions",
                                      show_text=False)
        if self.labels is not None and index < len(self.labels) and self.labels[index]:
            info += "  [ground truth: anomalous]"
        self.viewer.set_info(info)
        self.slider.blockSignals(True)
        self.slider.setValue(index)
        self.slider.blockSignals(False)
        self.curve.set_playhead(index)
        self.frame_label.setText(f"{index + 1} / {len(self.clip)}")
        self.frames_shown += 1
        self.frameShown.emit(index)

    def step(self, delta: int) -> None:
        self.pause()
        self.seek(self.index + delta)

    @property
    def playing(self) -> bool:
        return self.timer.isActive()

    def play(self) -> None:
        if self.clip is None:
            return
        if self.index >= len(self.clip) - 1:
            self.seek(0)
        self._apply_speed()
        self.timer.start()
        self.play_btn.setText("❚❚")
        self.play_btn.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MediaPause))
        self._play_t0, self._play_n0 = time.perf_counter(), self.frames_shown

    def pause(self) -> None:
        if hasattr(self, "timer") and self.timer.isActive():
            self.timer.stop()
        self.play_btn.setText("▶")
        self.play_btn.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MediaPlay))

    def toggle_play(self) -> None:
        self.pause() if self.playing else self.play()

    def _apply_speed(self) -> None:
        fps = (self.clip.source.fps if self.clip else 10.0) * float(self.speed.currentData())
        self.timer.setInterval(max(1, int(round(1000.0 / fps))))

    def _tick(self) -> None:
        if self.clip is None or self.index >= len(self.clip) - 1:
            self.pause()
            return
        self.show_frame(self.index + 1)

    def playback_fps(self) -> float:
        """Frames shown per second since play started."""
        dt = time.perf_counter() - getattr(self, "_play_t0", time.perf_counter())
        return (self.frames_shown - getattr(self, "_play_n0", 0)) / dt if dt > 0 else 0.0

    def _segments(self) -> list[tuple[int, int]]:
        flags = self.detected()
        if flags is None:
            flags = self.labels
        return segments(flags) if flags is not None else []

    def next_segment(self) -> None:
        self.pause()
        for a, _ in self._segments():
            if a > self.index:
                self.seek(a)
                return
        self.status.setText("no anomalous segment after this frame")

    def prev_segment(self) -> None:
        self.pause()
        for a, _ in reversed(self._segments()):
            if a < self.index:
                self.seek(a)  # inside a segment: its start; past it: the start of that one
                return
        self.status.setText("no anomalous segment before this frame")

    def keyPressEvent(self, ev: QKeyEvent) -> None:
        key, ctrl = ev.key(), bool(ev.modifiers() & Qt.KeyboardModifier.ControlModifier)
        handlers = {
            (Qt.Key.Key_Space, False): self.toggle_play,
            (Qt.Key.Key_Left, False): lambda: self.step(-1),
            (Qt.Key.Key_Right, False): lambda: self.step(1),
            (Qt.Key.Key_Left, True): self.prev_segment,
            (Qt.Key.Key_Right, True): self.next_segment,
            (Qt.Key.Key_Home, False): lambda: self.step(-self.index),
            (Qt.Key.Key_End, False): lambda: self.step(len(self.clip) if self.clip else 0),
        }
        fn = handlers.get((key, ctrl))
        if fn is None:
            super().keyPressEvent(ev)
            return
        fn()
        ev.accept()

    # -- project, files, model ------------------------------------------------------------------------
    def _on_current_item(self, item_id: int | None) -> None:
        proj = self.state.project
        if proj is None or item_id is None:
            return
        item = proj.item(item_id)
        if item.kind not in ("frame", "video"):
            return
        if item.kind == "frame":
            if self.clip is not None and self.clip.items and self.clip.items[0].group == item.group and self.clip.items[0].id is not None:
                pos = next((k for k, it in enumerate(self.clip.items) if it.id == item_id), None)
                if pos is not None:
                    self.seek(pos)
                    return
            members = proj.items(kind="frame", group=item.group)
            clip = clips_from_items(members)[0]
            self.load_clip(clip, next((k for k, it in enumerate(clip.items) if it.id == item_id), 0))
        else:
            self.load_clip(clips_from_items([item])[0], int(item.frame_index or 0))

    def score_clip(self) -> None:
        if self.clip is None or self.engine is None:
            return
        try:
            self._job = start_job(lambda ctx, clip, eng=self.engine: score_clip(eng, clip, ctx), self.clip,
                                  title="Score clip", kind="video-score")
        except JobBusyError as exc:
            self.status.setText(str(exc))
            return
        self._job.progress.connect(lambda d, t, m: self.status.setText(f"scoring {d}/{t} {m}"))
        self._job.result.connect(self._on_scored)
        self._job.failed.connect(self._on_score_failed)
        self.score_btn.setEnabled(False)
        self._job.finished.connect(self._update_enabled)

    def _on_score_failed(self, msg: str) -> None:
        self.status.setText(f"scoring failed: {msg}")
        QMessageBox.warning(self, "Scoring failed", msg)

    def _on_scored(self, cs: ClipScores) -> None:
        self.set_results(cs.scores, cs.maps, cs.errors, threshold=cs.default_threshold, pixel_threshold=cs.pixel_threshold)
        self._store_run(cs)
        self.status.setText(f"{self.clip.name if self.clip else ''}: scored {len(cs.scores)} frames with {self.engine.name}")

    def _store_run(self, cs: ClipScores) -> None:
        """Keep scores of project clips in the project (a run of task video), so they survive a restart."""
        proj, clip = self.state.project, self.clip
        if proj is None or clip is None or not clip.per_frame_items or clip.items[0].id is None:
            return
        self.state.set_current_run(store_clip_run(proj, self.engine, clip, cs, {"pixel_threshold": float(self.pixel_thr.value())}))

    def _update_enabled(self) -> None:
        has_clip = self.clip is not None
        for w in (self.play_btn, self.step_back_btn, self.step_fwd_btn, self.slider, self.prev_seg_btn, self.next_seg_btn):
            w.setEnabled(has_clip)
        self.score_btn.setEnabled(has_clip and self.engine is not None)
        self.export_csv_btn.setEnabled(self.scores is not None)
        self.export_video_btn.setEnabled(self.scores is not None and has_clip)

    def closeEvent(self, ev: Any) -> None:
        self.close_clip()
        super().closeEvent(ev)
