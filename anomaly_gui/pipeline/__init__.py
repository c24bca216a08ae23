"""The run pipeline: one lifecycle for every task above `core` and `engines` (Qt-free).

`train_run` creates a run, fits an engine, scores, stores raw results, chooses the threshold and evaluates;
a small policy per task (`policies`) supplies what differs. The GUI and the CLI start runs through here.
"""
from anomaly_gui.core.protocol import TASK_KINDS
from anomaly_gui.core.run_files import (
    MODEL_FILE,
    SPLIT_FILE,
    has_embeddings,
    load_embeddings,
    load_run_embeddings,
    model_path,
    run_split,
)
from anomaly_gui.pipeline.items import DEFAULT_VAL_FRACTION, TrainFilter, split_train_val, task_items, training_items
from anomaly_gui.pipeline.lifecycle import (
    RunError,
    finalize_run,
    load_run_engine,
    merge_metrics,
    rename_run,
    run_summary,
    score_clip,
    score_run,
    store_clip_run,
    train_run,
)
from anomaly_gui.pipeline.policies import DEFAULT_CONFIDENCE, TaskPolicy, detection_metrics, policy_for, register_policy

__all__ = [
    "DEFAULT_CONFIDENCE", "DEFAULT_VAL_FRACTION", "MODEL_FILE", "SPLIT_FILE", "TASK_KINDS", "RunError", "TaskPolicy",
    "TrainFilter", "detection_metrics", "finalize_run", "has_embeddings", "load_embeddings", "load_run_embeddings",
    "load_run_engine", "merge_metrics", "model_path", "policy_for", "register_policy", "rename_run", "run_split",
    "run_summary", "score_clip", "score_run", "store_clip_run", "split_train_val", "task_items", "train_run", "training_items",
]
