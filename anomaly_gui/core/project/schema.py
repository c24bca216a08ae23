"""The project file's schema: SQLite tables, versioned with `PRAGMA user_version`, migrated on open."""
from __future__ import annotations

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
