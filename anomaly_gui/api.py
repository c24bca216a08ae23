"""The Python API (the original "AnomalyDetector" interface).

    from anomaly_gui import AnomalyDetector
    ad = AnomalyDetector(method="patchcore", image_size=224)
    ad.train("mvtec/screw")                # MVTec root, folder, list of paths or one image
    ad.save("screw.agm")
    ad = AnomalyDetector.load("screw.agm")
    results = ad.test("new_images/", "out/")   # writes <name>_overlay.png and <name>_mask.png

Training picks the threshold for `min_area` on validation images (`core.thresholds`): best F1 when the
validation data holds labelled anomalies, else the smallest threshold at which no normal validation image
has a region of `min_area` pixels. Without `val_dir`, a random fraction of the normal images is held out.
Threshold, minimum area and the display range are stored in the model file with the engine's statistics.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from anomaly_gui.core import postprocess as pp
from anomaly_gui.core.errors import DataError
from anomaly_gui.core.formats.base import DatasetItem
from anomaly_gui.core.thresholds import pick_threshold
from anomaly_gui.engines.base import Engine, RunContext, Task, get_engine

Source = str | Path | DatasetItem | Sequence[str | Path | DatasetItem]


@dataclass
class ImageResult:
    path: str
    score: float | None
    anomalous: bool | None
    regions: list[dict[str, Any]] = field(default_factory=list)
    overlay_path: str | None = None
    mask_path: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _is_normal_label(label: str) -> bool:
    return label.strip().lower() in ("good", "normal", "ok")


def _mvtec_items(root: Path) -> list[DatasetItem] | None:
    """Items of an MVTec-layout folder, or None when `root` is not one."""
    from anomaly_gui.core.formats.base import get_format

    try:
        reader = get_format("mvtec")
    except KeyError:
        return None
    if not reader.detect(root):
        return None
    return reader.read(root).items


def resolve_items(source: Source, split: str = "train") -> list[DatasetItem]:
    """DatasetItems from a folder, an MVTec root (its `split` part), a list or one image path.

    Plain folders: images below a sub-folder named good/normal/ok are normal, other sub-folders anomalous,
    images directly in the folder unlabelled (None)."""
    from anomaly_gui.core.formats.common import input_images

    if isinstance(source, DatasetItem):
        return [source]
    if isinstance(source, (list, tuple)):
        out: list[DatasetItem] = []
        for s in source:
            out += resolve_items(s, split)
        return out
    path = Path(source)
    if not path.exists():
        raise DataError(path, "not found")
    if path.is_file():
        return [DatasetItem(path=str(path))]
    mv = _mvtec_items(path)
    if mv is not None:
        chosen = [it for it in mv if it.split == split]
        if split == "val" and not chosen:
            chosen = [it for it in mv if it.split == "test"]
        if not chosen:
            raise DataError(path, f"MVTec layout without a {split} part")
        return chosen
    items = []
    for img in input_images(path):
        parent = img.parent
        label = None if parent == path else (not _is_normal_label(parent.name))
        items.append(DatasetItem(path=str(img), label=parent.name if parent != path else "", is_anomalous=label))
    return items


def _unique_names(paths: Sequence[str]) -> list[str]:
    """Output stems: the file stem, prefixed with its folder when two inputs share a stem."""
    stems = [Path(p).stem for p in paths]
    dup = {s for s in stems if stems.count(s) > 1}
    return [f"{Path(p).parent.name}_{s}" if s in dup else s for p, s in zip(paths, stems)]


class AnomalyDetector:
    """Train, save, load and apply an image anomaly detector (any registered image engine)."""

    def __init__(self, method: str = "patchcore", device: str = "auto", min_area: float = 0.0,
                 val_fraction: float = 0.2, seed: int = 0, **params: Any) -> None:
        engine_cls = get_engine(method)
        if engine_cls.task != Task.IMAGE:
            raise ValueError(f"{method} is a {engine_cls.task.value} engine; AnomalyDetector takes image engines")
        self.engine: Engine = engine_cls(device=device, **params)
        self.min_area = float(min_area)
        self.val_fraction = float(val_fraction)
        self.seed = int(seed)

    # -- state stored with the model -------------------------------------------------------------------
    @property
    def threshold(self) -> float | None:
        t = self.engine.stats.get("threshold")
        return None if t is None else float(t)

    @property
    def method(self) -> str:
        return self.engine.name

    def set_threshold(self, threshold: float | None = None, min_area: float | None = None) -> None:
        """Override the decision setting (kept in the model file on the next save)."""
        if min_area is not None:
            self.min_area = float(min_area)
            self.engine.stats["min_area"] = self.min_area
        if threshold is not None:
            self.engine.stats["threshold"] = float(threshold)
            self.engine.stats["threshold_method"] = "user"

    # -- training ----------------------------------------------------------------------------------------
    def train(self, train_dir: Source, val_dir: Source | None = None, ctx: RunContext | None = None) -> dict[str, Any]:
        """Fit on normal images and choose the threshold on validation images; returns a summary."""
        from anomaly_gui.core.splits import train_val_split

        ctx = ctx or RunContext()
        items = [it for it in resolve_items(train_dir, "train") if it.is_anomalous is not True]
        if not items:
            raise DataError(Path(str(train_dir)), "no normal training images")
        if val_dir is not None:
            train, val = items, resolve_items(val_dir, "val")
        else:
            train, val = train_val_split(items, self.val_fraction, self.seed)
        t0 = time.perf_counter()
        self.engine.fit(train, ctx)
        fit_s = time.perf_counter() - t0
        calib, source = (val, "validation") if val else (train, "training (no validation images left)")
        results = self.engine.score(calib, ctx)
        ok = [(it, r) for it, r in zip(calib, results) if r.map is not None]
        if not ok:
            raise DataError(Path(str(val_dir or train_dir)), "no readable validation image")
        maps = [r.map for _, r in ok]
        sizes = [tuple(r.image_size or (r.map.shape[1], r.map.shape[0])) for _, r in ok]
        labels = [it.is_anomalous if val_dir is not None else False for it, _ in ok]
        choice = pick_threshold(maps, labels, self.min_area, sizes)
        rng = pp.global_range(maps, 0.0, 0.999)
        self.engine.stats.update({
            "threshold": choice.threshold, "min_area": self.min_area, "threshold_method": choice.method,
            "threshold_source": source, "threshold_f1": choice.f1, "display_range": rng.to_dict(),
            "n_val": len(ok), "fit_seconds": round(fit_s, 3),
            "val_score_mean": float(np.mean([r.score for _, r in ok])),
        })
        return {"n_train": len(train), "n_val": len(ok), "fit_seconds": fit_s, **choice.to_dict()}

    # -- inference ---------------------------------------------------------------------------------------
    def score(self, source: Source, ctx: RunContext | None = None) -> list[tuple[DatasetItem, Any]]:
        """(item, ScoreResult) per image, raw maps included."""
        items = resolve_items(source, "test")
        return list(zip(items, self.engine.score(items, ctx)))

    def predict(self, source: Source, ctx: RunContext | None = None) -> list[ImageResult]:
        """Verdicts without writing files."""
        return self.test(source, None, ctx)

    def test(self, source: Source, output_dir: str | Path | None = None, ctx: RunContext | None = None) -> list[ImageResult]:
        """Score images; with `output_dir`, write `<name>_overlay.png` (anomalies in red) and `<name>_mask.png`."""
        from anomaly_gui.core.imageio import read_image, write_image

        if self.threshold is None:
            raise RuntimeError("no threshold: train the detector (or set_threshold) first")
        thr, area = self.threshold, float(self.engine.stats.get("min_area", self.min_area))
        scored = self.score(source, ctx)
        names = _unique_names([it.path for it, _ in scored])
        out_dir = Path(output_dir) if output_dir is not None else None
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
        results = []
        for (item, r), name in zip(scored, names):
            if r.map is None:
                results.append(ImageResult(item.path, None, None, error=r.error or "not scored"))
                continue
            size = tuple(r.image_size or (r.map.shape[1], r.map.shape[0]))
            post = pp.postprocess(r.map, thr, area, image_size=size)
            res = ImageResult(item.path, r.score, post.anomalous, [g.to_dict() for g in post.regions])
            if out_dir is not None:
                mask = post.mask_at(size)
                image = read_image(item.path)
                res.overlay_path = str(write_image(out_dir / f"{name}_overlay.png", pp.overlay(image, mask)))
                res.mask_path = str(write_image(out_dir / f"{name}_mask.png", pp.mask_image(mask)))
            results.append(res)
        return results

    # -- persistence -------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        self.engine.stats.setdefault("min_area", self.min_area)
        return self.engine.save(path)

    @classmethod
    def load(cls, path: str | Path, device: str = "auto") -> "AnomalyDetector":
        """Load a model file; ModelFileError (naming the file) when it is damaged or not ours."""
        engine = Engine.load(path, device=device)
        if engine.task != Task.IMAGE:
            raise ValueError(f"{path}: a {engine.task.value} model, not an image anomaly detector")
        det = cls.__new__(cls)
        det.engine = engine
        det.min_area = float(engine.stats.get("min_area", 0.0))
        det.val_fraction = 0.2
        det.seed = 0
        return det

    def __repr__(self) -> str:
        return f"AnomalyDetector(method={self.method!r}, threshold={self.threshold}, min_area={self.min_area})"
