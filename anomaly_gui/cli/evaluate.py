"""`anomaly-gui evaluate DATASET --engine NAME [--test OTHER] [--allow-overlap] [--device cpu|cuda] [--json]`.

Dispatches on the engine's task to an evaluator registered in `anomaly_gui.evaluation`.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Iterator


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="train an engine on DATASET and print its metrics")
    p.add_argument("dataset", type=Path)
    p.add_argument("--engine", required=True)
    p.add_argument("--test", type=Path, default=None, help="score this dataset instead of DATASET's test part")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="engine parameter (repeatable)")
    p.add_argument("--save-model", type=Path, default=None, help="also write the trained model here")
    p.add_argument("--allow-overlap", action="store_true",
                   help="measure even when test files are byte-identical to training files (a warning, counted)")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    p.set_defaults(func=run)


def parse_params(pairs: list[str], params_cls: type) -> dict:
    """KEY=VALUE pairs typed after the engine's Params fields."""
    import dataclasses

    fields = {f.name: f for f in dataclasses.fields(params_cls)}
    defaults = dataclasses.asdict(params_cls())
    out = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--param {pair!r}: expected KEY=VALUE")
        key, value = pair.split("=", 1)
        if key not in fields:
            raise ValueError(f"--param {key}: unknown; known: {', '.join(fields)}")
        default = defaults[key]
        if isinstance(default, bool):
            out[key] = value.lower() in ("1", "true", "yes", "on")
        elif isinstance(default, int):
            out[key] = int(value)
        elif isinstance(default, float):
            out[key] = float(value)
        elif isinstance(default, (list, tuple)):
            out[key] = json.loads(value) if value.startswith("[") else value.split(",")
        else:
            out[key] = value
    return out


def run(args: argparse.Namespace) -> int:
    from anomaly_gui.engines.base import get_engine
    from anomaly_gui.evaluation import get_evaluator

    engine_cls = get_engine(args.engine)
    params = parse_params(args.param, engine_cls.Params)
    evaluator = get_evaluator(engine_cls.task)
    with stdout_to_stderr() if args.json else contextlib.nullcontext():
        result = evaluator(
            dataset=args.dataset, engine=args.engine, test=args.test, device=args.device, params=params,
            save_model=args.save_model, allow_overlap=args.allow_overlap,
        )
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:20s} {v}", file=sys.stdout)
    return 0


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """While it runs, what anything prints on stdout goes to stderr, at the file-descriptor level too (ultralytics'
    progress bars, native code), so `--json` leaves exactly one JSON object on stdout."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no stdout descriptor: Python's stream alone
        with contextlib.redirect_stdout(sys.stderr):
            yield
        return
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 1)
        os.close(saved)
