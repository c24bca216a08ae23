"""Export a fitted image engine for deployment (ONNX, OpenVINO IR) and score with the exported file.

An exportable engine returns, from `export_module()`, a plain `nn.Module` that maps images (N, C, H, W)
in [0, 1] at the engine's input size to (image scores (N,), score maps (N, H, W)): the same numbers as
`engine.score_tensor`, with no Python control flow left, so ONNX Runtime or OpenVINO can run it on a
machine without torch. The ONNX file carries metadata (engine, input size, channels, parameters) that
`ExportedScorer` reads back. `ExportedEngine` wraps an exported file as an image engine (decoding,
batching, per-item errors of `ImageEngine.score`), so `anomaly-gui score` and the batch scorer take an
exported file wherever they take a model file (`load_for_scoring`).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from anomaly_gui.core.errors import ModelFileError
from anomaly_gui.core.formats.base import DatasetItem
from anomaly_gui.core.jsonsafe import json_serialisable_items
from anomaly_gui.engines.base import Engine, RunContext, Task, get_engine, params_from_dict, params_to_dict
from anomaly_gui.engines.image_data import ImageEngine

log = logging.getLogger(__name__)

FORMATS = ("onnx", "openvino")
#: file suffixes of exported models (ONNX, OpenVINO IR)
EXPORTED_SUFFIXES = (".onnx", ".xml")


def exportable(engine: Engine | type) -> bool:
    """True for engines (or engine classes) with an `export_module()`: patchcore, selfsimilarity, autoencoder."""
    return callable(getattr(engine, "export_module", None))


def exportable_engines() -> list[str]:
    from anomaly_gui.engines.base import list_engines

    return [e.name for e in list_engines() if exportable(e)]


def export_model(engine: Engine, out: str | Path, fmt: str = "onnx", decision: dict[str, Any] | None = None) -> Path:
    """Write `engine` as ONNX (`out` .onnx) or OpenVINO IR (`out` .xml + .bin); returns the written path.

    `decision`: a run's threshold and min_area, stored with the engine's stats so that scoring with the
    exported file decides as the run does."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    if not exportable(engine):
        raise ValueError(f"engine {engine.name!r} cannot be exported (exportable: {', '.join(exportable_engines())})")
    if not getattr(engine, "fitted", False):
        raise ValueError(f"{engine.name}: train the model before exporting it")
    out = Path(out)
    suffix = ".onnx" if fmt == "onnx" else ".xml"
    if out.suffix.lower() != suffix:
        out = out.with_suffix(suffix)
    out.parent.mkdir(parents=True, exist_ok=True)
    module = engine.export_module()
    if any(t.device.type != "cpu" for t in [*module.parameters(), *module.buffers()]):
        import copy

        module = copy.deepcopy(module).cpu()  # the engine keeps its device
    module = module.eval()
    size = int(engine.input_size())
    example = torch.rand(1, int(engine.channels()), size, size, generator=torch.Generator().manual_seed(0))
    from anomaly_gui.engines.patchcore.runtime import export_onnx_bytes

    blob = export_onnx_bytes(module, example, ["images"], ["scores", "maps"],
                             {"images": {0: "batch"}, "scores": {0: "batch"}, "maps": {0: "batch"}})
    meta = {"engine": engine.name, "image_size": str(size), "channels": str(engine.channels()),
            "params": json.dumps(params_to_dict(engine.params), default=str),
            # threshold / min_area when the run had them
            "stats": json.dumps(json_serialisable_items(
                {**engine.stats, **{k: v for k, v in (decision or {}).items() if v is not None}}), default=str)}
    blob = _with_metadata(blob, meta)
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

    write_text(out.with_suffix(".json"), json.dumps(meta))
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

            try:
                compiled = ov.Core().compile_model(str(self.path), "CPU",
                                                   {"INFERENCE_NUM_THREADS": max(1, threads or torch.get_num_threads())})
            except Exception as exc:  # OpenVINO raises its own exception types for corrupt files
                raise ModelFileError(f"{self.path}: not a readable OpenVINO model ({exc})") from exc
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


class ExportedEngine(ImageEngine):
    """An exported .onnx / .xml file as a fitted image engine on the CPU: `score(items)` decodes, batches and
    reports unreadable images like the engine it was exported from; the model runs in ONNX Runtime or
    OpenVINO. Name, params and stats (threshold, min area) are the source engine's, from the file's metadata."""

    task = Task.IMAGE

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        self.scorer = ExportedScorer(path, threads)
        meta = self.scorer.meta
        if "engine" not in meta:
            raise ModelFileError(f"{self.scorer.path}: not exported by anomaly_gui (no engine in its metadata)")
        try:
            source = get_engine(meta["engine"])
        except KeyError as exc:
            raise ModelFileError(f"{self.scorer.path}: unknown engine {meta['engine']!r}") from exc
        self.name = source.name  # type: ignore[misc]  (the instance reports its source engine)
        self.Params = source.Params  # type: ignore[misc]
        params = params_from_dict(source.Params, json.loads(meta.get("params") or "{}"))
        super().__init__(params, device="cpu")
        self.stats = json.loads(meta.get("stats") or "{}")
        self.runtime = "onnxruntime" if self.scorer.path.suffix.lower() == ".onnx" else "openvino"
        self.fitted = True

    def channels(self) -> int:
        return self.scorer.channels

    def input_size(self) -> int:
        return self.scorer.image_size

    #: images per runtime call: an exported PatchCore holds one (images, patches, bank) distance block
    #: (25 MB an image for a 6,144-patch bank at 256 px); 4 keeps it small, and throughput was flat from
    #: batch 1 to 32 (`benchmarks/bench_export_runtimes.py`)
    max_batch = 4

    def batch_size(self) -> int:
        return max(1, min(super().batch_size(), self.max_batch))

    def _score_batch(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.scorer.score_tensor(x)

    def fit(self, items: Sequence[DatasetItem], ctx: RunContext | None = None) -> None:
        raise ValueError(f"{self.scorer.path}: an exported model scores only; train the original engine")

    def state_tensors(self) -> dict[str, Any]:
        raise ValueError(f"{self.scorer.path}: an exported model is already saved")

    def load_state_tensors(self, tensors: dict[str, Any]) -> None:
        raise ValueError(f"{self.scorer.path}: an exported model is loaded from its file")


def load_for_scoring(path: str | Path, device: str = "auto") -> Engine:
    """The engine that scores with `path`: an exported .onnx / .xml file (CPU) or an app model file."""
    if Path(path).suffix.lower() in EXPORTED_SUFFIXES:
        return ExportedEngine(path)
    return Engine.load(path, device=device)
