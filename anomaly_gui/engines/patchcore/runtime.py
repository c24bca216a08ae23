"""Moved to `anomaly_gui.engines.patch_common.runtime` (decision 0036); this name stays for existing imports."""
from anomaly_gui.engines.patch_common.runtime import (  # noqa: F401
    RUNTIMES,
    OnnxEmbedder,
    export_onnx_bytes,
    make_session,
    onnxruntime_available,
)
