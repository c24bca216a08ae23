"""`anomaly-gui evaluate … --json` run as a user would (a subprocess), for the benchmark scripts."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path


def evaluate(dataset: Path, test: Path | None, engine: str, params: list[str]) -> dict:
    """The command's JSON result plus `wall_seconds`; its stderr tail as the error when it fails."""
    cmd = [sys.executable, "-m", "anomaly_gui", "evaluate", str(dataset), "--engine", engine, "--json", "--device", "cpu"]
    cmd += ["--test", str(test)] if test else []
    for p in params:
        cmd += ["--param", p]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["wall_seconds"] = round(time.perf_counter() - t0, 1)
    return res
