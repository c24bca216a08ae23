"""Annotations of items (imported, drawn, or a run model's boxes) and the label classes."""
from __future__ import annotations

import json
import sqlite3
import time
from typing import Any, Iterable, Sequence

from anomaly_gui.core.formats.base import Annotation
from anomaly_gui.core.project.records import _row_to_annotation
from anomaly_gui.core.project.store import ProjectStore


class AnnotationStore(ProjectStore):
    """Annotations of items (imported, drawn, or a run model's boxes) and the label classes."""

    @staticmethod
    def _insert_annotation(db: sqlite3.Connection, item_id: int, ann: Annotation, run_id: int | None = None) -> int:
        cur = db.execute(
            """INSERT INTO annotations(item_id, kind, label, geometry, score, source, status, run_id, created)
               VALUES (?,?,?,?,?,?,?,?,?)""",
            (int(item_id), ann.kind, ann.label, json.dumps(ann.geometry), ann.score, ann.source, ann.status,
             run_id, time.time()),
        )
        return int(cur.lastrowid)

    def add_annotation(self, item_id: int, ann: Annotation, run_id: int | None = None) -> int:
        with self._tx() as db:
            ann.id = self._insert_annotation(db, item_id, ann, run_id)
        self._notify("annotations")
        return ann.id

    def add_annotations(self, item_id: int, anns: Iterable[Annotation], run_id: int | None = None) -> list[int]:
        with self._tx() as db:
            ids = [self._insert_annotation(db, item_id, a, run_id) for a in anns]
        self._notify("annotations")
        return ids

    def replace_model_annotations(self, item_id: int, run_id: int, anns: Iterable[Annotation]) -> list[int]:
        """Replace the boxes a run's model put on an item (a re-scored item does not keep its old boxes)."""
        anns = list(anns)
        for ann in anns:
            ann.source = "model"
        with self._tx() as db:
            db.execute("DELETE FROM annotations WHERE item_id=? AND source='model' AND run_id=?", (int(item_id), int(run_id)))
            ids = [self._insert_annotation(db, int(item_id), a, run_id) for a in anns]
        self._notify("annotations")
        return ids

    def update_annotation(self, ann_id: int, **fields: Any) -> None:
        """Update label, geometry, status, score or kind of one annotation."""
        allowed = {"label", "geometry", "status", "score", "kind", "source"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"cannot update {bad}")
        sets = ", ".join(f"{k}=?" for k in fields)
        vals = [json.dumps(v) if k == "geometry" else v for k, v in fields.items()]
        with self._tx() as db:
            db.execute(f"UPDATE annotations SET {sets} WHERE id=?", (*vals, int(ann_id)))
        self._notify("annotations")

    def delete_annotation(self, ann_id: int) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM annotations WHERE id=?", (int(ann_id),))
        self._notify("annotations")

    def annotations(self, item_id: int, source: str | None = None, run_id: int | None = None) -> list[Annotation]:
        sql, args = "SELECT * FROM annotations WHERE item_id=?", [int(item_id)]
        if source is not None:
            sql, args = sql + " AND source=?", args + [source]
        if run_id is not None:
            sql, args = sql + " AND run_id=?", args + [int(run_id)]
        return [_row_to_annotation(r) for r in self.db.execute(sql + " ORDER BY id", args)]

    def annotation_item(self, ann_id: int) -> int | None:
        """The item an annotation belongs to (None when it is gone)."""
        r = self.db.execute("SELECT item_id FROM annotations WHERE id=?", (int(ann_id),)).fetchone()
        return None if r is None else int(r[0])

    def has_annotations(self, kind: str | None = None, labelled: bool = False, include_model: bool = False) -> bool:
        """Whether any annotation exists (of `kind`, with a label, other than a model's boxes by default)."""
        conds, args = [], []
        if kind is not None:
            conds.append("kind=?")
            args.append(kind)
        if labelled:
            conds.append("label!=''")
        if not include_model:
            conds.append("source!='model'")
        sql = "SELECT 1 FROM annotations" + (" WHERE " + " AND ".join(conds) if conds else "") + " LIMIT 1"
        return self.db.execute(sql, args).fetchone() is not None

    def annotations_by_item(self, item_ids: Sequence[int] | None = None, run_id: int | None = None) -> dict[int, list[Annotation]]:
        sql, args = "SELECT * FROM annotations", []
        conds = []
        if item_ids is not None:
            conds.append(f"item_id IN ({','.join('?' * len(item_ids))})")
            args.extend(int(i) for i in item_ids)
        if run_id is not None:
            conds.append("run_id=?")
            args.append(int(run_id))
        if conds:
            sql += " WHERE " + " AND ".join(conds)
        out: dict[int, list[Annotation]] = {}
        for r in self.db.execute(sql + " ORDER BY id", args):
            out.setdefault(int(r["item_id"]), []).append(_row_to_annotation(r))
        return out

    # -- label classes ---------------------------------------------------------------------
    def set_label_class(self, name: str, color: str) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO label_classes(name, color) VALUES (?,?) ON CONFLICT(name) DO UPDATE SET color=excluded.color", (name, color))
        self._notify("labels")

    def label_classes(self) -> dict[str, str]:
        return {r[0]: r[1] for r in self.db.execute("SELECT name, color FROM label_classes ORDER BY name")}

    def rename_label_class(self, old: str, new: str) -> list[int]:
        """Rename a class and relabel its annotations (one transaction); returns the items touched."""
        if not new:
            raise ValueError("a label class needs a name")
        with self._tx() as db:
            color = db.execute("SELECT color FROM label_classes WHERE name=?", (old,)).fetchone()
            items = [int(r[0]) for r in db.execute("SELECT DISTINCT item_id FROM annotations WHERE label=?", (old,))]
            if color is not None:
                db.execute("DELETE FROM label_classes WHERE name=?", (old,))
                db.execute("INSERT INTO label_classes(name, color) VALUES (?,?) ON CONFLICT(name) DO NOTHING", (new, color[0]))
            db.execute("UPDATE annotations SET label=? WHERE label=?", (new, old))
        self._notify("labels")
        self._notify("annotations")
        return items

    def delete_label_class(self, name: str) -> None:
        """Remove a class from the list (its annotations keep their label text)."""
        with self._tx() as db:
            db.execute("DELETE FROM label_classes WHERE name=?", (name,))
        self._notify("labels")
