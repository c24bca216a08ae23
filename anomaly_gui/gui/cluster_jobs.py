"""Work behind the cluster view, run in worker threads (`gui.workers.start_job`): no Qt here.

- `embed_project_job`: fit an embedding engine on the project's items (train split when there is
  one), score every item, and store it all as an embedding run (scores, embeddings, model file).
- `map_job`: t-SNE / PCA of an embedding set with its k-distance curve and DBSCAN clustering.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from anomaly_gui.core.embedding_maps import ClusterMap, EmbeddingSet, compute_cluster_map, load_embedding_set, save_embedding_set
from anomaly_gui.core.project import Project
from anomaly_gui.engines.base import RunContext, Task, get_engine, params_to_dict

EMBEDDINGS_DIR = "embeddings"


def run_embedding_folder(project: Project, run_id: int):
    return project.run_dir(run_id) / EMBEDDINGS_DIR


def embedding_runs(project: Project) -> list[Any]:
    """Runs of the project whose embeddings are stored (newest first)."""
    out = [r for r in project.runs(task=Task.EMBEDDING.value) if (run_embedding_folder(project, r.id) / "embeddings.npy").is_file()]
    return sorted(out, key=lambda r: -r.id)


def load_run_embeddings(project: Project, run_id: int) -> EmbeddingSet:
    return load_embedding_set(run_embedding_folder(project, run_id))


def embed_project_job(ctx: RunContext, project: Project, engine_name: str, params: dict[str, Any],
                      device: str = "auto") -> tuple[int, EmbeddingSet]:
    """Fit `engine_name` on the project's items, score them all, store the run. Returns (run id, set)."""
    items = project.items(kind="image", with_annotations=True)
    if not items:
        raise ValueError("the project holds no images to embed")
    train = [it for it in items if it.split == "train"] or items
    engine = get_engine(engine_name)(params=dict(params), device=device)
    run = project.create_run(engine.name, Task.EMBEDDING.value, params_to_dict(engine.params), name="")
    project.update_run(run.id, status="running")
    try:
        def log(entry: dict[str, Any]) -> None:
            project.append_run_log(run.id, entry)
            ctx.log(entry)

        sub = RunContext(progress=ctx.progress, is_cancelled=ctx.is_cancelled, log=log)
        engine.fit(train, sub)
        results = engine.score(items, sub)
        ok = [k for k, r in enumerate(results) if r.embedding is not None]
        if not ok:
            raise ValueError("no item could be embedded (see the problems in the log)")
        ids = np.array([items[k].id for k in ok], np.int64)
        project.save_scores(run.id, [int(items[k].id) for k in range(len(items))],  # type: ignore[arg-type]
                            [r.score for r in results], extras=[_json_extra(r.extra) for r in results])
        es = EmbeddingSet(
            item_ids=ids, embeddings=np.stack([results[k].embedding for k in ok]).astype(np.float32),
            labels=[results[k].extra.get("species", "") or items[k].label for k in ok],
            scores=np.array([results[k].score for k in ok], np.float32),
            crop_boxes=[results[k].extra.get("box") for k in ok],
            meta={"engine": engine.name, "run_id": run.id},
        )
        save_embedding_set(run_embedding_folder(project, run.id), es)
        model_path = engine.save(project.run_dir(run.id) / "model.agm")
        metrics = {"n_train": len(train), "n_items": len(items), "n_embedded": len(ok),
                   "n_anomalies": int(sum(bool(r.extra.get("is_anomaly")) for r in results)),
                   "fit_seconds": engine.stats.get("fit_seconds"),
                   # which encoder the engine kept (pretrained / fine-tuned) and its validation figure
                   "encoder": engine.stats.get("encoder"), "pseudo_novelty_auroc": engine.stats.get("pseudo_novelty_auroc")}
        project.update_run(run.id, status="done", finished=time.time(), metrics=metrics, model_dir=str(model_path),
                           threshold=float(engine.stats.get("threshold", 0.0)))
    except BaseException:
        project.update_run(run.id, status="failed", finished=time.time())
        raise
    return run.id, es


def map_job(ctx: RunContext, es: EmbeddingSet, method: str, min_samples: int, perplexity: float = 30.0) -> ClusterMap:
    ctx.progress(0, 1, f"{method.upper()} of {len(es)} points")
    out = compute_cluster_map(es, method=method, min_samples=min_samples, perplexity=perplexity, check=ctx.check)
    ctx.progress(1, 1, "map ready")
    return out


def _json_extra(extra: dict[str, Any]) -> dict[str, Any]:
    """Score extras without numpy types (stored as JSON in the project)."""
    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, (np.floating, np.integer, np.bool_)):
            return v.item()
        return v

    return clean(extra)
