"""The Labels panel: tools, label classes with colours, the current item's shapes, verdict and verified flag.

Wired into the main window: a "Label" menu (tools, verdicts, next unverified), Edit ▸ Undo / Redo /
Delete shape / Copy labels from previous item, File ▸ Save, Export…, Export report…, and Tools ▸ Retrain
on corrections…. Every edit is a `LabelEditor` command (undoable, written to the project at once).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import shiboken6
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QColor, QIcon, QKeySequence, QPixmap
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QColorDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from anomaly_gui.core.formats.base import Annotation
from anomaly_gui.core.importer import default_color
from anomaly_gui.gui.labeling_tools import TOOLS, LabelCanvas, editable
from anomaly_gui.gui.panels import register_panel
from anomaly_gui.gui.state import AppState
from anomaly_gui.gui.undo import LabelEditor

log = logging.getLogger(__name__)
TOOL_KEYS = {"select": "V", "rectangle": "R", "polygon": "P", "point": "K", "brush": "B", "eraser": "X"}
VERDICT_KEYS = {"normal": "1", "anomalous": "2", "unsure": "3"}
DEFAULT_LABEL = "defect"
TOOL_HINTS = {
    "select": "Select: click a shape, drag it or its handles; Delete removes it",
    "rectangle": "Rectangle '{label}': press, drag, release",
    "polygon": "Polygon '{label}': click the vertices; click the first one, double-click or Enter closes; Esc cancels",
    "point": "Point '{label}': click",
    "brush": "Brush '{label}': drag to paint ([ and ] change the size)",
    "eraser": "Eraser: drag over a mask (only the selected masks when some are selected)",
}


def _swatch(color: str) -> QIcon:
    pm = QPixmap(14, 14)
    pm.fill(QColor(color))
    return QIcon(pm)


@register_panel
class LabelingPanel(QWidget):
    """Labeling tools, label list, shapes of the current item, verdict / verified / note."""

    panel_id = "labeling"
    title = "Labels"
    area = "right"
    order = 30

    def __init__(self, state: AppState, window: Any = None):
        super().__init__()
        self.state = state
        self.window_ = window
        self.editor: LabelEditor | None = None
        self.previous_item: int | None = None
        self._current: int | None = None
        self.viewer = getattr(window, "viewer", None)
        self.canvas = LabelCanvas(self.viewer, lambda: self.editor, self) if self.viewer is not None else None
        self.actions_: dict[str, QAction] = {}
        self._build_ui()
        self._build_actions()
        state.projectChanged.connect(self._on_project)
        state.currentItemChanged.connect(self._on_item)
        state.annotationsChanged.connect(self._on_annotations_changed)
        state.verdictsChanged.connect(lambda: self.refresh_verdict())  # set elsewhere (review panel, browser)
        state.itemsChanged.connect(self.refresh_classes)  # an import brings its classes
        if self.canvas is not None:
            self.canvas.selectionChanged.connect(self._sync_shape_selection)
            self.canvas.toolChanged.connect(self._sync_tool_buttons)
        self._on_project(state.project)

    # -- UI ------------------------------------------------------------------------------------------
    def _build_ui(self) -> None:
        tools = QGroupBox("Tools")
        grid = QGridLayout(tools)
        self.tool_group = QButtonGroup(self)
        self.tool_buttons: dict[str, QToolButton] = {}
        for k, tool in enumerate(TOOLS):
            b = QToolButton()
            b.setText(f"{tool.capitalize()} ({TOOL_KEYS[tool]})")
            b.setCheckable(True)
            b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
            b.setStyleSheet("QToolButton:checked { background: #3d6fd6; color: white; font-weight: bold; }")
            b.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
            b.clicked.connect(lambda _c=False, t=tool: self.set_tool(t))
            self.tool_group.addButton(b)
            self.tool_buttons[tool] = b
            grid.addWidget(b, k // 3, k % 3)
        self.tool_buttons["select"].setChecked(True)
        self.brush_spin = QSpinBox()
        self.brush_spin.setRange(1, 500)
        self.brush_spin.setValue(20)
        self.brush_spin.setSuffix(" px")
        self.brush_spin.setToolTip("Brush and eraser size in image pixels ([ and ] change it)")
        self.brush_spin.valueChanged.connect(self._on_brush_size)
        grid.addWidget(QLabel("Brush size"), 2, 0)
        grid.addWidget(self.brush_spin, 2, 1)

        classes = QGroupBox("Label classes")
        cl = QVBoxLayout(classes)
        self.class_list = QListWidget()
        self.class_list.setMaximumHeight(130)
        self.class_list.currentItemChanged.connect(self._on_class_selected)
        self.class_list.itemDoubleClicked.connect(lambda _i: self.assign_class_to_selection())
        row = QHBoxLayout()
        for text, slot, tip in (("Add…", self.add_class, "New label class"),
                                ("Rename…", self.rename_class, "Rename the class (its shapes follow)"),
                                ("Colour…", self.recolor_class, "Change the class colour"),
                                ("Delete…", self.delete_class, "Remove the class from the list (asks about its shapes)"),
                                ("Apply", self.assign_class_to_selection, "Give the selected shapes this class")):
            b = QPushButton(text)
            b.setToolTip(tip)
            b.clicked.connect(lambda _c=False, s=slot: s())
            row.addWidget(b)
        cl.addWidget(self.class_list)
        cl.addLayout(row)

        shapes = QGroupBox("Shapes on this item")
        sl = QVBoxLayout(shapes)
        self.shape_list = QListWidget()
        self.shape_list.setSelectionMode(QListWidget.SelectionMode.ExtendedSelection)
        self.shape_list.itemSelectionChanged.connect(self._on_shape_list_selection)
        sl.addWidget(self.shape_list)
        srow = QHBoxLayout()
        self.delete_button = QPushButton("Delete (Del)")
        self.delete_button.clicked.connect(self.delete_selected)
        self.copy_button = QPushButton("Copy from previous item")
        self.copy_button.clicked.connect(self.copy_from_previous)
        srow.addWidget(self.delete_button)
        srow.addWidget(self.copy_button)
        sl.addLayout(srow)

        verdict = QGroupBox("Verdict")
        vl = QVBoxLayout(verdict)
        vrow = QHBoxLayout()
        self.verdict_group = QButtonGroup(self)
        self.verdict_group.setExclusive(False)
        self.verdict_buttons: dict[str, QPushButton] = {}
        styles = {"normal": "#2e7d32", "anomalous": "#c62828", "unsure": "#ef6c00"}
        for v in ("normal", "anomalous", "unsure"):
            b = QPushButton(f"{v.capitalize()} ({VERDICT_KEYS[v]})")
            b.setCheckable(True)
            b.setStyleSheet(f"QPushButton:checked {{ background: {styles[v]}; color: white; font-weight: bold; }}")
            b.clicked.connect(lambda checked, vv=v: self.set_verdict(vv if checked else ""))
            self.verdict_group.addButton(b)
            self.verdict_buttons[v] = b
            vrow.addWidget(b)
        vl.addLayout(vrow)
        frow = QHBoxLayout()
        self.verified_box = QCheckBox("Verified (F)")
        self.verified_box.clicked.connect(lambda checked: self.set_verified(bool(checked)))
        self.next_unverified_button = QPushButton("Next unverified (U)")
        self.next_unverified_button.clicked.connect(self.next_unverified)
        frow.addWidget(self.verified_box)
        frow.addStretch(1)
        frow.addWidget(self.next_unverified_button)
        vl.addLayout(frow)
        self.note_edit = QLineEdit()
        self.note_edit.setPlaceholderText("Note for this item (Enter to save)")
        self.note_edit.editingFinished.connect(self._save_note)
        vl.addWidget(self.note_edit)
        self.progress_label = QLabel("")
        self.progress_label.setStyleSheet("color: #777;")
        vl.addWidget(self.progress_label)

        lay = QVBoxLayout(self)
        for box in (tools, classes, shapes, verdict):
            lay.addWidget(box)
        lay.addStretch(0)

    def _build_actions(self) -> None:
        w = self.window_
        spec: list[tuple[str, str, str, str | QKeySequence | None, Callable[[], None]]] = []
        for tool in TOOLS:
            spec.append(("Label", f"label.tool.{tool}", f"{tool.capitalize()} tool", TOOL_KEYS[tool], lambda t=tool: self.set_tool(t)))
        spec += [
            ("Label", "label.brush_bigger", "Bigger brush", "]", lambda: self.brush_spin.setValue(int(self.brush_spin.value() * 1.25) + 1)),
            ("Label", "label.brush_smaller", "Smaller brush", "[", lambda: self.brush_spin.setValue(max(1, int(self.brush_spin.value() / 1.25)))),
        ]
        for v in ("normal", "anomalous", "unsure"):
            spec.append(("Label", f"label.verdict.{v}", f"Mark {v}", VERDICT_KEYS[v], lambda vv=v: self.set_verdict(vv)))
        spec += [
            ("Label", "label.toggle_verified", "Toggle verified", "F", self.toggle_verified),
            ("Label", "label.next_unverified", "Next unverified item", "U", self.next_unverified),
            ("Edit", "edit.undo", "Undo", QKeySequence.StandardKey.Undo, self.undo),
            ("Edit", "edit.redo", "Redo", "Ctrl+Shift+Z", self.redo),
            ("Edit", "edit.delete_shape", "Delete selected shape", QKeySequence.StandardKey.Delete, self.delete_selected),
            ("Edit", "edit.copy_previous", "Copy labels from previous item", "Ctrl+Shift+C", self.copy_from_previous),
            ("Edit", "edit.select_all_shapes", "Select all shapes", "Ctrl+Shift+A", self.select_all_shapes),
        ]
        for menu, name, text, key, slot in spec:
            act = QAction(text, self)
            act.setObjectName(name)
            if key is not None:
                act.setShortcut(QKeySequence(key))
            act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            act.triggered.connect(lambda _c=False, s=slot: s())
            self.actions_[name] = act
            if w is not None and hasattr(w, "menus"):
                target = w.menus[menu] if menu in w.menus else w.menu(menu)
                if menu == "Edit" and name == "edit.undo" and target.actions():
                    target.insertSeparator(target.actions()[0])
                if name in ("label.brush_bigger", "label.verdict.normal", "label.toggle_verified"):
                    target.addSeparator()
                target.addAction(act)
                w.addAction(act)
                getattr(w, "actions_by_name", {})[name] = act
        if w is not None and hasattr(w, "menus"):
            from anomaly_gui.gui.export_dialog import install_export_actions
            from anomaly_gui.gui.shortcuts import install_shortcuts

            install_export_actions(w)
            install_shortcuts(w)

    # -- project and item --------------------------------------------------------------------------
    def _on_project(self, project: Any) -> None:
        if self.editor is not None and shiboken6.isValid(self.editor):
            self.editor.stack.indexChanged.disconnect()
            self.editor.deleteLater()
        self.editor = LabelEditor(project, self) if project is not None else None
        if self.editor is not None:
            self.editor.changed.connect(self._on_edited)
            self.editor.verdictChanged.connect(self._on_verdict_edited)
            self.editor.classesChanged.connect(self.refresh_classes)
            self.editor.stack.indexChanged.connect(lambda _i: self._update_undo_actions())
        self.previous_item = None
        self._current = None
        self.refresh_classes()
        self._update_undo_actions()
        self.refresh_item()

    def _on_item(self, item_id: Any) -> None:
        if self._current is not None and item_id != self._current:
            self.previous_item = self._current
        self._current = item_id
        self.refresh_item()

    def _on_annotations_changed(self, item_id: int) -> None:
        if item_id == self.state.current_item:
            self.refresh_item()

    def _on_edited(self, item_id: int) -> None:
        self.state.annotationsChanged.emit(int(item_id))  # others (presenter, browser) follow
        if item_id != self.state.current_item:
            self.state.set_current_item(int(item_id))  # undo of an edit on another item shows that item

    def _on_verdict_edited(self, item_id: int) -> None:
        self.state.verdictsChanged.emit()
        if item_id == self.state.current_item:
            self.refresh_verdict()

    def current_annotations(self) -> list[Annotation]:
        p, iid = self.state.project, self.state.current_item
        return [] if p is None or iid is None else p.annotations(int(iid))

    def refresh_item(self) -> None:
        anns = self.current_annotations()
        if self.viewer is not None:
            self.viewer.clear_layer("annotations")  # the presenter's read-only copy; editable shapes are ours
        if self.canvas is not None:
            self.canvas.show_item(self.state.current_item, anns)
        self.shape_list.blockSignals(True)
        self.shape_list.clear()
        colors = self.state.project.label_classes() if self.state.project else {}
        for a in anns:
            if not editable(a):
                continue
            it = QListWidgetItem(_swatch(colors.get(a.label, "#ffd60a")), f"{a.label or '(no label)'} · {a.kind}"
                                 + (f" · {a.source}" if a.source != "user" else ""))
            it.setData(Qt.ItemDataRole.UserRole, a.id)
            self.shape_list.addItem(it)
        self.shape_list.blockSignals(False)
        self._sync_shape_selection(self.canvas.selected if self.canvas else [])
        self.refresh_verdict(item_changed=True)

    def refresh_verdict(self, item_changed: bool = False) -> None:
        p, iid = self.state.project, self.state.current_item
        v = p.verdict(int(iid)) if p is not None and iid is not None else None
        for name, b in self.verdict_buttons.items():
            b.setChecked(v is not None and v.verdict == name)
            b.setEnabled(iid is not None)
        self.verified_box.setChecked(bool(v and v.verified))
        self.verified_box.setEnabled(iid is not None)
        if item_changed or not self.note_edit.hasFocus():  # never overwrite a note being typed
            self.note_edit.setText(v.note if v else "")
        if p is not None:
            n = p.count_items()
            done = sum(1 for x in p.verdicts().values() if x.verified)
            self.progress_label.setText(f"{done} of {n} items verified")

    # -- label classes -------------------------------------------------------------------------------
    def refresh_classes(self) -> None:
        p = self.state.project
        classes = p.label_classes() if p is not None else {}
        current = self.current_label()
        self.class_list.blockSignals(True)
        self.class_list.clear()
        for name, color in classes.items():
            it = QListWidgetItem(_swatch(color), name)
            it.setData(Qt.ItemDataRole.UserRole, name)
            self.class_list.addItem(it)
        self.class_list.blockSignals(False)
        names = list(classes)
        if names:
            self.class_list.setCurrentRow(names.index(current) if current in names else 0)
        if self.canvas is not None:
            self.canvas.colors = dict(classes)
            self.canvas.label = self.current_label()
            self.canvas.redraw()

    def current_label(self) -> str:
        it = self.class_list.currentItem()
        return str(it.data(Qt.ItemDataRole.UserRole)) if it is not None else DEFAULT_LABEL

    def _on_class_selected(self, *_: Any) -> None:
        if self.canvas is not None:
            self.canvas.label = self.current_label()

    def ensure_class(self, name: str) -> None:
        p = self.state.project
        if p is not None and name and name not in p.label_classes():
            p.set_label_class(name, default_color(len(p.label_classes())))
            self.refresh_classes()

    def add_class(self, name: str | None = None) -> None:
        if self.state.project is None:
            return
        if name is None:
            name, ok = QInputDialog.getText(self, "New label class", "Name:")
            if not ok:
                return
        name = name.strip()
        if not name:
            return
        self.ensure_class(name)
        items = self.class_list.findItems(name, Qt.MatchFlag.MatchExactly)
        if items:
            self.class_list.setCurrentItem(items[0])

    def rename_class(self, new: str | None = None) -> None:
        old = self.current_label()
        if self.editor is None or not self.class_list.currentItem():
            return
        if new is None:
            new, ok = QInputDialog.getText(self, "Rename label class", f"New name for '{old}':", text=old)
            if not ok:
                return
        new = new.strip()
        if not new or new == old:
            return
        if new in (self.state.project.label_classes() if self.state.project else {}):
            QMessageBox.warning(self, "Rename label class", f"A class named '{new}' exists already.")
            return
        self.editor.rename_class(old, new)
        items = self.class_list.findItems(new, Qt.MatchFlag.MatchExactly)
        if items:
            self.class_list.setCurrentItem(items[0])

    def delete_class(self, with_shapes: bool | None = None) -> bool:
        """Delete the selected class; with shapes using it, ask whether they go too (Ctrl+Z undoes)."""
        name = self.current_label()
        if self.editor is None or not self.class_list.currentItem():
            return False
        shapes = self.editor.class_shapes(name)
        n = sum(len(v) for v in shapes.values())
        if with_shapes is None:
            box = QMessageBox(QMessageBox.Icon.Question, "Delete label class",
                              f"Delete the class '{name}'?" + (f"\n{n} shape(s) on {len(shapes)} item(s) use it." if n else ""),
                              QMessageBox.StandardButton.Cancel, self)
            both = box.addButton("Delete class and shapes", QMessageBox.ButtonRole.DestructiveRole) if n else None
            only = box.addButton("Delete class, keep shapes" if n else "Delete", QMessageBox.ButtonRole.AcceptRole)
            box.exec()
            if box.clickedButton() not in (both, only) or box.clickedButton() is None:
                return False
            with_shapes = box.clickedButton() is both
        self.editor.delete_class(name, bool(with_shapes))
        self.state.message.emit(f"Label class '{name}' deleted" + (f" with {n} shape(s)" if with_shapes and n else "")
                                + " (Ctrl+Z undoes)")
        return True

    def recolor_class(self, color: str | None = None) -> None:
        name = self.current_label()
        if self.editor is None or not self.class_list.currentItem():
            return
        if color is None:
            old = (self.state.project.label_classes() if self.state.project else {}).get(name, "#ffd60a")
            c = QColorDialog.getColor(QColor(old), self, f"Colour of '{name}'")
            if not c.isValid():
                return
            color = c.name()
        self.editor.set_class_color(name, color)

    def assign_class_to_selection(self) -> None:
        ed, iid = self.editor, self.state.current_item
        if ed is None or iid is None or self.canvas is None or not self.canvas.selected:
            return
        label = self.current_label()
        ed.stack.beginMacro(f"Label as '{label}'")
        for aid in list(self.canvas.selected):
            ed.modify_shape(int(iid), aid, label=label)
        ed.stack.endMacro()

    # -- tools, shapes ---------------------------------------------------------------------------
    def set_tool(self, tool: str) -> None:
        if self.canvas is None:
            return
        if tool != "select":
            self.ensure_class(self.current_label())
        self.canvas.label = self.current_label()
        self.canvas.set_tool(tool)
        self.state.message.emit(TOOL_HINTS[tool].format(label=self.current_label()))

    def _sync_tool_buttons(self, tool: str) -> None:
        self.tool_buttons[tool].setChecked(True)

    def _on_brush_size(self, value: int) -> None:
        if self.canvas is not None:
            self.canvas.brush_size = int(value)

    def _on_shape_list_selection(self) -> None:
        if self.canvas is None:
            return
        ids = [int(i.data(Qt.ItemDataRole.UserRole)) for i in self.shape_list.selectedItems()]
        self.canvas.select(ids)

    def _sync_shape_selection(self, ids: list[int]) -> None:
        self.shape_list.blockSignals(True)
        for k in range(self.shape_list.count()):
            it = self.shape_list.item(k)
            it.setSelected(int(it.data(Qt.ItemDataRole.UserRole)) in ids)
        self.shape_list.blockSignals(False)

    def select_all_shapes(self) -> None:
        if self.canvas is not None:
            self.canvas.select([int(a.id or 0) for a in self.canvas.shapes])

    def delete_selected(self) -> None:
        if self.canvas is not None:
            self.canvas.delete_selected()

    def copy_from_previous(self) -> None:
        """Copy the shapes of the previously shown item (else the item before in the list) onto this one."""
        p, iid, ed = self.state.project, self.state.current_item, self.editor
        if p is None or iid is None or ed is None:
            return
        src = self.previous_item
        if src is None or src == iid:
            ids = p.item_ids()
            k = ids.index(iid) if iid in ids else 0
            src = ids[k - 1] if k > 0 else None
        if src is None:
            self.state.message.emit("No previous item to copy labels from")
            return
        anns = [a for a in p.annotations(int(src)) if editable(a)]
        if not anns:
            self.state.message.emit("The previous item has no labels")
            return
        copies = [Annotation(a.kind, a.label, dict(a.geometry), source="user") for a in anns]
        ed.add_shapes(int(iid), copies, f"Copy {len(copies)} label(s) from previous item")
        self.state.message.emit(f"Copied {len(copies)} label(s) from item {src}")

    # -- verdicts --------------------------------------------------------------------------------
    def set_verdict(self, verdict: str) -> None:
        iid = self.state.current_item
        if self.editor is not None and iid is not None:
            self.editor.set_verdict(int(iid), verdict=verdict)

    def set_verified(self, verified: bool) -> None:
        iid = self.state.current_item
        if self.editor is not None and iid is not None:
            self.editor.set_verdict(int(iid), verified=verified)

    def toggle_verified(self) -> None:
        self.set_verified(not self.verified_box.isChecked())

    def _save_note(self) -> None:
        p, iid = self.state.project, self.state.current_item
        if self.editor is None or p is None or iid is None:
            return
        v = p.verdict(int(iid))
        if self.note_edit.text() != (v.note if v else ""):
            self.editor.set_verdict(int(iid), note=self.note_edit.text())

    def next_unverified(self) -> int | None:
        """Go to the next item (in the browser's filter, after the current one, wrapping) not verified yet."""
        p = self.state.project
        if p is None:
            return None
        ids = p.item_ids()
        if self.state.filter is not None:
            ids = [i for i in ids if i in self.state.filter]
        verified = {i for i, v in p.verdicts().items() if v.verified}
        cur = self.state.current_item
        start = ids.index(cur) + 1 if cur in ids else 0
        for i in ids[start:] + ids[:start]:
            if i not in verified and i != cur:
                self.state.set_current_item(i)
                return i
        self.state.message.emit("Every item is verified")
        return None

    # -- undo -------------------------------------------------------------------------------------
    def undo(self) -> None:
        if self.editor is not None and self.editor.stack.canUndo():
            self.state.message.emit(f"Undo: {self.editor.stack.undoText()}")
            self.editor.stack.undo()

    def redo(self) -> None:
        if self.editor is not None and self.editor.stack.canRedo():
            self.state.message.emit(f"Redo: {self.editor.stack.redoText()}")
            self.editor.stack.redo()

    def _update_undo_actions(self) -> None:
        valid = self.editor is not None and shiboken6.isValid(self.editor) and shiboken6.isValid(self.editor.stack)
        stack = self.editor.stack if valid else None  # type: ignore[union-attr]
        for name, can, text in (("edit.undo", stack.canUndo() if stack else False, stack.undoText() if stack else ""),
                                ("edit.redo", stack.canRedo() if stack else False, stack.redoText() if stack else "")):
            act = self.actions_.get(name)
            if act is not None and shiboken6.isValid(act):  # actions die before the stack at exit
                act.setEnabled(bool(can))
                act.setText(("Undo" if name == "edit.undo" else "Redo") + (f" {text}" if text else ""))
