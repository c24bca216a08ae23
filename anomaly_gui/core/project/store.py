"""The project store's base: one SQLite file (WAL) plus a cache folder beside it.

Every write commits at once, so a crash loses nothing. One connection per thread (workers write scores while
the GUI reads). The schema is migrated on open (`schema`). Settings and change listeners live here; each
concern (items, annotations, verdicts, runs, zones) adds its methods in its own module.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from anomaly_gui.core.errors import DataError
from anomaly_gui.core.project import schema


class ProjectStore:
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

    def __enter__(self) -> "ProjectStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _tx(self) -> "_Transaction":
        return _Transaction(self.db)

    def _migrate(self) -> None:
        db = self.db
        version = db.execute("PRAGMA user_version").fetchone()[0]
        migrations = schema.MIGRATIONS
        if version > len(migrations):
            raise DataError(self.path, f"made by a newer anomaly_gui (schema {version} > {len(migrations)})")
        if version == 0 and db.execute("SELECT COUNT(*) FROM sqlite_master WHERE type='table'").fetchone()[0]:
            raise DataError(self.path, "an SQLite file of another program, not an anomaly_gui project")
        for i in range(version, len(migrations)):
            try:
                db.executescript("BEGIN IMMEDIATE;" + migrations[i] + f";PRAGMA user_version={i + 1};COMMIT;")
            except sqlite3.Error:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise

    @property
    def schema_version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the project file (every edit is already committed)."""
        self.db.execute("PRAGMA wal_checkpoint(PASSIVE)")

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
