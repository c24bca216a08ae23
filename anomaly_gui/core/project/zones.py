"""Restricted zones (polygons), global or of one item."""
from __future__ import annotations

import json
import time
from typing import Any, Sequence

from anomaly_gui.core.project.store import ProjectStore


class ZoneStore(ProjectStore):
    """Restricted zones (polygons), global or of one item."""

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
