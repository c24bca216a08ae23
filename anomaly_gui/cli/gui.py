"""`anomaly-gui gui [PROJECT]` and `anomaly-gui demo [product|sar|wildlife|video]`: open the desktop app."""
from __future__ import annotations

import argparse
from pathlib import Path

DEMO_DOMAINS = ("product", "sar", "wildlife", "video")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gui", help="open the desktop app (optionally on a project file)")
    p.add_argument("project", nargs="?", type=Path, help="project file (.agproj) to open or create")
    p.add_argument("--import", dest="import_path", type=Path, help="dataset folder to import on start")
    p.set_defaults(func=lambda a: run_gui(a.project, a.import_path))
    d = sub.add_parser("demo", help="open the app on a bundled sample data set: product images, SAR ships, camera "
                                    "traps or video (without a domain: the welcome page, which offers all four)")
    d.add_argument("domain", nargs="?", choices=DEMO_DOMAINS, help="which demo to open")
    d.add_argument("--project", type=Path, default=None,
                   help="where to keep the demo project (default ~/.anomaly_gui/demos/DOMAIN.agproj)")
    d.add_argument("--screenshot", type=Path, default=None,
                   help="once the demo's main view is populated, save the window to this PNG and quit")
    d.set_defaults(func=lambda a: run_demo(a.domain, a.project, a.screenshot))


def run_gui(project: Path | None, import_path: Path | None = None) -> int:
    from anomaly_gui.gui.app import run_app

    return run_app(project, import_path)


def run_demo(domain: str | None, project: Path | None = None, screenshot: Path | None = None) -> int:
    from anomaly_gui.gui.app import run_app

    if domain is None and project is not None:
        domain = "product"
    return run_app(None, None, demo=domain, demo_project=project, screenshot=screenshot)
