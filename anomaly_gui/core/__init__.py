"""Qt-free core: data formats, project store, post-processing, metrics, reports."""
