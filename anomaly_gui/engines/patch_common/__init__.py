"""Shared building blocks of patch-memory models: PatchCore's embeddings, coreset and nearest-neighbour search
(`memory.py`), faiss indexes (`knn.py`) and the ONNX Runtime embedder (`runtime.py`); used by `engines/patchcore` and
`engines/video_common/appearance.py` (engine packages stay independent of each other)."""
