"""The video player's file side: opening a clip (video file, folder of frames, folder of clip folders) or a
video model, and exporting the frame verdicts (CSV, annotated mp4). A mixin of `VideoPlayerPanel`, which
provides the widgets and state used here (clip, engine, scores, maps, thresholds, status, state)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QFileDialog, QMessageBox

from anomaly_gui.core.errors import AnomalyGuiError
from anomaly_gui.core.video_export import FrameVerdicts, export_csv, export_video
from anomaly_gui.core.video_io import Clip, open_source
from anomaly_gui.gui.workers import JobBusyError, start_job


class ClipFilesMixin:
    """Open clips and video models; export verdicts. Mixed into `VideoPlayerPanel` (a QWidget)."""

    def open_path(self, path: str | Path) -> bool:
        """Open a video file or a folder of frames; a folder of clip folders (a UCSD Test/ folder) opens
        its first clip. Errors name the file and leave the current clip as it was."""
        path = Path(path)
        if path.is_dir():
            from anomaly_gui.core.imageio import is_image_file

            if not any(is_image_file(p) for p in path.iterdir()):
                clips = sorted(d for d in path.iterdir() if d.is_dir() and any(is_image_file(p) for p in d.iterdir()))
                if clips:
                    self.state.message.emit(f"{path.name} holds {len(clips)} clip folders; opened {clips[0].name}")
                    path = clips[0]
        try:
            src = open_source(path)
        except AnomalyGuiError as exc:
            QMessageBox.warning(self, "Cannot open clip", str(exc))
            return False
        self.load_clip(Clip(name=path.stem if path.is_file() else path.name, source=src))
        return True

    def open_dialog(self) -> None:
        """The Open clip button's menu: a video file or a folder of frames."""
        self.open_btn.showMenu()

    def open_file_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open video file", "",
                                              "Videos (*.mp4 *.avi *.mov *.mkv *.m4v *.mpg *.mpeg *.wmv *.webm);;All files (*)")
        if path:
            self.open_path(path)

    def open_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a folder of frames (one clip)")
        if path:
            self.open_path(path)

    def set_engine(self, engine: Any) -> None:
        self.engine = engine
        self.status.setText(f"model: {engine.name} ({engine.title}) on {engine.device}")
        self._update_enabled()

    def load_model_dialog(self) -> None:
        from anomaly_gui.engines.base import Engine, Task

        path, _ = QFileDialog.getOpenFileName(self, "Load video model", "", "Models (*.agm);;All files (*)")
        if not path:
            return
        try:
            eng = Engine.load(path)
        except AnomalyGuiError as exc:
            QMessageBox.warning(self, "Cannot load model", str(exc))
            return
        if eng.task != Task.VIDEO:
            QMessageBox.warning(self, "Not a video model", f"{path}: a {eng.task.value} model ({eng.name}); pick a video model")
            return
        self.set_engine(eng)

    def _verdicts(self) -> FrameVerdicts:
        assert self.scores is not None
        return FrameVerdicts(self.scores, self.threshold, self.maps, self.pixel_thr.value() if self.maps is not None else None,
                             float(self.min_area.value()), self.errors, self.labels,
                             self.clip.known if self.clip is not None else None)

    def export_csv_to(self, path: str | Path) -> Path:
        return export_csv(path, self._verdicts(), fps=self.clip.source.fps if self.clip else 10.0,
                          clip=self.clip.name if self.clip else "")

    def export_csv_dialog(self) -> None:
        if self.scores is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export frame scores", f"{self.clip.name}_scores.csv", "CSV (*.csv)")
        if path:
            try:
                self.status.setText(f"wrote {self.export_csv_to(path)}")
            except (AnomalyGuiError, OSError) as exc:
                QMessageBox.warning(self, "Export failed", str(exc))

    def export_video_to(self, path: str | Path) -> Any:
        """Start the mp4 export in a worker; returns the job."""
        assert self.clip is not None
        from anomaly_gui.core.video_io import open_source as _reopen

        source = _reopen(self.clip.source.path) if self.clip.source.path.is_file() else self.clip.source
        verdicts = self._verdicts()

        def work(ctx: Any) -> Path:
            return export_video(path, source, verdicts, progress=lambda d, t: ctx.progress(d, t, "exporting video"),
                                cancelled=ctx.is_cancelled)

        job = start_job(work, title="Export video", kind="video-export")
        job.progress.connect(lambda d, t, m: self.status.setText(f"{m} {d}/{t}"))
        job.result.connect(lambda p: self.status.setText(f"wrote {p}"))
        job.failed.connect(lambda msg: QMessageBox.warning(self, "Export failed", msg))
        return job

    def export_video_dialog(self) -> None:
        if self.scores is None or self.clip is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Export annotated video", f"{self.clip.name}_annotated.mp4", "MP4 (*.mp4)")
        if path:
            try:
                self.export_video_to(path)
            except JobBusyError as exc:
                self.status.setText(str(exc))
