"""Moved to `anomaly_gui.engines.patch_common.knn` (decision 0036); this name stays for existing imports."""
from anomaly_gui.engines.patch_common.knn import INDEX_KINDS, BankIndex, faiss_available  # noqa: F401
