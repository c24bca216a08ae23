"""Evaluator for embedding engines: novelty AUROC of held-out species (and held-out images).

Protocol without `--test`: species with at least 2 images are *known* (when every species has that
many, the rarest one is held out as novel); about 30 % of each known species' images are held out as
normal test items by group (a COCO Camera Traps sequence, else a camera location, else the image:
`core.splits.hold_out`, so no burst of one sequence sits on both sides), the rest train the engine; every
image of the other species is a *novel* test item. With `--test OTHER` the engine trains on all of
DATASET and OTHER is scored (refused when a file of OTHER is byte-identical to a training file); its items
of species absent from DATASET are novel. The reported `threshold` is the engine's own (set in fitting
from the training photos); `f1_max_threshold` is an oracle on the test labels, never stored.
Scoring ignores the test labels (the nearest species model decides), so a novel species is found
by its appearance, not by its name. Returns the CLI contract's keys plus per-protocol details.
"""
from __future__ import annotations

import csv
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from anomaly_gui.core.crops import species_from_filename
from anomaly_gui.core.errors import DataError
from anomaly_gui.core.formats.base import DatasetItem, get_format, import_dataset
from anomaly_gui.core.formats.camtrap import species_key
from anomaly_gui.core.imageio import is_image_file
from anomaly_gui.core.metrics import auroc, f1_max
from anomaly_gui.engines.base import RunContext, Stopwatch, Task, get_engine
from anomaly_gui.core.splits import hold_out
from anomaly_gui.evaluation import register_evaluator
from anomaly_gui.evaluation.checks import check_overlap

log = logging.getLogger(__name__)
_FILE_KEYS = ("file", "filename", "filepath", "file_name", "path", "image")
_LABEL_KEYS = ("species", "label", "class", "category")


def load_species_items(path: str | Path, fmt: str | None = None) -> list[DatasetItem]:
    """Labelled items from a dataset folder (camera traps, species sub-folders, COCO Camera Traps) or a
    labels file (CSV with file + species columns, or JSON {file: species} / [{file, species}])."""
    return load_species_dataset(path, fmt)[0]


def load_species_dataset(path: str | Path, fmt: str | None = None) -> tuple[list[DatasetItem], str]:
    """(items, name of the reader used). Species names are normalised (`species_key`: `Cat` == `cat`)
    whichever reader matched; `fmt` asks for a reader (used when it recognises `path`)."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "not found")
    if path.is_file() and path.suffix.lower() in (".csv", ".json"):
        simple = _read_labels_file(path)
        if simple is not None:
            return simple, "labels_file"
    items, reader = [], "species_folders"
    for use in ([fmt] if fmt and fmt in list_formats_names() else []) + [None]:
        try:
            if use is not None and not get_format(use).detect(path):
                continue
            result = import_dataset(path, use)
        except DataError:
            continue
        items, reader = result.items, result.format
        if any(species_key(it.label) for it in items if it.kind == "image"):
            break  # the other side's reader when it gives species here, else the detected one
    if path.is_dir() and (not items or not any(it.label for it in items)):
        items = [DatasetItem(str(p), label=p.parent.name) for p in sorted(path.rglob("*")) if is_image_file(p) and p.parent != path]
        reader = "species_folders"
    items = [it for it in items if it.kind == "image" and species_key(it.label)]
    for it in items:
        it.label = species_key(it.label)
    if not items:
        raise DataError(path, "no labelled images (expected species sub-folders, camera-trap file names or a labels CSV/JSON)")
    return items, reader


def list_formats_names() -> list[str]:
    from anomaly_gui.core.formats.base import list_formats

    return [r.name for r in list_formats()]


def _read_labels_file(path: Path) -> list[DatasetItem] | None:
    """A plain labels file, or None when it is another kind (a COCO JSON or a detector manifest)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read ({exc})") from exc
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(path, f"malformed JSON ({exc})") from exc
        if isinstance(data, dict) and "images" in data:
            return None  # COCO / COCO Camera Traps: the format readers handle it
        rows = [{"file": k, "species": v} for k, v in data.items()] if isinstance(data, dict) else data
    else:
        rows = list(csv.DictReader(text.splitlines()))
        if rows and "bbox_x" in rows[0]:
            return None
    if not isinstance(rows, list):
        raise DataError(path, "expected a list of {file, species} records")
    out: list[DatasetItem] = []
    for k, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DataError(path, f"record {k + 1} is not an object")
        low = {str(a).lower(): b for a, b in row.items()}
        f = next((low[c] for c in _FILE_KEYS if low.get(c)), None)
        if f is None:
            raise DataError(path, f"record {k + 1} names no file (columns: {', '.join(_FILE_KEYS)})")
        lab = next((str(low[c]) for c in _LABEL_KEYS if low.get(c)), "") or species_from_filename(f)
        p = Path(str(f))
        p = p if p.is_absolute() else path.parent / p
        if not p.is_file():
            raise DataError(path, f"record {k + 1}: image {p} not found")
        out.append(DatasetItem(str(p), label=species_key(lab)))
    return out


