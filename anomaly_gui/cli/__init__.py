"""Command line. Each module in this package that defines `register(subparsers)` adds a subcommand.

Contract: exit code 0 on success, 2 on bad arguments or unreadable data (one-line reason on stderr);
with --json exactly one JSON object on stdout, logs on stderr.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from typing import Sequence

from anomaly_gui import __version__
from anomaly_gui.core.errors import AnomalyGuiError

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anomaly-gui",
        description="Find anomalies in product images, SAR scenes, camera traps and surveillance video. "
        "Without a subcommand the desktop app opens.",
    )
    parser.add_argument("--version", action="version", version=f"anomaly_gui {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="more logging on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    import anomaly_gui.cli as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        mod = importlib.import_module(f"anomaly_gui.cli.{info.name}")
        register = getattr(mod, "register", None)
        if register is not None:
            register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command is None:
        from anomaly_gui.cli.gui import run_gui

        return run_gui(None)
    try:
        return int(args.func(args) or 0)
    except AnomalyGuiError as exc:
        print(f"anomaly-gui: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (FileNotFoundError, NotADirectoryError, KeyError, ValueError) as exc:
        print(f"anomaly-gui: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
