"""A form built from any engine's `Params` dataclass (fields made with `engines.base.param`).

Widgets follow each field's type and metadata: bool -> check box, int -> spin box, float -> double spin
box (decimals fit the range), `choices` -> combo box, str -> line edit, list -> comma-separated line edit.
`help` becomes the tooltip, `minimum` / `maximum` / `step` bound the spin boxes, `label` names the row and
`advanced` fields are folded under an "Advanced" toggle. The same form serves every engine of every task.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QLabel, QLineEdit, QSpinBox,
                               QToolButton, QVBoxLayout, QWidget)

from anomaly_gui.engines.base import param_fields

INT_LIMIT = 2_000_000_000


def field_label(f: dataclasses.Field) -> str:
    return str(f.metadata.get("label") or f.name.replace("_", " ").capitalize())


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def _decimals(*values: Any) -> int:
    """Enough decimals to show the smallest non-zero bound or default (at least 3, at most 8)."""
    d = 3
    for v in values:
        if isinstance(v, (int, float)) and v and abs(v) < 1:
            d = max(d, int(math.ceil(-math.log10(abs(v)))) + 2)
    return min(d, 8)


class ParamForm(QWidget):
    """Edits one Params dataclass. `values()` gives a dict ready for `Engine(params=...)`."""

    valuesChanged = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._params_cls: type | None = None
        self._widgets: dict[str, QWidget] = {}
        self._fields: dict[str, dataclasses.Field] = {}
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self._basic = QWidget()
        self._basic_layout = QFormLayout(self._basic)
        self._basic_layout.setContentsMargins(0, 0, 0, 0)
        self.advanced_toggle = QToolButton()
        self.advanced_toggle.setText("Advanced")
        self.advanced_toggle.setCheckable(True)
        self.advanced_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_toggle.setAutoRaise(True)
        self.advanced_toggle.toggled.connect(self._on_advanced_toggled)
        self._advanced = QWidget()
        self._advanced_layout = QFormLayout(self._advanced)
        self._advanced_layout.setContentsMargins(12, 0, 0, 0)
        self._advanced.setVisible(False)
        self._empty = QLabel("This engine has no parameters.")
        self._empty.setEnabled(False)
        for w in (self._basic, self.advanced_toggle, self._advanced, self._empty):
            outer.addWidget(w)
        outer.addStretch(1)

    # -- building ------------------------------------------------------------------------------
    def set_params_class(self, params_cls: type | None, values: dict[str, Any] | None = None) -> None:
        """Rebuild the form for `params_cls`, filled with its defaults overridden by `values`."""
        for layout in (self._basic_layout, self._advanced_layout):
            while layout.rowCount():
                layout.removeRow(0)
        self._widgets.clear()
        self._fields.clear()
        self._params_cls = params_cls
        n_adv = 0
        for f in (param_fields(params_cls) if params_cls is not None else []):
            w = self._make_widget(f)
            self._widgets[f.name] = w
            self._fields[f.name] = f
            label = QLabel(field_label(f))
            tip = str(f.metadata.get("help", ""))
            if tip:
                label.setToolTip(tip)
                w.setToolTip(tip)
            label.setBuddy(w)
            if f.metadata.get("advanced"):
                self._advanced_layout.addRow(label, w)
                n_adv += 1
            else:
                self._basic_layout.addRow(label, w)
        self.advanced_toggle.setVisible(n_adv > 0)
        self.advanced_toggle.setText(f"Advanced ({n_adv})")
        self._empty.setVisible(not self._widgets)
        self.set_values(values or {})

    def _make_widget(self, f: dataclasses.Field) -> QWidget:
        md, default = f.metadata, _default(f)
        choices = md.get("choices")
        if choices:
            w = QComboBox()
            for c in choices:
                w.addItem(str(c), c)
            w.currentIndexChanged.connect(self.valuesChanged)
            if md.get("editable"):  # the choices, or the user's own text (e.g. a path to a model file)
                w.setEditable(True)
                w.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
                w.editTextChanged.connect(self.valuesChanged)
            return w
        if isinstance(default, bool):
            w = QCheckBox()
            w.toggled.connect(self.valuesChanged)
            return w
        if isinstance(default, int):
            w = QSpinBox()
            w.setRange(int(md.get("minimum", -INT_LIMIT)), int(md.get("maximum", INT_LIMIT)))
            w.setSingleStep(int(md.get("step", 1)))
            w.setAccelerated(True)
            w.valueChanged.connect(self.valuesChanged)
            return w
        if isinstance(default, float):
            w = QDoubleSpinBox()
            lo, hi = md.get("minimum", -1e12), md.get("maximum", 1e12)
            w.setDecimals(_decimals(md.get("minimum"), md.get("step"), default))
            w.setRange(float(lo), float(hi))
            w.setSingleStep(float(md.get("step", default / 10 if 0 < default < 1 else 0.1)))
            w.setAccelerated(True)
            w.valueChanged.connect(self.valuesChanged)
            return w
        w = QLineEdit()
        if isinstance(default, (list, tuple)):
            w.setPlaceholderText("comma-separated values")
        w.textChanged.connect(self.valuesChanged)
        return w

    def _on_advanced_toggled(self, on: bool) -> None:
        self._advanced.setVisible(on)
        self.advanced_toggle.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)

    # -- values -------------------------------------------------------------------------------------
    def widget(self, name: str) -> QWidget:
        return self._widgets[name]

    def names(self) -> list[str]:
        return list(self._widgets)

    def set_values(self, values: dict[str, Any]) -> None:
        """Fill every field: `values` where given (unknown keys ignored), the default otherwise."""
        self.blockSignals(True)
        try:
            for name, f in self._fields.items():
                self._set(self._widgets[name], values.get(name, _default(f)))
        finally:
            self.blockSignals(False)
        self.valuesChanged.emit()

    def reset_defaults(self) -> None:
        self.set_values({})

    @staticmethod
    def _set(w: QWidget, v: Any) -> None:
        if isinstance(w, QComboBox):
            k = w.findData(v)
            if k < 0 and w.isEditable() and v not in (None, ""):
                w.setEditText(str(v))
            else:
                w.setCurrentIndex(k if k >= 0 else 0)
        elif isinstance(w, QCheckBox):
            w.setChecked(bool(v))
        elif isinstance(w, (QSpinBox, QDoubleSpinBox)):
            w.setValue(v)
        elif isinstance(w, QLineEdit):
            w.setText(", ".join(str(x) for x in v) if isinstance(v, (list, tuple)) else ("" if v is None else str(v)))

    def values(self) -> dict[str, Any]:
        """{field: value} typed like the defaults. Raises ValueError naming the field on bad text."""
        out: dict[str, Any] = {}
        for name, w in self._widgets.items():
            default = _default(self._fields[name])
            if isinstance(w, QComboBox):
                out[name] = w.currentData()
                if w.isEditable():  # typed text that is not one of the choices is the value itself
                    text = w.currentText().strip()
                    k = w.findText(text)
                    out[name] = w.itemData(k) if k >= 0 else text
            elif isinstance(w, QCheckBox):
                out[name] = w.isChecked()
            elif isinstance(w, (QSpinBox, QDoubleSpinBox)):
                out[name] = w.value()
            else:
                out[name] = self._parse_text(name, w.text(), default)  # type: ignore[union-attr]
        return out

    def _parse_text(self, name: str, text: str, default: Any) -> Any:
        if not isinstance(default, (list, tuple)):
            return text
        parts = [p.strip() for p in text.split(",") if p.strip()]
        kind = type(default[0]) if default else str
        try:
            vals = [kind(p) for p in parts]
        except ValueError as exc:
            raise ValueError(f"{field_label(self._fields[name])}: {exc}") from exc
        return type(default)(vals)