def split_known_novel(items: list[DatasetItem], holdout: float = 0.3, min_known: int = 2, seed: int = 0
                      ) -> tuple[list[DatasetItem], list[DatasetItem], list[int]]:
    """(train, test, novel flags of test): see the module doc."""
    counts = Counter(it.label for it in items)
    known = {s for s, c in counts.items() if c >= min_known}
    if len(known) == len(counts) >= 2:  # no rare species: the rarest one plays the novel species
        known.discard(min(counts, key=lambda s: (counts[s], s)))
    if len(known) < 1 or len(known) == len(counts):
        raise DataError(Path(items[0].path).parent if items else Path("."),
                        f"need species with >= {min_known} images and at least one rarer species to hold out; counts: {dict(counts)}")
    train: list[DatasetItem] = []
    test: list[DatasetItem] = []
    flags: list[int] = []
    for s in sorted(known):
        kept, held = hold_out([it for it in items if it.label == s], holdout, seed)  # whole sequences / locations
        test += held
        flags += [0] * len(held)
        train += kept
    novel = [it for it in items if it.label not in known]
    return train, test + novel, flags + [1] * len(novel)


@register_evaluator(Task.EMBEDDING)
def evaluate_embedding(dataset: Path, engine: str, test: Path | None = None, device: str = "auto",
                       params: dict[str, Any] | None = None, save_model: Path | None = None,
                       allow_overlap: bool = False) -> dict[str, Any]:
    warnings: list[str] = []
    items, train_reader = load_species_dataset(dataset)
    test_reader = train_reader
    if test is None:
        train, test_items, novel = split_known_novel(items, seed=int((params or {}).get("seed", 0)))
    else:
        train = items
        test_items, test_reader = load_species_dataset(test, fmt=train_reader)  # the same reader when it fits
        known = {it.label for it in train}
        novel = [int(it.label not in known) for it in test_items]
    n_overlap = check_overlap(train, test_items, allow_overlap, warnings, test or dataset)
    engine_cls = get_engine(engine)
    eng = engine_cls(params=dict(params or {}), device=device)
    ctx = RunContext(progress=lambda d, t, m: log.debug("%s %d/%d", m, d, t), log=lambda e: log.info("%s", e))
    watch = Stopwatch()
    eng.fit(train, ctx)
    fit_seconds = watch.seconds
    eng.params.use_labels = False  # the nearest species model decides: labels of test items are not used
    blind = [DatasetItem(it.path, annotations=[_unlabelled(a) for a in it.annotations], width=it.width, height=it.height)
             for it in test_items]
    watch = Stopwatch()
    results = eng.score(blind, ctx)
    score_seconds = watch.seconds
    scores = np.array([np.nan if r.score is None else r.score for r in results], np.float64)
    ok = np.isfinite(scores)
    for it, good in zip(test_items, ok):
        if not good:
            warnings.append(f"{it.path}: not scored (no readable crop); left out of every metric")
    labels = np.array(novel)[ok]
    f1, thr = f1_max(labels, scores[ok]) if labels.size else (None, None)
    normal_rows = [i for i, r in enumerate(results) if not novel[i] and r.score is not None]
    species_acc = (float(np.mean([results[i].extra.get("nearest_species") == test_items[i].label for i in normal_rows]))
                   if normal_rows else None)
    if save_model is not None:
        eng.params.use_labels = True
        eng.save(save_model)
    return {
        "novelty_auroc": auroc(labels, scores[ok]) if labels.size else None,
        "f1_max": f1,
        "f1_max_threshold": thr,
        "threshold": eng.stats.get("threshold"),
        "threshold_source": "the engine's own, set in fitting from the training photos only (one-class SVM "
                            "boundary, or the 95th percentile of leave-one-out same-species distances); no test label used",
        "known_species_accuracy": species_acc,
        "fit_seconds": round(fit_seconds, 3),
        "items_per_second": round(len(test_items) / score_seconds, 3) if score_seconds > 0 else None,
        "n_train": len(train),
        "n_test": len(test_items),
        "n_novel": int(sum(novel)),
        "known_species": sorted({it.label for it in train}),
        "novel_species": sorted({it.label for it, n in zip(test_items, novel) if n}),
        "n_unreadable": int((~ok).sum()),
        "n_measured": int(ok.sum()),
        "n_overlap": n_overlap,
        "warnings": warnings,
        "engine": engine,
        "device": str(eng.device),
        "train_reader": train_reader,
        "test_reader": test_reader,
        "encoder": eng.stats.get("encoder"),
        "pseudo_novelty_auroc": eng.stats.get("pseudo_novelty_auroc"),
        "colour": eng.stats.get("colour"),
        "animal_crop": eng.stats.get("animal_crop"),
        "cam_boxes": eng.stats.get("cam_boxes"),
        "infrared_whole": eng.stats.get("infrared_whole"),
        "scorer": eng.stats.get("scorer"),
        "features": eng.stats.get("features"),
        "selection": eng.stats.get("selection"),
    }


def _unlabelled(a: Any) -> Any:
    from dataclasses import replace

    return replace(a, label="animal")
