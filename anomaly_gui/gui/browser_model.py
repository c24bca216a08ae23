"""Model and delegate of the browser's thumbnail grid (model/view, so 10,000 items stay responsive).

`ItemListModel` keeps light rows (id, name, split, label ...) of every item, the visible subset after
filters (tree node, `state.filter`, name text) in the chosen sort order, and a bounded cache of
thumbnail pixmaps. `data(DecorationRole)` only *requests* a missing thumbnail from the
`ThumbnailLoader`: Qt asks for visible rows only, so nothing off screen is decoded.
`ThumbnailDelegate` paints the thumbnail, the name, a verdict badge (normal / anomalous / unsure),
a verified tick, the run's score and a red corner for ground-truth anomalies.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, QRect, QSize, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPen, QPixmap, QPolygon
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem

from anomaly_gui.core.project import Project, Verdict
from anomaly_gui.gui.thumbnails import THUMB_SIZE, ThumbnailLoader

ItemIdRole = Qt.ItemDataRole.UserRole + 1
VerdictRole = Qt.ItemDataRole.UserRole + 2
VerifiedRole = Qt.ItemDataRole.UserRole + 3
ScoreRole = Qt.ItemDataRole.UserRole + 4
BrokenRole = Qt.ItemDataRole.UserRole + 5
AnomalousRole = Qt.ItemDataRole.UserRole + 6
ScoreTextRole = Qt.ItemDataRole.UserRole + 7  # the score as the badge prints it (decimals fit the run's range)

VERDICT_COLORS = {"normal": "#34c759", "anomalous": "#ff3b30", "unsure": "#ffcc00"}
SORT_KEYS = ("import order", "name", "score (high first)", "score (low first)")
PIXMAP_CACHE = 1500


def decimals_for_span(span: float, significant: int = 3, least: int = 0) -> int:
    """Decimals that show `significant` digits of a value range `span` wide (at most 8).

    One rule for every place that prints scores of a run: the thumbnail badge (3 digits of the run's range,
    so a score of 1e-6 in a run spanning 0..3 reads 0.00, not 1e-06) and the threshold box (5 digits)."""
    if not math.isfinite(span) or span <= 0:
        return max(least, 2)
    return max(least, min(8, significant - 1 - math.floor(math.log10(span))))


@dataclass(slots=True)
class Row:
    id: int
    name: str
    path: str
    frame_index: int | None
    kind: str
    split: str
    label: str
    is_anomalous: bool | None


def load_rows(project: Project) -> list[Row]:
    """Light rows of every item (one query on plain tuples, no annotations: ~10 ms per 10,000 items)."""
    rows = []
    for item_id, path, frame, kind, split, label, anom, grp in project.item_rows():
        name = path[max(path.rfind("/"), path.rfind("\\")) + 1:]
        if kind == "frame" and grp:
            name = f"{grp}/{name}"
        elif kind == "video" and frame is not None:
            name = f"{name}#{frame}"
        elif label:
            name = f"{label}/{name}"  # MVTec-style names (000.png) repeat across classes
        rows.append(Row(item_id, name, path, frame, kind, split, label, anom))
    return rows


class ItemListModel(QAbstractListModel):
    """Rows of the thumbnail grid."""

    def __init__(self, loader: ThumbnailLoader | None = None, parent: Any = None):
        super().__init__(parent)
        self.loader = loader
        self.all_rows: list[Row] = []
        self.rows: list[Row] = []
        self._row_of: dict[int, int] = {}
        self._pixmaps: OrderedDict[int, QPixmap] = OrderedDict()
        self._broken: set[int] = set()
        self.verdicts: dict[int, Verdict] = {}
        self.scores: dict[int, float | None] = {}
        self.score_decimals = 3  # decimals of the badge: fit to the range of the scores shown (set_scores)
        self.group: tuple[str | None, str | None] = (None, None)  # (split, label) of the tree node
        self.state_filter: set[int] | None = None
        self.text = ""
        self.sort_key = SORT_KEYS[0]
        if loader is not None:
            loader.ready.connect(self._on_thumbnail)

    # -- content ---------------------------------------------------------------------------------
    def set_loader(self, loader: ThumbnailLoader | None) -> None:
        if self.loader is not None:
            self.loader.ready.disconnect(self._on_thumbnail)
        self.loader = loader
        self._pixmaps.clear()
        self._broken.clear()
        if loader is not None:
            loader.ready.connect(self._on_thumbnail)

    def set_rows(self, rows: list[Row]) -> None:
        self.all_rows = rows
        ids = {r.id for r in rows}
        for key in [k for k in self._pixmaps if k not in ids]:
            del self._pixmaps[key]
        self._broken &= ids
        self.refilter()

    def set_verdicts(self, verdicts: dict[int, Verdict]) -> None:
        self.verdicts = verdicts
        self._all_changed()

    def set_scores(self, scores: dict[int, float | None]) -> None:
        self.scores = scores
        finite = [float(v) for v in scores.values() if v is not None and math.isfinite(v)]
        self.score_decimals = decimals_for_span(max(finite) - min(finite) if finite else 0.0)
        if self.sort_key.startswith("score"):
            self.refilter()
        else:
            self._all_changed()

    def set_group(self, split: str | None, label: str | None) -> None:
        self.group = (split, label)
        self.refilter()

    def set_state_filter(self, ids: set[int] | None) -> None:
        self.state_filter = ids
        self.refilter()

    def set_text(self, text: str) -> None:
        self.text = text.strip().lower()
        self.refilter()

    def set_sort(self, key: str) -> None:
        if key not in SORT_KEYS:
            raise ValueError(f"unknown sort key {key!r}")
        self.sort_key = key
        self.refilter()

    def refilter(self) -> None:
        split, label = self.group
        keep: Callable[[Row], bool] = lambda r: (
            (split is None or r.split == split)
            and (label is None or r.label == label)
            and (self.state_filter is None or r.id in self.state_filter)
            and (not self.text or self.text in r.name.lower())
        )
        rows = [r for r in self.all_rows if keep(r)]
        if self.sort_key == "name":
            rows.sort(key=lambda r: r.name.lower())
        elif self.sort_key.startswith("score"):
            high_first = "high" in self.sort_key
            scored = [r for r in rows if self.scores.get(r.id) is not None]
            unscored = [r for r in rows if self.scores.get(r.id) is None]
            scored.sort(key=lambda r: float(self.scores[r.id] or 0.0), reverse=high_first)
            rows = scored + unscored
        self.beginResetModel()
        self.rows = rows
        self._row_of = {r.id: i for i, r in enumerate(rows)}
        self.endResetModel()

    def _all_changed(self) -> None:
        if self.rows:
            self.dataChanged.emit(self.index(0), self.index(len(self.rows) - 1))

    # -- lookups ----------------------------------------------------------------------------------
    def row_of(self, item_id: int) -> int | None:
        return self._row_of.get(item_id)

    def item_id(self, row: int) -> int:
        return self.rows[row].id

    def visible_ids(self) -> list[int]:
        return [r.id for r in self.rows]

    def has_thumbnail(self, item_id: int) -> bool:
        return item_id in self._pixmaps

    # -- Qt model API ----------------------------------------------------------------------------------
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or index.row() >= len(self.rows):
            return None
        r = self.rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return r.name
        if role == Qt.ItemDataRole.DecorationRole:
            pix = self._pixmaps.get(r.id)
            if pix is not None:
                self._pixmaps.move_to_end(r.id)
                return pix
            if r.id not in self._broken and self.loader is not None:
                self.loader.request(r.id, r.path, r.frame_index, r.kind)
            return None
        if role == ItemIdRole:
            return r.id
        if role == VerdictRole:
            v = self.verdicts.get(r.id)
            return v.verdict if v else ""
        if role == VerifiedRole:
            v = self.verdicts.get(r.id)
            return bool(v and v.verified)
        if role == ScoreRole:
            return self.scores.get(r.id)
        if role == ScoreTextRole:
            s = self.scores.get(r.id)
            return None if s is None else f"{s:.{self.score_decimals}f}"
        if role == BrokenRole:
            return r.id in self._broken
        if role == AnomalousRole:
            return r.is_anomalous
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(r)
        return None

    def _tooltip(self, r: Row) -> str:
        lines = [r.name, r.path]
        where = " / ".join(p for p in (r.split, r.label) if p)
        if where:
            lines.append(where)
        if r.is_anomalous is not None:
            lines.append("ground truth: " + ("anomalous" if r.is_anomalous else "normal"))
        v = self.verdicts.get(r.id)
        if v and v.verdict:
            lines.append(f"verdict: {v.verdict}" + (" (verified)" if v.verified else ""))
        s = self.scores.get(r.id)
        if s is not None:
            lines.append(f"score: {s:.4g}")
        if r.id in self._broken and self.loader is not None and r.id in self.loader.errors:
            lines.append(self.loader.errors[r.id])
        return "\n".join(lines)

    def _on_thumbnail(self, key: int, img: QImage | None) -> None:
        if img is None:
            self._broken.add(key)
        else:
            self._pixmaps[key] = QPixmap.fromImage(img)
            while len(self._pixmaps) > PIXMAP_CACHE:
                self._pixmaps.popitem(last=False)
        row = self._row_of.get(key)
        if row is not None:
            idx = self.index(row)
            self.dataChanged.emit(idx, idx)


class ThumbnailDelegate(QStyledItemDelegate):
    """Paints one grid cell: thumbnail, name, badges."""

    def __init__(self, thumb: int = THUMB_SIZE, parent: Any = None):
        super().__init__(parent)
        self.thumb = thumb

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:
        return QSize(self.thumb + 12, self.thumb + 30)

    def paint(self, p: QPainter, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> None:
        p.save()
        rect: QRect = option.rect
        pal = option.palette
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        if selected:
            p.fillRect(rect.adjusted(1, 1, -1, -1), pal.highlight())
        elif option.state & QStyle.StateFlag.State_MouseOver:
            p.fillRect(rect.adjusted(1, 1, -1, -1), pal.alternateBase())
        box = QRect(rect.x() + 6, rect.y() + 6, self.thumb, self.thumb)
        pix = index.data(Qt.ItemDataRole.DecorationRole)
        if isinstance(pix, QPixmap) and not pix.isNull():
            x = box.x() + (box.width() - pix.width()) // 2
            y = box.y() + (box.height() - pix.height()) // 2
            p.drawPixmap(x, y, pix)
        else:
            p.fillRect(box, QColor("#2b2b30"))
            if index.data(BrokenRole):
                p.setPen(QPen(QColor("#ff453a"), 2))
                p.drawLine(box.topLeft() + _pt(30, 30), box.bottomRight() - _pt(30, 30))
                p.drawLine(box.topRight() + _pt(-30, 30), box.bottomLeft() + _pt(30, -30))
                p.drawText(box.adjusted(0, 0, 0, -8), Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignBottom, "unreadable")
        if index.data(AnomalousRole):
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(QColor("#ff3b30"))
            tr = box.topLeft()
            p.drawPolygon(QPolygon([tr, tr + _pt(16, 0), tr + _pt(0, 16)]))
        verdict = index.data(VerdictRole)
        if verdict in VERDICT_COLORS:
            p.setPen(QPen(QColor("#111111"), 1))
            p.setBrush(QColor(VERDICT_COLORS[verdict]))
            p.drawEllipse(QRect(box.right() - 16, box.y() + 4, 12, 12))
        if index.data(VerifiedRole):
            p.setPen(QPen(QColor("#34c759"), 2.5))
            x0, y0 = box.right() - 34, box.y() + 10
            p.drawLine(x0, y0, x0 + 4, y0 + 4)
            p.drawLine(x0 + 4, y0 + 4, x0 + 11, y0 - 4)
        text = index.data(ScoreTextRole)
        if text is not None:
            font = QFont(option.font)
            font.setPointSizeF(max(7.0, font.pointSizeF() - 1))
            p.setFont(font)
            tw = p.fontMetrics().horizontalAdvance(text) + 8
            badge = QRect(box.x() + 2, box.bottom() - 17, tw, 15)
            p.fillRect(badge, QColor(0, 0, 0, 170))
            p.setPen(QColor("#ffffff"))
            p.drawText(badge, Qt.AlignmentFlag.AlignCenter, text)
            p.setFont(option.font)
        name = str(index.data(Qt.ItemDataRole.DisplayRole) or "")
        text_rect = QRect(rect.x() + 3, box.bottom() + 4, rect.width() - 6, 18)
        p.setPen(pal.highlightedText().color() if selected else pal.text().color())
        elided = p.fontMetrics().elidedText(name, Qt.TextElideMode.ElideMiddle, text_rect.width())
        p.drawText(text_rect, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter, elided)
        p.restore()


def _pt(x: int, y: int) -> Any:
    from PySide6.QtCore import QPoint

    return QPoint(x, y)
