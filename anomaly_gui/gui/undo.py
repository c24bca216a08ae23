"""Undoable edits of the labels; every command writes the project database at once (redo and undo).

Annotation ids change when a deleted shape is restored (the database hands out a new id), so commands
keep the id they were made with and resolve it through `LabelEditor.current_id`, which follows the chain
of re-issued ids. `LabelEditor` owns the QUndoStack and is what the GUI calls.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack

from anomaly_gui.core.formats.base import Annotation
from anomaly_gui.core.project import Project


class LabelEditor(QObject):
    """Undoable label edits on one project. `changed(item_id)` after every write to an item's labels."""

    changed = Signal(int)  # item id whose annotations changed
    verdictChanged = Signal(int)  # item id whose verdict changed
    classesChanged = Signal()

    def __init__(self, project: Project, parent: QObject | None = None):
        super().__init__(parent)
        self.project = project
        self.stack = QUndoStack(self)
        self._remap: dict[int, int] = {}

    # -- id bookkeeping ---------------------------------------------------------------------------
    def current_id(self, ann_id: int) -> int:
        seen = set()
        while ann_id in self._remap and ann_id not in seen:
            seen.add(ann_id)
            ann_id = self._remap[ann_id]
        return ann_id

    def _reissued(self, old: int, new: int) -> None:
        if old != new:
            self._remap[old] = new

    # -- public edits (each one undoable) ------------------------------------------------------------
    def add_shape(self, item_id: int, ann: Annotation, text: str = "") -> int:
        cmd = _AddShape(self, item_id, ann, text or f"Add {ann.kind} '{ann.label}'")
        self.stack.push(cmd)
        return int(cmd.first_id or 0)

    def add_shapes(self, item_id: int, anns: Sequence[Annotation], text: str) -> list[int]:
        self.stack.beginMacro(text)
        ids = [self.add_shape(item_id, a) for a in anns]
        self.stack.endMacro()
        return ids

    def delete_shapes(self, item_id: int, ann_ids: Sequence[int]) -> None:
        if not ann_ids:
            return
        self.stack.beginMacro(f"Delete {len(ann_ids)} shape(s)")
        for aid in ann_ids:
            self.stack.push(_DeleteShape(self, item_id, int(aid)))
        self.stack.endMacro()

    def modify_shape(self, item_id: int, ann_id: int, text: str = "", **new: Any) -> None:
        """Change geometry and/or label (or kind) of a shape; nothing is recorded when nothing changes."""
        cmd = _ModifyShape(self, item_id, int(ann_id), new, text or "Edit shape")
        if cmd.old != cmd.new:
            self.stack.push(cmd)

    def set_verdict(self, item_id: int, verdict: str | None = None, verified: bool | None = None, note: str | None = None) -> None:
        self.stack.push(_SetVerdict(self, item_id, verdict, verified, note))

    def rename_class(self, old: str, new: str) -> None:
        self.stack.push(_RenameClass(self, old, new))

    def set_class_color(self, name: str, color: str) -> None:
        self.stack.push(_ClassColor(self, name, color))

    def class_shapes(self, name: str) -> dict[int, list[int]]:
        """{item id: [annotation ids]} of the user's shapes labelled `name` (model output excluded)."""
        out: dict[int, list[int]] = {}
        for iid, anns in self.project.annotations_by_item().items():
            ids = [int(a.id) for a in anns if a.label == name and a.source != "model" and a.id is not None]
            if ids:
                out[int(iid)] = ids
        return out

    def delete_class(self, name: str, with_shapes: bool) -> None:
        """Remove a label class (one undo step); its shapes are deleted too, or keep their label text."""
        self.stack.beginMacro(f"Delete label class '{name}'" + (" and its shapes" if with_shapes else ""))
        if with_shapes:
            for iid, ids in self.class_shapes(name).items():
                self.delete_shapes(iid, ids)
        self.stack.push(_DeleteClass(self, name))
        self.stack.endMacro()

    # -- helpers for commands -------------------------------------------------------------------------
    def annotation(self, ann_id: int) -> Annotation | None:
        item_id = self.project.annotation_item(self.current_id(ann_id))
        if item_id is None:
            return None
        for a in self.project.annotations(item_id):
            if a.id == self.current_id(ann_id):
                return a
        return None


class _AddShape(QUndoCommand):
    def __init__(self, editor: LabelEditor, item_id: int, ann: Annotation, text: str):
        super().__init__(text)
        self.editor, self.item_id = editor, int(item_id)
        self.ann = copy.deepcopy(ann)
        self.ann.id = None
        self.first_id: int | None = None

    def redo(self) -> None:
        new_id = self.editor.project.add_annotation(self.item_id, copy.deepcopy(self.ann))
        if self.first_id is None:
            self.first_id = new_id
        else:
            self.editor._reissued(self.editor.current_id(self.first_id), new_id)
        self.editor.changed.emit(self.item_id)

    def undo(self) -> None:
        self.editor.project.delete_annotation(self.editor.current_id(int(self.first_id or 0)))
        self.editor.changed.emit(self.item_id)


