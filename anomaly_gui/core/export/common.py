"""What every export shares: target checks, atomic files and folders, unique file names, the result record."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from anomaly_gui.core.errors import AnomalyGuiError, DataError
from anomaly_gui.core.formats.base import DatasetItem


class ExportExistsError(AnomalyGuiError):
    """The target already exists and the caller did not allow replacing it (the GUI asks, the CLI says --overwrite)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        super().__init__(f"{self.path}: already exists (choose another name or allow overwriting)")


@dataclass
class ExportResult:
    format: str
    path: Path
    n_items: int = 0
    n_annotations: int = 0
    files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the format could not carry (skipped or converted)

    def summary(self) -> str:
        text = f"{self.format}: {self.n_items} item(s), {self.n_annotations} annotation(s) -> {self.path}"
        if self.notes:
            text += f" ({len(self.notes)} note(s): {self.notes[0]}{' ...' if len(self.notes) > 1 else ''})"
        return text


def check_target(path: str | Path, overwrite: bool) -> Path:
    """Raise a clear error when `path` cannot be written, or exists and may not be replaced."""
    path = Path(path).expanduser().resolve()
    if path.exists() and not overwrite:
        raise ExportExistsError(path)
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise DataError(path, f"cannot write here: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DataError(path, f"cannot write here: no write permission on {parent}")
    if path.exists() and not os.access(path, os.W_OK):
        raise DataError(path, "cannot replace: the file is read-only")
    return path


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """A temporary file beside `path` that replaces it only when the block succeeds."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as exc:
        raise DataError(path, f"cannot write here ({exc.strerror or exc})") from exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except OSError as exc:
        raise DataError(path, f"cannot write ({exc.strerror or exc})") from exc
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """A temporary folder beside `path`; on success it takes the place of `path` (an old folder is removed
    only after the new one is complete), on error it is deleted and `path` is untouched."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    except OSError as exc:
        raise DataError(path, f"cannot write here ({exc.strerror or exc})") from exc
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        backup = None
        if path.exists():
            backup = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, backup)
        try:
            os.replace(tmp, path)
        except OSError:
            if backup is not None:
                os.replace(backup, path)
            raise
        if backup is not None:
            if backup.is_dir():
                shutil.rmtree(backup, ignore_errors=True)
            else:
                backup.unlink()
    except OSError as exc:
        raise DataError(path, f"cannot write ({exc.strerror or exc})") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def unique_stems(items: Sequence[DatasetItem]) -> dict[int, str]:
    """A file stem per item id that is unique in the export, readable and stable.

    MVTec has `test/crack/000.png` and `test/good/000.png`: the stem keeps as many parent folders as
    needed (`crack_000`, `good_000`); frames of a video get `#frame` appended.
    """
    def parts(it: DatasetItem) -> list[str]:
        p = Path(it.path)
        ps = [p.stem] + [x for x in reversed(p.parent.parts) if x not in ("/", "\\", "")]
        if it.frame_index is not None:
            ps[0] = f"{ps[0]}_f{int(it.frame_index):06d}"
        return ps

    all_parts = {int(it.id if it.id is not None else k): parts(it) for k, it in enumerate(items)}
    depth = {k: 1 for k in all_parts}
    for _ in range(64):
        names: dict[str, list[int]] = {}
        for k, ps in all_parts.items():
            names.setdefault(_join(ps, depth[k]), []).append(k)
        clashes = [ks for ks in names.values() if len(ks) > 1]
        if not clashes:
            break
        grew = False
        for ks in clashes:
            for k in ks:
                if depth[k] < len(all_parts[k]):
                    depth[k] += 1
                    grew = True
        if not grew:  # identical paths (should not happen): number them
            break
    out: dict[int, str] = {}
    seen: set[str] = set()
    for k in all_parts:
        name = _join(all_parts[k], depth[k])
        base, n = name, 1
        while name in seen:
            n += 1
            name = f"{base}_{n}"
        seen.add(name)
        out[k] = name
    return out


def _join(parts: list[str], depth: int) -> str:
    chosen = list(reversed(parts[:depth]))
    return "_".join(_safe(p) for p in chosen)


def _safe(name: str) -> str:
    keep = "".join(c if (c.isalnum() or c in "-_.") else "_" for c in name)
    return keep.strip(".") or "item"
