"""What the detection engines (YOLO, RetinaNet) share: input preparation (SAR stretch), training-data
checks reported per file, class lists, and scoring with automatic tiling of large scenes."""
from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.formats.base import Annotation, DatasetItem
from anomaly_gui.engines.base import Engine, RunContext, ScoreResult, Task

#: parameters every detector has (merged into each engine's Params by field name)
INPUT_CHOICES = ["auto", "percentile", "db"]


@dataclass
class TrainingSet:
    """Checked training data: per item, its image path and boxes (xyxy, labels); problems per file."""

    items: list[DatasetItem] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    labels: list[list[str]] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def item_boxes(item: DatasetItem) -> tuple[np.ndarray, list[str]]:
    """Ground-truth objects of an item as boxes (`core.metrics.detection.ground_truth_boxes`: boxes, polygons
    and masks; model and rejected ones excluded); crowd / difficult objects are not trained on."""
    from anomaly_gui.core.metrics.detection import ground_truth_boxes

    gt = ground_truth_boxes(item.annotations)
    keep = ~gt.ignore if gt.ignore is not None else np.ones(len(gt.labels), bool)
    return gt.xyxy[keep].reshape(-1, 4), [lab for lab, k in zip(gt.labels, keep) if k]


def check_training_items(items: Sequence[DatasetItem], classes: Sequence[str] | None = None) -> TrainingSet:
    """Validate items for training: missing images are skipped, boxes outside the image are clipped,
    empty boxes dropped, labels outside `classes` dropped; each case is reported naming the file."""
    from anomaly_gui.core.imageio import image_size

    out = TrainingSet()
    known = set(classes) if classes is not None else None
    for it in items:
        path = Path(it.path)
        if not path.is_file():
            out.problems.append(str(DataError(path, "image not found; item skipped")))
            continue
        try:
            w, h = (it.width, it.height) if it.width and it.height else image_size(path)
        except DataError as exc:
            out.problems.append(f"{exc}; item skipped")
            continue
        boxes, labels = item_boxes(it)
        keep_b, keep_l = [], []
        for b, lab in zip(boxes, labels):
            if known is not None and lab not in known:
                out.problems.append(str(DataError(path, f"class {lab!r} is not one of the model's classes; box dropped")))
                continue
            c = np.array([np.clip(b[0], 0, w), np.clip(b[1], 0, h), np.clip(b[2], 0, w), np.clip(b[3], 0, h)])
            if not np.allclose(c, b):
                out.problems.append(str(DataError(path, f"box {np.round(b, 1).tolist()} lies outside the {w}x{h} image; clipped")))
            if c[2] - c[0] < 1 or c[3] - c[1] < 1:
                out.problems.append(str(DataError(path, f"box {np.round(b, 1).tolist()} is empty; dropped")))
                continue
            keep_b.append(c)
            keep_l.append(lab)
        it.width, it.height = int(w), int(h)
        out.items.append(it)
        out.boxes.append(np.array(keep_b, dtype=np.float64).reshape(-1, 4))
        out.labels.append(keep_l)
    out.classes = list(classes) if classes is not None else sorted({lab for ls in out.labels for lab in ls})
    return out


def prepare_image(img: np.ndarray, mode: str = "auto", speckle: str = "none") -> np.ndarray:
    """Any image to HxWx3 uint8 for a detector. 'auto': 8-bit stays, 16-bit/float gets the SAR
    percentile stretch; 'percentile' and 'db' force that SAR stretch (single-band scenes)."""
    from anomaly_gui.core import sar
    from anomaly_gui.core.imageio import to_rgb8

    if mode == "auto" and img.dtype == np.uint8 and speckle == "none":
        return to_rgb8(img)
    stretch = "percentile" if mode == "auto" else mode
    return sar.render_rgb(img, sar.SarDisplay(stretch=stretch, speckle=speckle))


