"""What the project store hands out: runs, scores, verdicts (items and annotations are the formats'
`DatasetItem` / `Annotation`), and the row converters."""
from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

from anomaly_gui.core.formats.base import Annotation, DatasetItem


@dataclass
class Run:
    id: int
    engine: str
    task: str
    params: dict[str, Any]
    status: str
    created: float
    finished: float | None
    metrics: dict[str, Any]
    model_dir: str | None
    threshold: float | None
    min_area: float
    log: list[dict[str, Any]] = field(default_factory=list)
    name: str = ""

    @property
    def title(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.created))
        return self.name or f"#{self.id} {self.engine} ({when})"


@dataclass
class Score:
    run_id: int
    item_id: int
    score: float | None
    map_path: str | None
    extra: dict[str, Any]


@dataclass
class Verdict:
    item_id: int
    verdict: str  # '' | normal | anomalous | unsure
    verified: bool
    note: str = ""


VERDICTS = ("normal", "anomalous", "unsure")


def _opt_bool(v: bool | None) -> int | None:
    return None if v is None else int(bool(v))


def _row_to_item(r: sqlite3.Row) -> DatasetItem:
    return DatasetItem(
        path=r["path"], split=r["split"], label=r["label"],
        is_anomalous=None if r["is_anomalous"] is None else bool(r["is_anomalous"]),
        kind=r["kind"], group=r["grp"], frame_index=None if r["frame_index"] < 0 else int(r["frame_index"]),
        mask_path=r["mask_path"], meta=json.loads(r["meta"]), width=r["width"], height=r["height"], id=int(r["id"]),
    )


def _row_to_annotation(r: sqlite3.Row) -> Annotation:
    return Annotation(kind=r["kind"], label=r["label"], geometry=json.loads(r["geometry"]), score=r["score"],
                      source=r["source"], status=r["status"], id=int(r["id"]))


def _row_to_run(r: sqlite3.Row) -> Run:
    return Run(
        id=int(r["id"]), engine=r["engine"], task=r["task"], params=json.loads(r["params"]), status=r["status"],
        created=r["created"], finished=r["finished"], metrics=json.loads(r["metrics"]), model_dir=r["model_dir"],
        threshold=r["threshold"], min_area=r["min_area"], log=json.loads(r["log"]), name=r["name"],
    )
