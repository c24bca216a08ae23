"""`anomaly-gui gui [PROJECT]` and `anomaly-gui demo`: open the desktop app."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gui", help="open the desktop app (optionally on a project file)")
    p.add_argument("project", nargs="?", type=Path, help="project file (.agproj) to open or create")
    p.add_argument("--import", dest="import_path", type=Path, help="dataset folder to import on start")
    p.set_defaults(func=lambda a: run_gui(a.project, a.import_path))
    d = sub.add_parser("demo", help="open the app on the bundled sample data (makes it first if needed)")
    d.add_argument("--project", type=Path, default=None, help="where to keep the demo project")
    d.set_defaults(func=lambda a: run_demo(a.project))


def run_gui(project: Path | None, import_path: Path | None = None) -> int:
    from anomaly_gui.gui.app import run_app

    return run_app(project, import_path)


def run_demo(project: Path | None) -> int:
    from anomaly_gui.sample_data import ensure_sample_data

    root = ensure_sample_data()
    if project is None:
        project = Path.home() / ".anomaly_gui" / "demo.agproj"
    return run_gui(project, root / "product" if not Path(project).exists() else None)
