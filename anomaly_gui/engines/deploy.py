"""Export a fitted image engine for deployment (ONNX, OpenVINO IR) and score with the exported file.

An exportable engine returns, from `export_module()`, a plain `nn.Module` that maps images (N, C, H, W)
in [0, 1] at the engine's input size to (image scores (N,), score maps (N, H, W)): the same numbers as
`engine.score_tensor`, with no Python control flow left, so ONNX Runtime or OpenVINO can run it on a
machine without torch. The ONNX file carries metadata (engine, input size, channels, parameters) that
`ExportedScorer` reads back.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anomaly_gui.core.errors import ModelFileError
from anomaly_gui.engines.base import Engine, params_to_dict

log = logging.getLogger(__name__)

FORMATS = ("onnx", "openvino")


def exportable(engine: Engine) -> bool:
    return callable(getattr(engine, "export_module", None))


def export_model(engine: Engine, out: str | Path, fmt: str = "onnx") -> Path:
    """Write `engine` as ONNX (`out` .onnx) or OpenVINO IR (`out` .xml + .bin); returns the written path."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    if not exportable(engine):
        raise ValueError(f"engine {engine.name!r} cannot be exported yet (exportable: patchcore)")
    if not getattr(engine, "fitted", False):
        raise ValueError(f"{engine.name}: train the model before exporting it")
    out = Path(out)
    suffix = ".onnx" if fmt == "onnx" else ".xml"
    if out.suffix.lower() != suffix:
        out = out.with_suffix(suffix)
    out.parent.mkdir(parents=True, exist_ok=True)
    module = engine.export_module().cpu().eval()
    size = int(engine.input_size())
    example = torch.rand(1, int(engine.channels()), size, size, generator=torch.Generator().manual_seed(0))
    from anomaly_gui.engines.patchcore.runtime import export_onnx_bytes

    blob = export_onnx_bytes(module, example, ["images"], ["scores", "maps"],
                             {"images": {0: "batch"}, "scores": {0: "batch"}, "maps": {0: "batch"}})
    blob = _with_metadata(blob, {"engine": engine.name, "image_size": str(size), "channels": str(engine.channels()),
                                 "params": json.dumps(params_to_dict(engine.params), default=str)})
    if fmt == "onnx":
        from anomaly_gui.core.imageio import atomic_path

        with atomic_path(out) as tmp:
            tmp.write_bytes(blob)
        return out
    try:
        import openvino as ov
    except ImportError as exc:
        raise ValueError("--format openvino needs the openvino package (pip install openvino)") from exc
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "model.onnx"
        src.write_bytes(blob)
        ov.save_model(ov.convert_model(str(src)), str(out), compress_to_fp16=False)  # the bank stays fp32
    from anomaly_gui.core.imageio import write_text

    write_text(out.with_suffix(".json"), json.dumps({"engine": engine.name, "image_size": str(size),
                                                    "channels": str(engine.channels())}))
    return out


def _with_metadata(blob: bytes, meta: dict[str, str]) -> bytes:
    import onnx

    model = onnx.load_from_string(blob)
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = f"anomaly_gui.{k}", v
    return model.SerializeToString()


class ExportedScorer:
    """Scores images with an exported .onnx (ONNX Runtime) or .xml (OpenVINO) file on the CPU."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelFileError(f"{self.path}: file not found")
        self.meta: dict[str, str] = {}
        if self.path.suffix.lower() == ".onnx":
            from anomaly_gui.engines.patchcore.runtime import make_session

            try:
                self.session: Any = make_session(str(self.path), threads)
            except Exception as exc:  # onnxruntime raises its own exception types for corrupt files
                raise ModelFileError(f"{self.path}: not a readable ONNX model ({exc})") from exc
            props = self.session.get_modelmeta().custom_metadata_map
            self.meta = {k.removeprefix("anomaly_gui."): v for k, v in props.items()}
            self._run = lambda x: self.session.run(None, {"images": x})
        elif self.path.suffix.lower() == ".xml":
            import openvino as ov

            core = ov.Core()
            compiled = core.compile_model(str(self.path), "CPU",
                                          {"INFERENCE_NUM_THREADS": max(1, threads or torch.get_num_threads())})
            self._run = lambda x: [v for v in compiled(x).values()]
            onnx_meta = self.path.with_suffix(".json")
            if onnx_meta.is_file():
                self.meta = json.loads(onnx_meta.read_text(encoding="utf-8"))
        else:
            raise ModelFileError(f"{self.path}: expected an exported .onnx or OpenVINO .xml file")

    @property
    def image_size(self) -> int:
        return int(self.meta.get("image_size", 256))

    @property
    def channels(self) -> int:
        return int(self.meta.get("channels", 3))

    def score_tensor(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores (N,), maps (N, H, W)) of a batch in [0, 1]."""
        scores, maps = self._run(np.ascontiguousarray(x.detach().cpu().float().numpy()))
        return torch.from_numpy(np.asarray(scores)), torch.from_numpy(np.asarray(maps))
