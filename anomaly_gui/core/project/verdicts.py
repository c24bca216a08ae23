"""The analyst's verdict per item (normal / anomalous / unsure, verified, note)."""
from __future__ import annotations

import time

from anomaly_gui.core.project.records import VERDICTS, Verdict
from anomaly_gui.core.project.store import ProjectStore


class VerdictStore(ProjectStore):
    """The analyst's verdict per item (normal / anomalous / unsure, verified, note)."""

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
