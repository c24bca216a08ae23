"""The dataset browser: a tree by split / class with counts and a lazy thumbnail grid.

Contract:
- `DatasetBrowser(state)`; the main window docks it on the left as `window.browser`.
- Clicking a thumbnail calls `state.set_current_item(id)`; a multi-selection calls `state.set_selection(ids)`.
- It follows `state.currentItemChanged` (selects and scrolls to the item), `state.selectionChanged`,
  `state.filter` (`filterChanged`: only those ids are shown), `itemsChanged` (reload), `verdictsChanged`
  (badges), `currentRunChanged` / `scoresChanged` (score badges and sort by score).
- `move(+1 / -1)` goes to the next / previous visible item (the window binds it to D / A).
- Thumbnails come from `gui.thumbnails.ThumbnailLoader` (worker threads, disk cache in the project's cache
  folder); the grid is a QListView in IconMode with uniform item sizes over `browser_model.ItemListModel`.
"""
from __future__ import annotations

from PySide6.QtCore import QItemSelectionModel, QModelIndex, QSize, Qt
from PySide6.QtWidgets import (
    QAbstractItemView, QComboBox, QHBoxLayout, QLabel, QLineEdit, QListView, QSplitter, QTreeWidget,
    QTreeWidgetItem, QVBoxLayout, QWidget,
)

from anomaly_gui.gui.browser_model import SORT_KEYS, ItemListModel, ThumbnailDelegate, load_rows
from anomaly_gui.gui.state import AppState
from anomaly_gui.gui.thumbnails import THUMB_SIZE, ThumbnailLoader

_GROUP_ROLE = Qt.ItemDataRole.UserRole + 10


