"""The files a run keeps in its folder (`project.run_dir(id)`): model, split, embeddings. Qt-free.

Read by the core (metrics, exports), written by the run pipeline (`anomaly_gui.pipeline`):

- `model.agm`: the fitted engine (safetensors + JSON, never pickled);
- `split.json`: the item ids the run was fitted (`train`) and validated (`val`) on;
- `embeddings/`: an `EmbeddingSet` (embeddings, item ids, scores, labels, crop boxes), what the Cluster view maps.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from anomaly_gui.core.embedding_maps import EmbeddingSet, load_embedding_set, save_embedding_set
from anomaly_gui.core.errors import DataError
from anomaly_gui.core.imageio import write_text

MODEL_FILE = "model.agm"
SPLIT_FILE = "split.json"
EMBEDDINGS_DIR = "embeddings"
_LEGACY_EMBEDDINGS = ("embeddings.npy", "embedding_ids.npy")  # written by runs before the Cluster view's layout


def model_path(project: Any, run_id: int) -> Path:
    return project.run_dir(run_id) / MODEL_FILE


def write_split(project: Any, run_id: int, train_ids: Sequence[int], val_ids: Sequence[int]) -> None:
    write_text(project.run_dir(run_id) / SPLIT_FILE, json.dumps({"train": [int(i) for i in train_ids],
                                                                 "val": [int(i) for i in val_ids]}))


def run_split(project: Any, run_id: int) -> dict[str, list[int]]:
    """{"train": [...], "val": [...]} item ids a run was fitted / validated on."""
    path = project.run_dir(run_id) / SPLIT_FILE
    if not path.is_file():
        return {"train": [], "val": []}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(path, f"damaged run split file ({exc})") from exc
    return {"train": [int(i) for i in data.get("train", [])], "val": [int(i) for i in data.get("val", [])]}


def embeddings_folder(project: Any, run_id: int) -> Path:
    return project.run_dir(run_id) / EMBEDDINGS_DIR


def has_embeddings(project: Any, run_id: int) -> bool:
    rdir = project.run_dir(run_id)
    return (rdir / EMBEDDINGS_DIR / "embeddings.npy").is_file() or (rdir / _LEGACY_EMBEDDINGS[0]).is_file()


def load_run_embeddings(project: Any, run_id: int) -> EmbeddingSet | None:
    """The run's embedding set; None when it stored none."""
    rdir = project.run_dir(run_id)
    if (rdir / EMBEDDINGS_DIR / "embeddings.npy").is_file():
        return load_embedding_set(rdir / EMBEDDINGS_DIR)
    if not (rdir / _LEGACY_EMBEDDINGS[0]).is_file():
        return None
    try:
        emb = np.load(rdir / _LEGACY_EMBEDDINGS[0], allow_pickle=False)
        ids = np.load(rdir / _LEGACY_EMBEDDINGS[1], allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(rdir / _LEGACY_EMBEDDINGS[0], f"damaged embeddings cache ({exc})") from exc
    return EmbeddingSet(item_ids=ids.astype(np.int64), embeddings=emb.astype(np.float32), labels=[""] * len(ids))


def merge_run_embeddings(project: Any, run_id: int, new: EmbeddingSet) -> EmbeddingSet:
    """Store `new` into the run's embedding set (an item scored again replaces its row); returns the set."""
    old = load_run_embeddings(project, run_id)
    rows: dict[int, tuple[np.ndarray, str, float, Any]] = {}
    for es in (old, new):
        if es is None:
            continue
        scores = es.scores if es.scores is not None else np.full(len(es), np.nan, np.float32)
        boxes = es.crop_boxes or [None] * len(es)
        for k, item_id in enumerate(es.item_ids):
            rows[int(item_id)] = (es.embeddings[k], es.labels[k], float(scores[k]), boxes[k])
    keys = sorted(rows)
    merged = EmbeddingSet(
        item_ids=np.asarray(keys, np.int64), embeddings=np.stack([rows[k][0] for k in keys]).astype(np.float32),
        labels=[rows[k][1] for k in keys], scores=np.asarray([rows[k][2] for k in keys], np.float32),
        crop_boxes=[rows[k][3] for k in keys], meta={**(old.meta if old is not None else {}), **new.meta},
    )
    save_embedding_set(embeddings_folder(project, run_id), merged)
    return merged


def load_embeddings(project: Any, run_id: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(item ids, embeddings (n, d)) stored by a run; (empty, None) when it has none."""
    es = load_run_embeddings(project, run_id)
    if es is None:
        return np.zeros(0, np.int64), None
    return es.item_ids, es.embeddings
