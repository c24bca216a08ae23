"""Dataset formats: detection of a folder's layout, readers (and writers where a format is exported)."""
from anomaly_gui.core.formats.base import (
    Annotation,
    DatasetItem,
    FormatReader,
    ImportResult,
    detect_format,
    import_dataset,
    list_formats,
    register_format,
)

__all__ = [
    "Annotation",
    "DatasetItem",
    "FormatReader",
    "ImportResult",
    "detect_format",
    "import_dataset",
    "list_formats",
    "register_format",
]
