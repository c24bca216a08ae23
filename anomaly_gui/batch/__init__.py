"""Batch scoring past one machine: INPUT -> Parquet shards, in this process or on Ray.

Qt-free; imports core and engines only. `score_batch` is the entry point (`anomaly-gui score` calls it);
`import_results` brings an output folder back into a project as a run. Ray and pyarrow come with the
optional extra `scale` and are imported only when used.
"""
from anomaly_gui.batch.job import plan_units, score_batch
from anomaly_gui.batch.shards import BatchError

__all__ = ["BatchError", "plan_units", "score_batch"]
