"""`anomaly-gui export-model MODEL_OR_PROJECT [--run ID] --format onnx|openvino [--out PATH] [--check FOLDER]`.

Writes the trained model as ONNX (ONNX Runtime, any language) or OpenVINO IR, with the same scores and maps
as the app's model. `--check` scores a folder with both and prints the largest differences.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export-model", help="export a trained model as ONNX or OpenVINO IR for deployment")
    p.add_argument("model", type=Path, help="model file (.agm), or a project file (.agproj) with --run")
    p.add_argument("--run", type=int, default=None, help="with a project: the run whose model to export")
    p.add_argument("--format", dest="fmt", choices=("onnx", "openvino"), default="onnx")
    p.add_argument("--out", type=Path, default=None, help="output file (default: beside the model, .onnx/.xml)")
    p.add_argument("--check", type=Path, default=None, metavar="FOLDER",
                   help="score these images with the exported file and the original model; report differences")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def load_engine(model: Path, run_id: int | None):
    """The fitted engine of a model file, or of run `run_id` of a project file (with the run's threshold and
    minimum area in its stats, so that the exported file decides as the run does)."""
    from anomaly_gui.core.errors import ModelFileError
    from anomaly_gui.engines.base import Engine

    if not model.exists():
        raise FileNotFoundError(f"{model}: file not found")
    if model.suffix.lower() == ".agproj":
        from anomaly_gui.core.project import open_project
        from anomaly_gui.pipeline import load_run_engine

        if run_id is None:
            raise ValueError(f"{model}: a project needs --run ID (the run whose model to export)")
        project = open_project(model)
        try:
            engine = load_run_engine(project, run_id, device="cpu")
            run = project.run(run_id)
            engine.stats.update({k: float(v) for k, v in (("threshold", run.threshold), ("min_area", run.min_area))
                                 if v is not None})
            return engine
        finally:
            close = getattr(project, "close", None)
            if close:
                close()
    if run_id is not None:
        raise ValueError("--run goes with a project file (.agproj), not a model file")
    try:
        return Engine.load(model, device="cpu")
    except ModelFileError:
        raise
    except Exception as exc:  # a file that is not ours
        raise ModelFileError(f"{model}: not an anomaly_gui model file ({type(exc).__name__}: {exc})") from exc


def run(args: argparse.Namespace) -> int:
    from anomaly_gui.engines.deploy import export_model

    engine = load_engine(args.model, args.run)
    out = args.out or args.model.with_suffix(".onnx" if args.fmt == "onnx" else ".xml")
    path = export_model(engine, out, args.fmt)
    result: dict = {"engine": engine.name, "format": args.fmt, "path": str(path)}
    if args.check:
        result["check"] = check(engine, path, args.check)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:8s} {v}", file=sys.stdout)
    return 0


def check(engine, path: Path, folder: Path, limit: int = 32) -> dict:
    """Largest score and map differences between the engine and the exported file on up to `limit` images."""
    import torch

    from anomaly_gui.engines.deploy import ExportedScorer
    from anomaly_gui.core.formats.common import input_images
    from anomaly_gui.engines.image_data import load_all

    files = input_images(folder)[:limit]
    x = load_all(files, engine.input_size(), engine.channels()).float() / 255.0
    s_ref, m_ref = engine.score_tensor(x)
    s_exp, m_exp = ExportedScorer(path).score_tensor(x)
    return {"images": len(files), "max_score_difference": float((s_ref - s_exp).abs().max()),
            "max_map_difference": float((m_ref - m_exp).abs().max()),
            "max_score": float(s_ref.abs().max()), "torch_threads": torch.get_num_threads()}
