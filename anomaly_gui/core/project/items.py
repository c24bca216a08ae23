"""Items of the project: add, query, split, size, remove; the import log."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

from anomaly_gui.core.formats.base import DatasetItem
from anomaly_gui.core.project.records import _opt_bool, _row_to_item
from anomaly_gui.core.project.store import ProjectStore


class ItemStore(ProjectStore):
    """Items of the project: add, query, split, size, remove; the import log."""

    def add_items(self, items: Iterable[DatasetItem], source: str = "") -> list[int]:
        """Insert items (an item already there, same path and frame, is updated). Returns their ids."""
        ids: list[int] = []
        with self._tx() as db:
            for it in items:
                fi = -1 if it.frame_index is None else int(it.frame_index)
                row = db.execute(
                    """INSERT INTO items(path, frame_index, split, label, is_anomalous, kind, grp, mask_path,
                                         width, height, source, meta)
                       VALUES (?,?,?,?,?,?,?,?,?,?,?,?)
                       ON CONFLICT(path, frame_index) DO UPDATE SET split=excluded.split, label=excluded.label,
                         is_anomalous=excluded.is_anomalous, kind=excluded.kind, grp=excluded.grp,
                         mask_path=excluded.mask_path, width=COALESCE(excluded.width, width),
                         height=COALESCE(excluded.height, height), meta=excluded.meta
                       RETURNING id""",
                    (
                        str(it.path), fi, it.split, it.label, _opt_bool(it.is_anomalous), it.kind, it.group,
                        it.mask_path, it.width, it.height, source, json.dumps(it.meta),
                    ),
                ).fetchone()
                item_id = int(row[0])
                it.id = item_id
                ids.append(item_id)
                imported = [a for a in it.annotations if a.source == "import"]
                if imported:
                    db.execute("DELETE FROM annotations WHERE item_id=? AND source='import'", (item_id,))
                    for ann in imported:
                        ann.id = self._insert_annotation(db, item_id, ann)
        self._notify("items")
        return ids

    def items(
        self,
        split: str | None = None,
        label: str | None = None,
        kind: str | None = None,
        group: str | None = None,
        ids: Sequence[int] | None = None,
        with_annotations: bool = False,
    ) -> list[DatasetItem]:
        where, args = [], []
        for col, val in (("split", split), ("label", label), ("kind", kind), ("grp", group)):
            if val is not None:
                where.append(f"{col}=?")
                args.append(val)
        if ids is not None:
            where.append(f"id IN ({','.join('?' * len(ids))})")
            args.extend(int(i) for i in ids)
        sql = "SELECT * FROM items" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
        out = [_row_to_item(r) for r in self.db.execute(sql, args)]
        if with_annotations and out:
            anns = self.annotations_by_item([it.id for it in out if it.id is not None])
            for it in out:
                it.annotations = anns.get(int(it.id or 0), [])
        return out

    def item(self, item_id: int) -> DatasetItem:
        row = self.db.execute("SELECT * FROM items WHERE id=?", (int(item_id),)).fetchone()
        if row is None:
            raise KeyError(f"no item {item_id}")
        it = _row_to_item(row)
        it.annotations = self.annotations(item_id)
        return it

    def item_rows(self) -> list[tuple[int, str, int | None, str, str, str, bool | None, str]]:
        """Light rows of every item, (id, path, frame index, kind, split, label, is_anomalous, group): one query
        on plain tuples, no annotations (~10 ms per 10,000 items), for the browser."""
        cur = self.db.cursor()
        cur.row_factory = None
        cur.execute("SELECT id, path, frame_index, kind, split, label, is_anomalous, grp FROM items ORDER BY id")
        return [(int(i), p, None if fi < 0 else int(fi), k, s, lab, None if an is None else bool(an), g)
                for i, p, fi, k, s, lab, an, g in cur]

    def item_kinds(self) -> set[str]:
        """The kinds of item the project holds (image, frame, video)."""
        return {r[0] for r in self.db.execute("SELECT DISTINCT kind FROM items")}

    def has_item_labels(self) -> bool:
        """Some item has a label (a species, a class): species folders give every photo one."""
        return self.db.execute("SELECT 1 FROM items WHERE label!='' LIMIT 1").fetchone() is not None

    def has_normal_training_items(self) -> bool:
        """A normal item of split train exists (or, in a project with no split yet, any normal item)."""
        return self.db.execute(
            "SELECT 1 FROM items WHERE (split='train' OR NOT EXISTS (SELECT 1 FROM items WHERE split "
            "IN ('train', 'val', 'test'))) AND (is_anomalous IS NULL OR is_anomalous=0) LIMIT 1").fetchone() is not None

    def item_ids(self) -> list[int]:
        return [int(r[0]) for r in self.db.execute("SELECT id FROM items ORDER BY id")]

    def count_items(self, **filters: str) -> int:
        where = " AND ".join(f"{('grp' if k == 'group' else k)}=?" for k in filters)
        sql = "SELECT COUNT(*) FROM items" + (f" WHERE {where}" if where else "")
        return int(self.db.execute(sql, list(filters.values())).fetchone()[0])

    def splits(self) -> dict[str, dict[str, int]]:
        """{split: {label: count}} for the browser's tree."""
        out: dict[str, dict[str, int]] = {}
        for r in self.db.execute("SELECT split, label, COUNT(*) FROM items GROUP BY split, label ORDER BY split, label"):
            out.setdefault(r[0], {})[r[1]] = int(r[2])
        return out

    def set_split(self, item_ids: Iterable[int], split: str) -> None:
        with self._tx() as db:
            db.executemany("UPDATE items SET split=? WHERE id=?", [(split, int(i)) for i in item_ids])
        self._notify("items")

    def set_item_size(self, item_id: int, width: int, height: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE items SET width=?, height=? WHERE id=?", (int(width), int(height), int(item_id)))

    def remove_items(self, item_ids: Iterable[int]) -> None:
        with self._tx() as db:
            db.executemany("DELETE FROM items WHERE id=?", [(int(i),) for i in item_ids])
        self._notify("items")

    def record_import(self, root: str | Path, fmt: str, n_items: int, problems: Sequence[str]) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO imports(root, format, created, n_items, problems) VALUES (?,?,?,?,?)",
                (str(root), fmt, time.time(), int(n_items), json.dumps(list(problems))),
            )

    def imports(self) -> list[dict[str, Any]]:
        return [
            {**dict(r), "problems": json.loads(r["problems"])}
            for r in self.db.execute("SELECT * FROM imports ORDER BY id")
        ]
