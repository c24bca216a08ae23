"""Work behind the cluster view, run in worker threads (`gui.workers.start_job`): no Qt here.

- `embed_project_job`: an embedding run through the run pipeline (`pipeline.train_run`: fit, embed every
  item, store scores + the embedding set, threshold, metrics), the same path as one from the Train panel.
- `map_job`: t-SNE / PCA of an embedding set with its k-distance curve and DBSCAN clustering.
"""
from __future__ import annotations

from typing import Any

from anomaly_gui.core.embedding_maps import ClusterMap, EmbeddingSet, compute_cluster_map
from anomaly_gui.core.errors import DataError
from anomaly_gui.core.project import Project, Run
from anomaly_gui.core.protocol import RunContext, Task
from anomaly_gui.core.run_files import has_embeddings, load_run_embeddings as _load
from anomaly_gui.pipeline import train_run


def embedding_runs(project: Project) -> list[Run]:
    """Runs of the project whose embeddings are stored, whoever started them (newest first)."""
    out = [r for r in project.runs(task=Task.EMBEDDING.value) if has_embeddings(project, r.id)]
    return sorted(out, key=lambda r: -r.id)


def load_run_embeddings(project: Project, run_id: int) -> EmbeddingSet:
    es = _load(project, run_id)
    if es is None:
        raise DataError(project.run_dir(run_id), f"run {run_id} stored no embeddings")
    return es


def embed_project_job(ctx: RunContext, project: Project, engine_name: str, params: dict[str, Any],
                      device: str = "auto") -> tuple[int, EmbeddingSet]:
    """Fit `engine_name` on the project's items, embed them all, store the run. Returns (run id, set)."""
    run_id = train_run(project, engine_name, params, device=device, ctx=ctx)
    return run_id, load_run_embeddings(project, run_id)


def map_job(ctx: RunContext, es: EmbeddingSet, method: str, min_samples: int, perplexity: float = 30.0) -> ClusterMap:
    ctx.progress(0, 1, f"{method.upper()} of {len(es)} points")
    out = compute_cluster_map(es, method=method, min_samples=min_samples, perplexity=perplexity, check=ctx.check)
    ctx.progress(1, 1, "map ready")
    return out
