"""`anomaly-gui bench [NAME ...] [--device cpu|cuda] [--out FILE]`: run the benchmark scripts of `benchmarks/`.

Each script `benchmarks/bench_<name>.py` prints one JSON object; this command runs the ones asked for
(all by default) in subprocesses, adds the machine and library versions, and prints (or writes) one
JSON object. Benchmarks live beside the package in a source checkout (they use `../shared/data`).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"
#: names that stand for several benchmarks: `anomaly-gui bench cpu` gives every figure of issue 15
GROUPS = {"cpu": ["patchcore_vs_anomalib", "auroc_vs_anomalib", "export_runtimes", "patchcore_fit300", "embedding"]}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run benchmarks (JSON with machine and versions)")
    p.add_argument("names", nargs="*", help="benchmarks to run (default: all); see --list")
    p.add_argument("--list", action="store_true", help="list the benchmarks")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (passed to each script)")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per benchmark")
    p.add_argument("--before-src", type=Path, default=None,
                   help="an older checkout: benchmarks that accept it also time its code (folder -> scores)")
    p.add_argument("--markdown", action="store_true", help="after the JSON, print the summary as a Markdown table")
    p.set_defaults(func=run)


def available() -> dict[str, Path]:
    if not BENCH_DIR.is_dir():
        return {}
    return {p.stem.removeprefix("bench_"): p for p in sorted(BENCH_DIR.glob("bench_*.py"))}


def machine_info() -> dict:
    import torch

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    try:
        import torchvision

        info["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    return info


def run(args: argparse.Namespace) -> int:
    benches = available()
    if not benches:
        print(f"anomaly-gui: no benchmarks found in {BENCH_DIR} (they ship with a source checkout)", file=sys.stderr)
        return 2
    if args.list:
        for name, path in benches.items():
            doc = (path.read_text(encoding="utf-8").split('"""')[1].strip().splitlines() or [""])[0] if '"""' in path.read_text(encoding="utf-8") else ""
            print(f"{name:16s} {doc}")
        for name, members in GROUPS.items():
            print(f"{name:16s} group: {', '.join(members)} (every CPU figure of issue 15, with a summary)")
        return 0
    names = [n for name in (args.names or list(benches)) for n in GROUPS.get(name, [name])]
    unknown = [n for n in names if n not in benches]
    names = list(dict.fromkeys(names))
    if unknown:
        print(f"anomaly-gui: unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(benches)}", file=sys.stderr)
        return 2
    out: dict = {"machine": machine_info(), "results": {}}
    for name in names:
        print(f"running {name} ...", file=sys.stderr)
        cmd = [sys.executable, str(benches[name])] + (["--device", args.device] if _accepts_device(benches[name]) else [])
        if args.before_src and "--before-src" in benches[name].read_text(encoding="utf-8"):
            cmd += ["--before-src", str(args.before_src)]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            out["results"][name] = {"error": f"timed out after {args.timeout:.0f} s"}
            continue
        entry: dict = {"seconds": round(time.perf_counter() - t0, 2)}
        if proc.returncode != 0:
            entry["error"] = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        else:
            entry.update(_last_json(proc.stdout))
        out["results"][name] = entry
    from anomaly_gui.cli.bench_summary import markdown_table, summarize

    rows = summarize(out["results"])
    if rows:
        out["summary"] = rows
    text = json.dumps(out, indent=2)
    if args.out:
        from anomaly_gui.core.imageio import write_text

        write_text(args.out, text)
    print(text)
    if args.markdown and rows:
        print(markdown_table(rows))
    return 0 if all("error" not in r for r in out["results"].values()) else 1


def _accepts_device(path: Path) -> bool:
    return "--device" in path.read_text(encoding="utf-8")


def _last_json(stdout: str) -> dict:
    """The JSON object a script printed (its last line that parses as an object)."""
    for line in reversed(stdout.strip().splitlines()):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            return obj
    try:
        obj = json.loads(stdout)
        return obj if isinstance(obj, dict) else {"output": obj}
    except json.JSONDecodeError:
        return {"output": stdout.strip()[-2000:]}
