"""Runs (engine, parameters, status, metrics, log) and their score caches (raw maps as float16 .npy)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from anomaly_gui.core.project.records import Run, Score, _row_to_run
from anomaly_gui.core.project.store import ProjectStore


class RunStore(ProjectStore):
    """Runs (engine, parameters, status, metrics, log) and their score caches (raw maps as float16 .npy)."""

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
