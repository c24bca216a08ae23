"""Thin Qt layer on top of the core. Nothing below `core/` or `engines/` imports Qt."""

import sys as _sys


def _guard_singleton_refcount_bug() -> None:
    """Work around PySide6 / shiboken6 6.12.0 on Python < 3.12, which hands out the singletons without
    taking a reference: every call of a method that returns nothing (`QWidget.update()`,
    `QApplication.processEvents()`, `QRectF.setWidth()`, ...) drops one reference to `None`, and every
    `SignalInstance.emit()` drops one to `True`. After enough calls (or in the final garbage collection at
    exit) the process aborts with "Fatal Python error: none_dealloc" / "bool_dealloc" (exit 134): the full
    GUI test suite did at exit, and a long session would mid-use. 6.11.3 does not do this; Python 3.12+
    makes the singletons immortal, so it is harmless there. Probe once; when affected, give None, True and
    False a reference count so large that no session can use it up (what Python 3.12's immortality does).
    docs/decisions/0020 has the measurements."""
    if _sys.version_info >= (3, 12):
        return
    from PySide6.QtCore import QObject, QRectF, Signal

    class _Probe(QObject):
        sig = Signal()

    probe, rect = _Probe(), QRectF()
    calls = 16
    none_before, true_before = _sys.getrefcount(None), _sys.getrefcount(True)
    for _ in range(calls):
        probe.sig.emit()
        rect.setWidth(1.0)
    leaks_none = _sys.getrefcount(None) <= none_before - calls
    leaks_true = _sys.getrefcount(True) <= true_before - calls
    if leaks_none or leaks_true:
        import ctypes

        for obj in (None, True, False):
            ctypes.c_ssize_t.from_address(id(obj)).value += 1 << 40


_guard_singleton_refcount_bug()
