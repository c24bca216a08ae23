"""Checks every evaluator makes before it reports a number: test data that differs from training data,
and the counts of what was left out (so no item disappears from a metric without the output saying so)."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

from anomaly_gui.core.errors import DataError

_CHUNK = 1 << 20


def file_digest(path: str | Path) -> str | None:
    """sha256 of a file's bytes; None when it cannot be read (the reader reports that file itself)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


def overlapping(train: Sequence[Any], test: Sequence[Any]) -> list[tuple[Any, Any]]:
    """(test item, training item) pairs whose files are byte-identical."""
    by_digest: dict[str, Any] = {}
    for it in train:
        d = file_digest(it.path)
        if d is not None:
            by_digest.setdefault(d, it)
    out = []
    for it in test:
        d = file_digest(it.path)
        if d is not None and d in by_digest:
            out.append((it, by_digest[d]))
    return out


def check_overlap(train: Sequence[Any], test: Sequence[Any], allow: bool, warnings: list[str],
                  where: str | Path) -> int:
    """Refuse (DataError naming the files) when a test item is byte-identical to a training item, or with
    `allow` add a warning; returns the overlap count (reported as `n_overlap`)."""
    pairs = overlapping(train, test)
    if not pairs:
        return 0
    shown = "; ".join(f"{Path(a.path).name} = {b.path}" for a, b in pairs[:3])
    more = f" and {len(pairs) - 3} more" if len(pairs) > 3 else ""
    msg = f"{len(pairs)} test item(s) byte-identical to training items: {shown}{more}"
    if not allow:
        raise DataError(where, f"{msg}; the test data must differ from the training data (--allow-overlap to measure anyway)")
    warnings.append(f"{msg}; measured anyway (--allow-overlap): the figures are optimistic")
    return len(pairs)