class DatasetBrowser(QWidget):
    """Tree of splits / classes above a thumbnail grid."""

    def __init__(self, state: AppState, parent: QWidget | None = None, thumb_size: int = THUMB_SIZE):
        super().__init__(parent)
        self.state = state
        self.thumb_size = thumb_size
        self.loader: ThumbnailLoader | None = None
        self._syncing = False

        self.search = QLineEdit()
        self.search.setPlaceholderText("Filter by name…")
        self.search.setClearButtonEnabled(True)
        self.sort = QComboBox()
        self.sort.addItems(list(SORT_KEYS))
        self.sort.setToolTip("Sort the grid (score: the current run's image score)")
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.search, 1)
        top.addWidget(self.sort)

        self.tree = QTreeWidget()
        self.tree.setHeaderHidden(True)
        self.tree.setColumnCount(1)
        self.tree.setUniformRowHeights(True)

        self.model = ItemListModel(None, self)
        self.grid = QListView()
        self.grid.setObjectName("thumbnailGrid")
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        self.grid.setUniformItemSizes(True)
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setMovement(QListView.Movement.Static)
        self.grid.setDragEnabled(False)  # a press-drag extends the selection; files dropped go to the window
        self.grid.setAcceptDrops(False)
        self.grid.setLayoutMode(QListView.LayoutMode.Batched)
        self.grid.setBatchSize(500)
        self.grid.setSpacing(2)
        self.grid.setWrapping(True)
        self.grid.setMouseTracking(True)
        self.grid.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.grid.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.grid.verticalScrollBar().setSingleStep(24)
        self.delegate = ThumbnailDelegate(thumb_size, self.grid)
        self.grid.setItemDelegate(self.delegate)
        self.grid.setGridSize(QSize(thumb_size + 14, thumb_size + 32))
        self.grid.setModel(self.model)
        self.empty_label = QLabel("No items. Import a dataset folder (File ▸ Import) or drop one here.")
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setWordWrap(True)
        self.empty_label.setStyleSheet("color: #9a9aa0; padding: 16px;")
        self.count_label = QLabel("")
        self.count_label.setStyleSheet("color: #9a9aa0;")

        grid_box = QWidget()
        gl = QVBoxLayout(grid_box)
        gl.setContentsMargins(0, 0, 0, 0)
        gl.addWidget(self.grid, 1)
        gl.addWidget(self.empty_label, 1)
        gl.addWidget(self.count_label)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.addWidget(self.tree)
        self.splitter.addWidget(grid_box)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 4)
        self.splitter.setSizes([190, 600])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(self.splitter, 1)

        self.search.textChanged.connect(self._on_text)
        self.sort.currentTextChanged.connect(self._on_sort)
        self.tree.currentItemChanged.connect(self._on_tree)
        self.grid.selectionModel().currentChanged.connect(self._on_current)
        self.grid.selectionModel().selectionChanged.connect(self._on_selection)
        self.grid.verticalScrollBar().valueChanged.connect(self._on_scrolled)
        state.projectChanged.connect(self._on_project)
        state.itemsChanged.connect(self.reload)
        state.currentItemChanged.connect(self._on_state_current)
        state.selectionChanged.connect(self._on_state_selection)
        state.filterChanged.connect(self._on_state_filter)
        state.verdictsChanged.connect(self._reload_verdicts)
        state.currentRunChanged.connect(lambda _r: self._reload_scores())
        state.scoresChanged.connect(lambda _r: self._reload_scores())
        self._on_project(state.project)

    # -- project / data -----------------------------------------------------------------------------
    def _on_project(self, project: object) -> None:
        if self.loader is not None:
            self.loader.shutdown(2000)
            self.loader.deleteLater()
            self.loader = None
        if self.state.project is not None:
            self.loader = ThumbnailLoader(self.state.project.cache_dir, self.thumb_size, threads=2, parent=self)
        self.model.set_loader(self.loader)
        self.reload()

    def reload(self) -> None:
        """Re-read items, the tree counts, verdicts and scores from the project."""
        project = self.state.project
        rows = load_rows(project) if project is not None else []
        self.model.verdicts = project.verdicts() if project is not None else {}
        self.model.scores = self._scores()
        self._syncing = True
        try:
            self.model.state_filter = self.state.filter
            self.model.set_rows(rows)
            self._rebuild_tree()
            self._select_id(self.state.current_item, scroll=True)
        finally:
            self._syncing = False
        self._update_counts()

    def _scores(self) -> dict[int, float | None]:
        project, run = self.state.project, self.state.current_run
        if project is None or run is None:
            return {}
        return {k: v.score for k, v in project.scores(run).items()}

    def _reload_verdicts(self) -> None:
        if self.state.project is not None:
            self.model.set_verdicts(self.state.project.verdicts())

    def _reload_scores(self) -> None:
        self._syncing = True
        try:
            self.model.set_scores(self._scores())
            self._select_id(self.state.current_item, scroll=False)
        finally:
            self._syncing = False

    def _rebuild_tree(self) -> None:
        project = self.state.project
        keep = self.model.group
        self.tree.blockSignals(True)
        self.tree.clear()
        total = len(self.model.all_rows)
        root = QTreeWidgetItem([f"All items ({total})"])
        root.setData(0, _GROUP_ROLE, (None, None))
        self.tree.addTopLevelItem(root)
        current = root
        if project is not None:
            for split, labels in project.splits().items():
                node = QTreeWidgetItem([f"{split or '(no split)'} ({sum(labels.values())})"])
                node.setData(0, _GROUP_ROLE, (split, None))
                root.addChild(node)
                if keep == (split, None):
                    current = node
                for label, n in labels.items():
                    leaf = QTreeWidgetItem([f"{label or '(no class)'} ({n})"])
                    leaf.setData(0, _GROUP_ROLE, (split, label))
                    node.addChild(leaf)
                    if keep == (split, label):
                        current = leaf
        self.tree.expandAll()
        self.tree.setCurrentItem(current)
        self.tree.blockSignals(False)
        group = current.data(0, _GROUP_ROLE)
        if tuple(group) != tuple(keep):
            self.model.set_group(*group)

    def _update_counts(self) -> None:
        n, total = self.model.rowCount(), len(self.model.all_rows)
        self.count_label.setText(f"{n} of {total} shown" if n != total else f"{total} items")
        empty = total == 0
        self.empty_label.setVisible(empty)
        self.grid.setVisible(not empty)
        if not empty and n == 0:
            self.count_label.setText(f"no item matches (of {total})")

    # -- user actions ------------------------------------------------------------------------------
    def _on_text(self, text: str) -> None:
        self._refilter(lambda: self.model.set_text(text))

    def _on_sort(self, key: str) -> None:
        self._refilter(lambda: self.model.set_sort(key))

    def _on_tree(self, cur: QTreeWidgetItem | None, _prev: QTreeWidgetItem | None) -> None:
        if cur is None:
            return
        split, label = cur.data(0, _GROUP_ROLE)
        self._refilter(lambda: self.model.set_group(split, label))

    def _refilter(self, change: object) -> None:
        self._syncing = True
        try:
            change()  # type: ignore[operator]
            self._select_id(self.state.current_item, scroll=True)
        finally:
            self._syncing = False
        self._update_counts()
        if self.loader is not None:
            self.loader.cancel_pending()

    def _on_current(self, cur: QModelIndex, _prev: QModelIndex) -> None:
        if self._syncing or not cur.isValid():
            return
        self.state.set_current_item(self.model.item_id(cur.row()))

    def _on_selection(self, *_: object) -> None:
        if self._syncing:
            return
        rows = sorted(i.row() for i in self.grid.selectionModel().selectedIndexes())
        ids = [self.model.item_id(r) for r in rows]
        if ids != self.state.selection:
            self.state.set_selection(ids)

    def _on_scrolled(self, _value: int) -> None:
        if self.loader is not None:
            self.loader.cancel_pending()  # what is visible now asks again when painted

    def neighbors(self, item_id: int, before: int = 1, after: int = 2) -> list[int]:
        """Ids around `item_id` in the visible order (next ones first), for prefetching."""
        row = self.model.row_of(item_id)
        if row is None:
            return []
        n = self.model.rowCount()
        rows = [row + k for k in range(1, after + 1)] + [row - k for k in range(1, before + 1)]
        return [self.model.item_id(r) for r in rows if 0 <= r < n]

    def move(self, delta: int) -> int | None:
        """Make the item `delta` steps away in the visible order current; returns its id."""
        n = self.model.rowCount()
        if n == 0:
            return None
        row = self.model.row_of(self.state.current_item) if self.state.current_item is not None else None
        new = 0 if row is None else max(0, min(n - 1, row + delta))
        item_id = self.model.item_id(new)
        self.state.set_current_item(item_id)
        if len(self.state.selection) > 1:
            self.state.set_selection([item_id])
        return item_id

    # -- following the state -------------------------------------------------------------------------
    def _on_state_current(self, item_id: int | None) -> None:
        cur = self.grid.currentIndex()
        if item_id is not None and cur.isValid() and self.model.item_id(cur.row()) == item_id:
            return  # the grid made this change (a ctrl-click keeps its multi-selection)
        self._syncing = True
        try:
            self._select_id(item_id, scroll=True)
        finally:
            self._syncing = False

    def _on_state_selection(self, ids: list[int]) -> None:
        if self._syncing:
            return
        self._syncing = True
        try:
            sm = self.grid.selectionModel()
            if len(ids) <= 1:
                self._select_id(ids[0] if ids else self.state.current_item, scroll=False)
                return
            sm.clearSelection()
            for item_id in ids:
                row = self.model.row_of(item_id)
                if row is not None:
                    sm.select(self.model.index(row), QItemSelectionModel.SelectionFlag.Select)
        finally:
            self._syncing = False

    def _on_state_filter(self, ids: set[int] | None) -> None:
        self._refilter(lambda: self.model.set_state_filter(ids))

    def _select_id(self, item_id: int | None, scroll: bool) -> None:
        sm = self.grid.selectionModel()
        row = self.model.row_of(item_id) if item_id is not None else None
        if row is None:
            sm.clearSelection()
            return
        idx = self.model.index(row)
        sm.setCurrentIndex(idx, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        if scroll:
            self.grid.scrollTo(idx, QAbstractItemView.ScrollHint.EnsureVisible)

    def shutdown(self) -> None:
        """Stop thumbnail workers (window close)."""
        if self.loader is not None:
            self.loader.shutdown(3000)
