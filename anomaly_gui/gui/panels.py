"""Registry of dockable panels. A feature adds its panel with `@register_panel` in a module under
`anomaly_gui/gui/` listed by `PANEL_MODULES` discovery (any module named `*_panel.py` or in `panels_*`).

A panel class is a QWidget subclass with class attributes `panel_id`, `title`, `area` ('left', 'right',
'bottom') and an `__init__(self, state: AppState, window: MainWindow)` signature. The main window makes
one dock per registered panel, adds a toggle to the View menu, and persists the layout.
Optional: `actions(self) -> list[QAction]` are added to the menu named by `menu` (class attribute).
"""
from __future__ import annotations

import importlib
import pkgutil

_PANELS: dict[str, type] = {}


def register_panel(cls: type) -> type:
    for attr in ("panel_id", "title", "area"):
        if not hasattr(cls, attr):
            raise TypeError(f"{cls.__name__} lacks {attr}")
    _PANELS[cls.panel_id] = cls
    return cls


def discover_panels() -> list[type]:
    import anomaly_gui.gui as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.endswith("_panel") or info.name.startswith("panels_"):
            importlib.import_module(f"anomaly_gui.gui.{info.name}")
    return sorted(_PANELS.values(), key=lambda c: (getattr(c, "order", 100), c.panel_id))
