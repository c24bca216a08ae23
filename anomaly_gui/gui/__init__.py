"""Thin Qt layer on top of the core. Nothing below `core/` or `engines/` imports Qt."""

import sys as _sys


def _guard_emit_refcount_bug() -> None:
    """Work around PySide6 6.12.0 on Python < 3.12: `SignalInstance.emit()` returns `True` without taking a
    reference, so every emit drops one reference to `True`; after enough emits (or at exit) the process
    aborts with "Fatal Python error: bool_dealloc". Probe once; when affected, give True and False a huge
    reference count (Python 3.12+ makes them immortal the same way). Harmless on fixed versions."""
    if _sys.version_info >= (3, 12):
        return
    from PySide6.QtCore import QObject, Signal

    class _Probe(QObject):
        sig = Signal()

    probe = _Probe()
    before = _sys.getrefcount(True)
    for _ in range(16):
        probe.sig.emit()
    if _sys.getrefcount(True) <= before - 16:
        import ctypes

        for obj in (True, False):
            ctypes.c_ssize_t.from_address(id(obj)).value += 1 << 40


_guard_emit_refcount_bug()
