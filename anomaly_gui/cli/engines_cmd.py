"""`anomaly-gui engines [--json]`: list the registered engines and the task each serves."""
from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("engines", help="list engines and the task each serves")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from anomaly_gui.engines.base import list_engines, params_to_dict

    engines = list_engines()
    if args.json:
        print(json.dumps([{"name": e.name, "task": e.task.value, "title": e.title, "params": params_to_dict(e.Params())} for e in engines]))
    else:
        for e in engines:
            print(f"{e.name:24s} {e.task.value:10s} {e.title}")
    return 0
