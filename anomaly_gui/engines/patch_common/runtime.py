"""The patch-embedding network (backbone + PatchCore's pooling) run by ONNX Runtime on the CPU.

On this project's 2-core machine ONNX Runtime runs MobileNetV2 ``features[:14]`` plus the embedding about
3-4x faster than torch eager (fused convolution + batch norm + activation, no per-op dispatch; measured in
``benchmarks/bench_patchcore_vs_anomalib.py``), with the same values to ~1e-5. The module is exported
in memory (``torch.onnx.export``, a few seconds, once per model and input size) and never written to disk.
"""
from __future__ import annotations

import io
import logging
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "torch", "onnxruntime")


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def export_onnx_bytes(module: nn.Module, example: torch.Tensor, input_names: list[str], output_names: list[str],
                      dynamic_axes: dict[str, dict[int, str]]) -> bytes:
    """`module` traced on `example` and exported to ONNX (opset 17), as bytes."""
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python branches
        torch.onnx.export(module.eval(), (example,), buf, input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=17, dynamo=False)
    return buf.getvalue()


def make_session(model: bytes | str, threads: int | None = None) -> Any:
    """A CPU InferenceSession with all graph optimisations and `threads` intra-op threads (default: torch's)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = max(1, threads or torch.get_num_threads())
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy-waiting threads left burning a shared CPU
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


class OnnxEmbedder:
    """Callable (N, 3, H, W) float tensor -> (N, D, h, w) embeddings, computed by ONNX Runtime."""

    def __init__(self, embed_module: nn.Module) -> None:
        self.module = embed_module
        self.sessions: dict[tuple[int, int], Any] = {}

    def session(self, h: int, w: int) -> Any:
        key = (h, w)
        if key not in self.sessions:
            example = torch.zeros(1, 3, h, w)
            blob = export_onnx_bytes(self.module, example, ["images"], ["embeddings"], {"images": {0: "batch"},
                                                                                        "embeddings": {0: "batch"}})
            self.sessions[key] = make_session(blob)
        return self.sessions[key]

    #: images per ONNX Runtime call: MobileNetV2's early activations of one 256 px image (~2 MB a layer) stay
    #: in the CPU cache, a batch's do not; measured 68 ms/img at 1 vs 113 ms/img at 8 (loaded 2-core machine)
    micro_batch = 1

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        sess = self.session(int(x.shape[2]), int(x.shape[3]))
        xn = np.ascontiguousarray(x.detach().cpu().float().numpy())
        step = max(1, self.micro_batch)
        outs = [sess.run(None, {"images": xn[i : i + step]})[0] for i in range(0, len(xn), step)]
        return torch.from_numpy(outs[0] if len(outs) == 1 else np.concatenate(outs))
