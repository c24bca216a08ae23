"""The project: one SQLite file (WAL) plus a cache folder beside it.

Every write commits at once, so a crash loses nothing. One connection per thread (workers write
scores while the GUI reads). The schema is versioned with `PRAGMA user_version` and migrated on open.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.formats.base import Annotation, DatasetItem

PROJECT_SUFFIX = ".agproj"

# Each entry migrates from version i to i+1. Never edit a released entry: append a new one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE items (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL,
        frame_index INTEGER NOT NULL DEFAULT -1,
        split TEXT NOT NULL DEFAULT '',
        label TEXT NOT NULL DEFAULT '',
        is_anomalous INTEGER,
        kind TEXT NOT NULL DEFAULT 'image',
        grp TEXT NOT NULL DEFAULT '',
        mask_path TEXT,
        width INTEGER,
        height INTEGER,
        source TEXT NOT NULL DEFAULT '',
        meta TEXT NOT NULL DEFAULT '{}',
        UNIQUE(path, frame_index)
    );
    CREATE INDEX items_split ON items(split, label);
    CREATE INDEX items_grp ON items(grp, frame_index);
    CREATE TABLE annotations (
        id INTEGER PRIMARY KEY,
        item_id INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        label TEXT NOT NULL DEFAULT '',
        geometry TEXT NOT NULL,
        score REAL,
        source TEXT NOT NULL DEFAULT 'user',
        status TEXT NOT NULL DEFAULT '',
        run_id INTEGER REFERENCES runs(id) ON DELETE CASCADE,
        created REAL NOT NULL
    );
    CREATE INDEX annotations_item ON annotations(item_id);
    CREATE TABLE verdicts (
        item_id INTEGER PRIMARY KEY REFERENCES items(id) ON DELETE CASCADE,
        verdict TEXT NOT NULL DEFAULT '',
        verified INTEGER NOT NULL DEFAULT 0,
        note TEXT NOT NULL DEFAULT '',
        updated REAL NOT NULL
    );
    CREATE TABLE label_classes (
        name TEXT PRIMARY KEY,
        color TEXT NOT NULL
    );
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        engine TEXT NOT NULL,
        task TEXT NOT NULL,
        params TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL DEFAULT 'created',
        created REAL NOT NULL,
        finished REAL,
        metrics TEXT NOT NULL DEFAULT '{}',
        model_dir TEXT,
        threshold REAL,
        min_area REAL NOT NULL DEFAULT 0,
        log TEXT NOT NULL DEFAULT '[]',
        name TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE scores (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        item_id INTEGER NOT NULL REFERENCES items(id) ON DELETE CASCADE,
        score REAL,
        map_path TEXT,
        extra TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (run_id, item_id)
    );
    CREATE TABLE zones (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        polygon TEXT NOT NULL,
        item_id INTEGER REFERENCES items(id) ON DELETE CASCADE,
        created REAL NOT NULL
    );
    CREATE TABLE settings (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE imports (
        id INTEGER PRIMARY KEY,
        root TEXT NOT NULL,
        format TEXT NOT NULL,
        created REAL NOT NULL,
        n_items INTEGER NOT NULL,
        problems TEXT NOT NULL DEFAULT '[]'
    );
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


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


class Project:
    """An open project file. Thread-safe: each thread gets its own connection."""

    def __init__(self, path: str | Path):
        self.path = Path(path).resolve()
        self.cache_dir = self.path.with_name(self.path.name + "-cache")
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._listeners: list[Any] = []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._migrate()
        except sqlite3.DatabaseError as exc:
            self.close()
            raise DataError(self.path, f"not a valid project file ({exc})") from exc
        except DataError:
            self.close()
            raise

    # -- connection handling -------------------------------------------------------------
    @property
    def db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def close(self) -> None:
        with self._conns_lock:
            for conn in self._conns:
                try:
                    conn.close()
                except sqlite3.ProgrammingError:
                    pass  # made in another thread that is gone
            self._conns.clear()
        self._local = threading.local()

    def __enter__(self) -> "Project":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _tx(self) -> "_Transaction":
        return _Transaction(self.db)

    def _migrate(self) -> None:
        db = self.db
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise DataError(self.path, f"made by a newer anomaly_gui (schema {version} > {SCHEMA_VERSION})")
        if version == 0 and db.execute("SELECT COUNT(*) FROM sqlite_master WHERE type='table'").fetchone()[0]:
            raise DataError(self.path, "an SQLite file of another program, not an anomaly_gui project")
        for i in range(version, SCHEMA_VERSION):
            try:
                db.executescript("BEGIN IMMEDIATE;" + MIGRATIONS[i] + f";PRAGMA user_version={i + 1};COMMIT;")
            except sqlite3.Error:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    @property
    def schema_version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    # -- items -----------------------------------------------------------------------------
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

    # -- annotations -----------------------------------------------------------------------
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

    # -- verdicts ----------------------------------------------------------------------------
    def set_verdict(self, item_id: int, verdict: str | None = None, verified: bool | None = None, note: str | None = None) -> None:
        if verdict not in (None, "", *VERDICTS):
            raise ValueError(f"verdict must be one of {VERDICTS}")
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO verdicts(item_id, updated) VALUES (?,?)", (int(item_id), time.time()))
            if verdict is not None:
                db.execute("UPDATE verdicts SET verdict=?, updated=? WHERE item_id=?", (verdict, time.time(), int(item_id)))
            if verified is not None:
                db.execute("UPDATE verdicts SET verified=?, updated=? WHERE item_id=?", (int(verified), time.time(), int(item_id)))
            if note is not None:
                db.execute("UPDATE verdicts SET note=?, updated=? WHERE item_id=?", (note, time.time(), int(item_id)))
        self._notify("verdicts")

    def verdict(self, item_id: int) -> Verdict | None:
        r = self.db.execute("SELECT * FROM verdicts WHERE item_id=?", (int(item_id),)).fetchone()
        return None if r is None else Verdict(int(r["item_id"]), r["verdict"], bool(r["verified"]), r["note"])

    def verdicts(self) -> dict[int, Verdict]:
        return {int(r["item_id"]): Verdict(int(r["item_id"]), r["verdict"], bool(r["verified"]), r["note"]) for r in self.db.execute("SELECT * FROM verdicts")}

    # -- runs and score caches -------------------------------------------------------------
    def create_run(self, engine: str, task: str, params: dict[str, Any], name: str = "") -> Run:
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO runs(engine, task, params, created, name) VALUES (?,?,?,?,?)",
                (engine, task, json.dumps(params), time.time(), name),
            )
            run_id = int(cur.lastrowid)
        self.run_dir(run_id).mkdir(parents=True, exist_ok=True)
        self._notify("runs")
        return self.run(run_id)

    def update_run(self, run_id: int, **fields: Any) -> None:
        allowed = {"status", "finished", "metrics", "model_dir", "threshold", "min_area", "log", "name", "params"}
        bad = set(fields) - allowed
        if bad:
            raise ValueError(f"cannot update {bad}")
        vals = [json.dumps(v) if k in ("metrics", "log", "params") else v for k, v in fields.items()]
        with self._tx() as db:
            db.execute(f"UPDATE runs SET {', '.join(f'{k}=?' for k in fields)} WHERE id=?", (*vals, int(run_id)))
        self._notify("runs")

    def append_run_log(self, run_id: int, entry: dict[str, Any]) -> None:
        """Add one training log entry (epoch, loss, metric ...) to a run."""
        with self._tx() as db:
            r = db.execute("SELECT log FROM runs WHERE id=?", (int(run_id),)).fetchone()
            log = json.loads(r[0]) if r else []
            log.append(entry)
            db.execute("UPDATE runs SET log=? WHERE id=?", (json.dumps(log), int(run_id)))

    def run(self, run_id: int) -> Run:
        r = self.db.execute("SELECT * FROM runs WHERE id=?", (int(run_id),)).fetchone()
        if r is None:
            raise KeyError(f"no run {run_id}")
        return _row_to_run(r)

    def runs(self, task: str | None = None) -> list[Run]:
        sql, args = "SELECT * FROM runs", []
        if task is not None:
            sql, args = sql + " WHERE task=?", [task]
        return [_row_to_run(r) for r in self.db.execute(sql + " ORDER BY id", args)]

    def delete_run(self, run_id: int) -> None:
        import shutil

        with self._tx() as db:
            db.execute("DELETE FROM runs WHERE id=?", (int(run_id),))
        shutil.rmtree(self.run_dir(run_id), ignore_errors=True)
        self._notify("runs")

    def run_dir(self, run_id: int) -> Path:
        return self.cache_dir / "runs" / str(int(run_id))

    def save_scores(
        self,
        run_id: int,
        item_ids: Sequence[int],
        scores: Sequence[float | None],
        maps: Sequence[np.ndarray | None] | None = None,
        extras: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        """Store image scores and raw score maps (float16 .npy in the run's cache folder) in one transaction."""
        maps_dir = self.run_dir(run_id) / "maps"
        rows = []
        for k, item_id in enumerate(item_ids):
            map_rel = None
            if maps is not None and maps[k] is not None:
                maps_dir.mkdir(parents=True, exist_ok=True)
                rel = Path("runs") / str(int(run_id)) / "maps" / f"{int(item_id)}.npy"
                np.save(self.cache_dir / rel, np.asarray(maps[k], dtype=np.float16))
                map_rel = rel.as_posix()
            score = scores[k]
            rows.append((int(run_id), int(item_id), None if score is None else float(score), map_rel,
                         json.dumps(extras[k] if extras is not None else {})))
        with self._tx() as db:
            db.executemany(
                """INSERT INTO scores(run_id, item_id, score, map_path, extra) VALUES (?,?,?,?,?)
                   ON CONFLICT(run_id, item_id) DO UPDATE SET score=excluded.score,
                   map_path=COALESCE(excluded.map_path, map_path), extra=excluded.extra""",
                rows,
            )
        self._notify("scores")

    def scores(self, run_id: int) -> dict[int, Score]:
        return {
            int(r["item_id"]): Score(int(r["run_id"]), int(r["item_id"]), r["score"], r["map_path"], json.loads(r["extra"]))
            for r in self.db.execute("SELECT * FROM scores WHERE run_id=?", (int(run_id),))
        }

    def score_map(self, run_id: int, item_id: int) -> np.ndarray | None:
        """The cached raw map of one item as float32, or None."""
        r = self.db.execute("SELECT map_path FROM scores WHERE run_id=? AND item_id=?", (int(run_id), int(item_id))).fetchone()
        if r is None or r[0] is None:
            return None
        path = self.cache_dir / r[0]
        if not path.is_file():
            return None
        return np.load(path, allow_pickle=False).astype(np.float32)

    # -- zones -------------------------------------------------------------------------------
    def add_zone(self, name: str, polygon: Sequence[Sequence[float]], item_id: int | None = None) -> int:
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO zones(name, polygon, item_id, created) VALUES (?,?,?,?)",
                (name, json.dumps([list(map(float, p)) for p in polygon]), item_id, time.time()),
            )
        self._notify("zones")
        return int(cur.lastrowid)

    def update_zone(self, zone_id: int, name: str | None = None, polygon: Sequence[Sequence[float]] | None = None) -> None:
        with self._tx() as db:
            if name is not None:
                db.execute("UPDATE zones SET name=? WHERE id=?", (name, int(zone_id)))
            if polygon is not None:
                db.execute("UPDATE zones SET polygon=? WHERE id=?", (json.dumps([list(map(float, p)) for p in polygon]), int(zone_id)))
        self._notify("zones")

    def delete_zone(self, zone_id: int) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM zones WHERE id=?", (int(zone_id),))
        self._notify("zones")

    def zones(self, item_id: int | None = None) -> list[dict[str, Any]]:
        """Zones that apply to `item_id` (its own and the global ones), or all zones when None."""
        if item_id is None:
            rows = self.db.execute("SELECT * FROM zones ORDER BY id")
        else:
            rows = self.db.execute("SELECT * FROM zones WHERE item_id IS NULL OR item_id=? ORDER BY id", (int(item_id),))
        return [{"id": int(r["id"]), "name": r["name"], "polygon": json.loads(r["polygon"]), "item_id": r["item_id"]} for r in rows]

    # -- settings (per project key/value) --------------------------------------------------
    def set_setting(self, key: str, value: Any) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO settings(key, value) VALUES (?,?) ON CONFLICT(key) DO UPDATE SET value=excluded.value", (key, json.dumps(value)))

    def setting(self, key: str, default: Any = None) -> Any:
        r = self.db.execute("SELECT value FROM settings WHERE key=?", (key,)).fetchone()
        return default if r is None else json.loads(r[0])

    # -- change listeners (the GUI refreshes on these) ------------------------------------
    def add_listener(self, fn: Any) -> None:
        """`fn(topic)` is called after each write; topic is items/annotations/verdicts/runs/scores/zones/labels."""
        self._listeners.append(fn)

    def _notify(self, topic: str) -> None:
        for fn in list(self._listeners):
            fn(topic)


class _Transaction:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")


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


def open_project(path: str | Path) -> Project:
    """Open or create a project; a path without suffix gets `.agproj`."""
    p = Path(path)
    if p.suffix == "":
        p = p.with_suffix(PROJECT_SUFFIX)
    return Project(p)


def iter_chunks(seq: Sequence[Any], n: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]