class _DeleteShape(QUndoCommand):
    def __init__(self, editor: LabelEditor, item_id: int, ann_id: int):
        super().__init__("Delete shape")
        self.editor, self.item_id, self.ann_id = editor, int(item_id), ann_id
        self.saved: Annotation | None = None

    def redo(self) -> None:
        self.saved = self.editor.annotation(self.ann_id)
        self.editor.project.delete_annotation(self.editor.current_id(self.ann_id))
        self.editor.changed.emit(self.item_id)

    def undo(self) -> None:
        if self.saved is None:
            return
        old = self.editor.current_id(self.ann_id)
        new_id = self.editor.project.add_annotation(self.item_id, copy.deepcopy(self.saved))
        self.editor._reissued(old, new_id)
        self.editor.changed.emit(self.item_id)


class _ModifyShape(QUndoCommand):
    FIELDS = ("geometry", "label", "kind", "status")

    def __init__(self, editor: LabelEditor, item_id: int, ann_id: int, new: dict[str, Any], text: str):
        super().__init__(text)
        bad = set(new) - set(self.FIELDS)
        if bad:
            raise ValueError(f"cannot modify {bad}")
        self.editor, self.item_id, self.ann_id = editor, int(item_id), ann_id
        old = editor.annotation(ann_id)
        if old is None:
            raise KeyError(f"no annotation {ann_id}")
        self.old = {k: copy.deepcopy(getattr(old, k)) for k in new}
        self.new = copy.deepcopy(new)

    def _apply(self, values: dict[str, Any]) -> None:
        self.editor.project.update_annotation(self.editor.current_id(self.ann_id), **values)
        self.editor.changed.emit(self.item_id)

    def redo(self) -> None:
        self._apply(self.new)

    def undo(self) -> None:
        self._apply(self.old)


class _SetVerdict(QUndoCommand):
    def __init__(self, editor: LabelEditor, item_id: int, verdict: str | None, verified: bool | None, note: str | None):
        parts = [p for p in (verdict if verdict is not None else None,
                             ("verified" if verified else "unverified") if verified is not None else None,
                             "note" if note is not None else None) if p]
        super().__init__("Set " + ", ".join(parts or ["verdict"]))
        self.editor, self.item_id = editor, int(item_id)
        v = editor.project.verdict(item_id)
        self.old = {"verdict": v.verdict if v else "", "verified": bool(v.verified) if v else False, "note": v.note if v else ""}
        self.new = {k: val for k, val in (("verdict", verdict), ("verified", verified), ("note", note)) if val is not None}

    def redo(self) -> None:
        self.editor.project.set_verdict(self.item_id, **self.new)
        self.editor.verdictChanged.emit(self.item_id)

    def undo(self) -> None:
        self.editor.project.set_verdict(self.item_id, **{k: self.old[k] for k in self.new})
        self.editor.verdictChanged.emit(self.item_id)


class _RenameClass(QUndoCommand):
    def __init__(self, editor: LabelEditor, old: str, new: str):
        super().__init__(f"Rename label '{old}' to '{new}'")
        self.editor, self.old, self.new = editor, old, new

    def _rename(self, a: str, b: str) -> None:
        items = self.editor.project.rename_label_class(a, b)
        self.editor.classesChanged.emit()
        for iid in items:
            self.editor.changed.emit(iid)

    def redo(self) -> None:
        self._rename(self.old, self.new)

    def undo(self) -> None:
        self._rename(self.new, self.old)


class _ClassColor(QUndoCommand):
    def __init__(self, editor: LabelEditor, name: str, color: str):
        super().__init__(f"Colour of '{name}'")
        self.editor, self.name, self.color = editor, name, color
        self.old = editor.project.label_classes().get(name)

    def redo(self) -> None:
        self.editor.project.set_label_class(self.name, self.color)
        self.editor.classesChanged.emit()

    def undo(self) -> None:
        if self.old is None:
            self.editor.project.delete_label_class(self.name)
        else:
            self.editor.project.set_label_class(self.name, self.old)
        self.editor.classesChanged.emit()


class _DeleteClass(QUndoCommand):
    def __init__(self, editor: LabelEditor, name: str):
        super().__init__(f"Delete label class '{name}'")
        self.editor, self.name = editor, name
        self.color = editor.project.label_classes().get(name)

    def redo(self) -> None:
        self.editor.project.delete_label_class(self.name)
        self.editor.classesChanged.emit()

    def undo(self) -> None:
        if self.color is not None:
            self.editor.project.set_label_class(self.name, self.color)
        self.editor.classesChanged.emit()