class DetectionEngine(Engine):
    """Base of the detectors: subclasses implement `fit` and `predict_arrays` (RGB uint8 images)."""

    task: ClassVar[Task] = Task.DETECTION
    needs: ClassVar[frozenset[str]] = frozenset({"boxes", "classes"})

    @property
    def classes(self) -> list[str]:
        return list(self.stats.get("classes", []))

    @abstractmethod
    def predict_arrays(self, images: Sequence[np.ndarray]) -> list[list[Annotation]]:
        """Boxes (pixel coordinates of each input) for RGB uint8 images, confidence >= params.min_confidence."""

    def _tta_key(self) -> str:
        """The test-time views and fusion in use, as keyed in `stats["score_shifts"]` ("none": the image alone)."""
        tta = getattr(self.params, "tta", "none")
        if isinstance(tta, bool) or tta is None:  # a RetinaNet file from before the views: true = the four flips
            return "flips (before 2026-12-01)" if tta else "none"
        return "none" if tta == "none" else f"{tta}/{getattr(self.params, 'tta_merge', 'wbf_mean')}"

    # -- test-time views (`tta`) ------------------------------------------------------------
    def _views(self) -> tuple[str, ...]:
        """The test-time views in use (`tta`; the image alone while fitting: validation only ranks epochs)."""
        from anomaly_gui.engines.detection_common.tta import VIEW_SETS, view_set

        return VIEW_SETS["none"] if getattr(self, "_training", False) else view_set(getattr(self.params, "tta", "none"))

    def _views_found(self, images: Sequence[np.ndarray], views: Sequence[str], floor: float) -> list[dict[str, dict[str, np.ndarray]]]:
        """Per image, view name -> the network's raw detections on that view (boxes in the image's pixels, raw scores
        from about `floor` up, labels), after the engine's own merging of one view's boxes."""
        raise NotImplementedError

    def _views_iou(self) -> float:
        """Boxes of the views overlapping more than this are one object."""
        return 0.55

    def _label_name(self, label: int) -> str:
        classes = self.classes
        return classes[label] if 0 <= label < len(classes) else str(label)

    def _raw_floor(self) -> float:
        """The raw score that calibrates to `min_confidence`."""
        from anomaly_gui.engines.detection_common.calibration import calibrate

        shift, floor = self._score_shift(), float(self.params.min_confidence)
        return float(calibrate(np.array([floor]), -shift)[0]) if shift else floor

    def _raw(self, images: Sequence[np.ndarray], floor: float | None = None) -> list[dict[str, np.ndarray]]:
        """Per image: boxes, raw scores, labels (highest score first) from the test-time views, fused, each view's raw
        scores from `floor` up (default: what calibrates to `min_confidence`); snapped to CFAR blobs when
        `box_refine` says so."""
        from anomaly_gui.engines.detection_common.cfar import CfarSettings
        from anomaly_gui.engines.detection_common.postfit import fused_views, snap_all

        p = self.params
        floor = self._raw_floor() if floor is None else floor
        views = self._views()
        found = fused_views(self._views_found(images, views, floor), views, self._views_iou(), getattr(p, "tta_merge", "wbf_mean"), floor)
        if self._refining():
            found = snap_all(found, images, CfarSettings(window=p.cfar_window, k=p.cfar_k, min_area=p.cfar_min_area), p.cfar_split)
        return found

    def _refining(self) -> bool:
        choice = getattr(self.params, "box_refine", "none")
        return choice == "cfar" or (choice == "auto" and self.stats.get("box_refine") == "cfar")

    def _score_shift(self) -> float:
        """The calibration (logit shift) measured after the fit for the test-time views in use: `score_shift` for the
        fit's own views (`calibrated_views`), else the one of `score_shifts`; model files without them have the single
        `score_shift` of their fit."""
        key, own = self._tta_key(), float(self.stats.get("score_shift", 0.0))
        if key == self.stats.get("calibrated_views", key):
            return own
        return float((self.stats.get("score_shifts") or {}).get(key, own))

    def _prepare(self, img: np.ndarray) -> np.ndarray:
        return prepare_image(img, getattr(self.params, "input_stretch", "auto"), getattr(self.params, "speckle", "none"))

    def _tile_size(self) -> int:
        return int(getattr(self.params, "tile", 0) or 0)

    def score(self, items: Sequence[DatasetItem], ctx: RunContext | None = None) -> list[ScoreResult]:
        """Detect in each item; scenes larger than `tile` are cut into overlapping tiles and merged."""
        from anomaly_gui.core.imageio import read_image
        from anomaly_gui.core.tiling import Scene, tiled_detect

        ctx = ctx or RunContext()
        if not self.fitted:
            raise RuntimeError(f"{self.name}: fit or load a model before scoring")
        results: list[ScoreResult] = []
        batch = max(1, int(getattr(self.params, "batch", 4)))
        pending: list[tuple[int, np.ndarray]] = []
        out: dict[int, list[Annotation]] = {}
        tile = self._tile_size()

        def flush() -> None:
            if pending:
                found = self.predict_arrays([a for _, a in pending])
                for (k, _), boxes in zip(pending, found):
                    out[k] = boxes
                pending.clear()

        for k, it in enumerate(items):
            ctx.check()
            size = _scene_size(it)
            if tile and size is not None and max(size) > tile * 1.5:
                overlap = max(32, tile // 6)
                name = Path(it.path).name
                # a large scene reports progress (and can be cancelled) tile by tile
                tile_ctx = RunContext(progress=lambda d, t, m, name=name: ctx.progress(d, t, f"{name}: {m}"),
                                      is_cancelled=ctx.is_cancelled)
                out[k] = tiled_detect(Scene(it.path), lambda a: self.predict_arrays([a])[0], tile=tile, overlap=overlap,
                                      prepare=self._prepare, ctx=tile_ctx)
            else:
                pending.append((k, self._prepare(read_image(it.path))))
                if len(pending) >= batch:
                    flush()
            ctx.progress(k + 1, len(items), f"detecting {Path(it.path).name}")
        flush()
        for k in range(len(items)):
            boxes = out.get(k, [])
            results.append(ScoreResult(score=max((b.score or 0.0 for b in boxes), default=0.0), boxes=boxes,
                                       extra={"n_boxes": len(boxes)}))
        return results


def _scene_size(item: DatasetItem) -> tuple[int, int] | None:
    """(width, height) from the item or the file header, without decoding the pixels."""
    from anomaly_gui.core.imageio import image_size
    from anomaly_gui.core.tiling import Scene

    if item.width and item.height:
        return int(item.width), int(item.height)
    path = Path(item.path)
    if path.suffix.lower() == ".npy" and path.is_file():
        sc = Scene(path)  # memory-mapped: only the header is read
        return sc.width, sc.height
    if path.suffix.lower() in (".tif", ".tiff") and path.is_file():
        import tifffile

        try:
            with tifffile.TiffFile(path) as tf:
                shape = tf.series[0].shape
            if len(shape) == 3 and shape[0] in (3, 4) and shape[2] not in (3, 4):
                shape = shape[1:]  # planar configuration
            return int(shape[1]), int(shape[0])
        except (tifffile.TiffFileError, IndexError, ValueError, OSError):
            pass  # an unusual TIFF: Pillow's header reading below, or read_image reports it
    try:
        return image_size(path)
    except DataError:
        return None  # read_image below reports the file


def make_box(x1: float, y1: float, x2: float, y2: float, label: str, score: float) -> Annotation:
    return Annotation(kind="box", label=label, score=float(score), source="model",
                      geometry={"x1": float(x1), "y1": float(y1), "x2": float(x2), "y2": float(y2)})


def find_backbone_weights(explicit: str = "") -> Path | None:
    """The ImageNet MobileNetV2 file: the explicit path (an error when missing), else the shared search of
    `engines.backbones` ($ANOMALY_GUI_WEIGHTS, ~/.anomaly_gui/weights, torch's cache ...); None: not found."""
    from anomaly_gui.core.errors import WeightsUnavailableError
    from anomaly_gui.engines.backbones import find_weights

    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise WeightsUnavailableError(f"{p}: backbone weights file not found")
        return p
    return find_weights("mobilenet_v2")
