"""What differs per task in a run's life, as one small policy per task (registered, not an if-chain).

A policy supplies the task-specific steps of the one lifecycle in `pipeline.lifecycle`:

- `prepare`: before the split is taken (detection and embedding runs split an unsplit project first);
- `scoring_items`: which items are scored after the fit;
- `calibrate`: the run's threshold and how it was chosen (image score / map vs a detector's confidence);
- `evaluate`: the metrics stored for the run (image/pixel metrics, mAP, novelty AUROC);
- `review_dock`: the id of the dock that shows runs of this task (the GUI raises it when a run ends).

Storing results is the same for every task (`ResultSink`): whatever a typed `ScoreResult` carries goes
where the app reads it (scores + raw maps, model boxes, embeddings).
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np

from anomaly_gui.core.embedding_maps import EmbeddingSet
from anomaly_gui.core.formats.base import DatasetItem
from anomaly_gui.core.project import Project
from anomaly_gui.core.protocol import EngineProtocol, RunContext, ScoreResult, Task
from anomaly_gui.core.run_files import merge_run_embeddings
from anomaly_gui.pipeline.items import task_items

DEFAULT_CONFIDENCE = 0.5  # a detection run's starting confidence cut-off (the Detection dock's slider)


# -- storing results (every task) --------------------------------------------------------------
def _plain(v: Any) -> Any:
    """A JSON-safe copy (numpy scalars and arrays become Python values)."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


def stored_extra(res: ScoreResult, image_size: tuple[int, int] | None) -> dict[str, Any]:
    """The score row's JSON: the engine's diagnostics plus the typed fields readers need back."""
    extra = _plain(dict(res.extra))
    for key, value in (("image_size", image_size), ("frame_scores", res.frame_scores), ("species", res.species),
                       ("box", res.crop_box), ("error", res.error)):
        if value is not None:
            extra[key] = _plain(list(value) if isinstance(value, tuple) else value)
    return extra


def _image_size(project: Project, it: DatasetItem, res: ScoreResult) -> tuple[int, int] | None:
    if res.image_size is not None:
        return res.image_size
    if it.width and it.height:
        return int(it.width), int(it.height)
    if it.kind != "image":
        return None
    from anomaly_gui.core.errors import DataError
    from anomaly_gui.core.imageio import image_size

    try:
        w, h = image_size(it.path)
    except (DataError, OSError):
        return None
    if it.id is not None:
        project.set_item_size(int(it.id), int(w), int(h))
    return int(w), int(h)


class ResultSink:
    """Stores scored batches of one run: scores + raw maps, model boxes (replaced when re-scored), and
    embeddings (written as the run's embedding set when the scoring ends)."""

    def __init__(self, project: Project, run_id: int, engine_name: str):
        self.project, self.run_id, self.engine_name = project, run_id, engine_name
        self._emb: list[tuple[DatasetItem, ScoreResult]] = []

    def add(self, batch: Sequence[DatasetItem], results: Sequence[ScoreResult]) -> None:
        ids, scores, maps, extras = [], [], [], []
        for it, res in zip(batch, results):
            item_id = int(it.id)  # type: ignore[arg-type]
            score = res.score
            if score is None and res.map is not None:
                score = float(np.nanmax(res.map))
            ids.append(item_id)
            scores.append(score)
            maps.append(None if res.map is None else np.asarray(res.map, np.float32))
            extras.append(stored_extra(res, _image_size(self.project, it, res)))
            if res.boxes is not None:
                self.project.replace_model_annotations(item_id, self.run_id, res.boxes)
            if res.embedding is not None:
                self._emb.append((it, res))
        self.project.save_scores(self.run_id, ids, scores, maps, extras)

    def close(self) -> None:
        if not self._emb:
            return
        items, results = zip(*self._emb)
        es = EmbeddingSet(
            item_ids=np.asarray([int(it.id) for it in items], np.int64),  # type: ignore[arg-type]
            embeddings=np.stack([np.asarray(r.embedding, np.float32).ravel() for r in results]),
            labels=[r.species or it.label or "" for it, r in zip(items, results)],
            scores=np.asarray([np.nan if r.score is None else r.score for r in results], np.float32),
            crop_boxes=[r.crop_box for r in results],
            meta={"engine": self.engine_name, "run_id": self.run_id},
        )
        merge_run_embeddings(self.project, self.run_id, es)
        self._emb = []


# -- policies ----------------------------------------------------------------------------------
class TaskPolicy:
    """The image-task behaviour; other tasks override what differs."""

    task: Task = Task.IMAGE
    review_dock = "review"
    #: a project with no split at all gets the original split first (detection / embedding data rarely has one)
    split_if_unsplit = False
    #: without a project split 'val', hold out part of the training items to validate on (else the engine
    #: validates inside its own fit)
    holds_out_validation = True

    def prepare(self, project: Project, ctx: RunContext) -> None:
        """Before the training/validation split is taken."""
        from anomaly_gui.core.splits import apply_original_split

        if self.split_if_unsplit and not any(it.split in ("train", "val", "test") for it in task_items(project, self.task)):
            counts = apply_original_split(project)
            ctx.log({"message": f"original split applied: {counts}"})

    def fit_items(self, train: Sequence[DatasetItem], val: Sequence[DatasetItem]) -> list[DatasetItem]:
        """What the engine's `fit` gets: the training items (validation is scored after the fit)."""
        return list(train)

    def scoring_items(self, project: Project, engine_cls: type[EngineProtocol], train: Sequence[DatasetItem],
                      val: Sequence[DatasetItem]) -> list[DatasetItem]:
        """Validation, then every item the model did not learn from (test, unsplit, and train-split items
        it was not given, e.g. anomalies for a normal-only engine)."""
        used = {it.id for it in train} | {it.id for it in val}
        return list(val) + [it for it in task_items(project, engine_cls.task) if it.id not in used]

    def fit_metrics(self, engine: EngineProtocol) -> dict[str, Any]:
        """Figures the engine learnt in its fit that the run keeps with its metrics."""
        return {}

    def batches(self, items: Sequence[DatasetItem], batch_size: int) -> Iterator[list[DatasetItem]]:
        """The scoring batches: `batch_size` items at a time."""
        for i in range(0, len(items), max(1, int(batch_size))):
            yield list(items[i:i + max(1, int(batch_size))])

    def calibrate(self, project: Project, run_id: int, min_area: float) -> tuple[float, str, str]:
        """(threshold, how it was chosen, on which items: validation / training)."""
        from anomaly_gui.core.run_metrics import choose_threshold_with_source

        return choose_threshold_with_source(project, run_id, min_area)

    def evaluate(self, project: Project, run_id: int, threshold: float, min_area: float) -> dict[str, Any]:
        from anomaly_gui.core.run_metrics import evaluate_run

        return evaluate_run(project, run_id, threshold, min_area)

    def warnings(self, metrics: dict[str, Any], threshold_source: str) -> list[str]:
        """What the run's log should say about its figures (items left out, a threshold not from validation)."""
        from anomaly_gui.core.run_metrics import metric_warnings

        return metric_warnings(metrics, threshold_source)


class VideoPolicy(TaskPolicy):
    """Frames in sequence: frame scores + raw maps, decided and measured like images; shown in the video player."""

    task = Task.VIDEO
    review_dock = "video_player"

    def fit_metrics(self, engine: EngineProtocol) -> dict[str, Any]:
        """The default pixel threshold learnt on the training frames (the player outlines regions above it),
        so a clip shown later is never outlined by a statistic of its own maps; and, for an engine whose training
        frames score lower than unseen normal ones (`unseen_train_scores`), the frame threshold the same rule gives
        on those scores, which the run uses when it has no validation items."""
        from anomaly_gui.core.thresholds import pick_threshold_from_scores

        value = engine.stats.get("pixel_threshold")
        out = {"pixel_threshold": float(value)} if value is not None else {}
        unseen = getattr(engine, "unseen_train_scores", None)
        if unseen is not None and len(unseen):  # the frame threshold without validation items (`frame_threshold`)
            out["frame_threshold_training"] = pick_threshold_from_scores(np.asarray(unseen, np.float64)).threshold
        return out

    def batches(self, items: Sequence[DatasetItem], batch_size: int) -> Iterator[list[DatasetItem]]:
        """One clip at a time, whole: frame scores are normalised over their clip and windows span frames."""
        clips: dict[tuple[str, str], list[DatasetItem]] = {}
        for it in items:
            clips.setdefault((it.group, it.path if it.kind == "video" else ""), []).append(it)
        for clip in clips.values():
            yield sorted(clip, key=lambda it: it.frame_index or 0)

    def evaluate(self, project: Project, run_id: int, threshold: float, min_area: float) -> dict[str, Any]:
        """As for images, plus the frame AUCs of `anomaly-gui evaluate`: `frame_auc` on the frame errors
        normalised per clip (Hasan et al.), `frame_auc_raw` on the raw errors, test frames pooled."""
        from anomaly_gui.core.run_metrics import frame_threshold

        out = super().evaluate(project, run_id, threshold, min_area)
        out.update(frame_aucs(project, run_id))
        try:  # the threshold of the frame scores, which the video player flags frames with
            out["frame_threshold"], out["frame_threshold_method"], _ = frame_threshold(project, run_id)
        except ValueError:
            pass
        if out.get("frame_auc") is None and out.get("image_auroc") is not None:
            out["frame_auc"] = out["image_auroc"]  # an engine without frame errors: its frame scores
        return out


def frame_aucs(project: Project, run_id: int) -> dict[str, Any]:
    """frame_auc / frame_auc_raw of a video run from its stored frame errors (empty when it has none)."""
    from anomaly_gui.core.metrics.video import frame_auc
    from anomaly_gui.core.run_metrics import test_item_ids
    from anomaly_gui.core.metrics.video import per_clip_minmax

    scored = project.scores(run_id)
    clips: dict[str, list[DatasetItem]] = {}
    for it in project.items(ids=test_item_ids(project, run_id)):
        if it.kind == "frame" and "frame_error" in scored[int(it.id)].extra:  # type: ignore[arg-type]
            clips.setdefault(it.group, []).append(it)
    ys, norm, raw = [], [], []
    for frames in clips.values():
        frames.sort(key=lambda it: it.frame_index or 0)
        errors = np.asarray([float(scored[int(it.id)].extra["frame_error"]) for it in frames])  # type: ignore[arg-type]
        use = np.asarray([it.is_anomalous is not None for it in frames]) & np.isfinite(errors)
        if not use.any():
            continue
        ys.append(np.asarray([bool(it.is_anomalous) for it in frames])[use])
        norm.append(per_clip_minmax(errors)[use])  # over the whole clip, as `evaluate` does
        raw.append(errors[use])
    if not ys:
        return {}
    return {"frame_auc": frame_auc(ys, norm), "frame_auc_raw": frame_auc(ys, raw)}


class DetectionPolicy(TaskPolicy):
    """Boxes with a confidence: the threshold is a confidence cut-off (the Detection dock's slider), the
    metric mAP on the test items."""

    task = Task.DETECTION
    review_dock = "detection"
    split_if_unsplit = True
    holds_out_validation = False

    def fit_items(self, train: Sequence[DatasetItem], val: Sequence[DatasetItem]) -> list[DatasetItem]:
        """A detector validates (mAP per epoch, best epoch) inside its own fit: it gets the validation items
        too, marked by their split, as `anomaly-gui evaluate` gives them."""
        return list(train) + list(val)

    def scoring_items(self, project: Project, engine_cls: type[EngineProtocol], train: Sequence[DatasetItem],
                      val: Sequence[DatasetItem]) -> list[DatasetItem]:
        return [it for it in task_items(project, self.task) if it.split != "train"]

    def calibrate(self, project: Project, run_id: int, min_area: float) -> tuple[float, str, str]:
        return DEFAULT_CONFIDENCE, "default confidence cut-off", "default"

    def evaluate(self, project: Project, run_id: int, threshold: float, min_area: float) -> dict[str, Any]:
        return detection_metrics(project, run_id)


def detection_metrics(project: Project, run_id: int) -> dict[str, Any]:
    """mAP of a detection run on the project's test items (their imported/user boxes against the run's model
    boxes, every confidence) and the model's classes. Without test items: the classes only."""
    from anomaly_gui.core.detection_export import run_classes
    from anomaly_gui.core.metrics.detection import map_from_items

    tests = [it for it in project.items(split="test", with_annotations=True) if it.kind in ("image", "frame")]
    values: dict[str, Any] = {}
    classes = run_classes(project, run_id)
    if classes:
        values["classes"] = sorted(classes)
    if tests:
        preds = [project.annotations(int(it.id), source="model", run_id=run_id) for it in tests]  # type: ignore[arg-type]
        res = map_from_items(tests, preds)
        values.update({"map50": res.map50, "map50_95": res.map50_95, "n_test": len(tests), "map_per_class": res.per_class})
    return values


class EmbeddingPolicy(TaskPolicy):
    """Crops -> embeddings -> novelty score: every item is embedded (the Cluster view maps them all),
    the metrics are measured on the items the model was neither fitted nor validated on."""

    task = Task.EMBEDDING
    review_dock = "cluster_view"
    split_if_unsplit = True

    def fit_metrics(self, engine: EngineProtocol) -> dict[str, Any]:
        """Which encoder the engine kept (pretrained / fine-tuned), the validation figure that chose it, the
        colour handling, how photos without boxes were cropped (activation-map animal crops or whole), the scorer,
        and the setting chosen per fit with every candidate's validation figure (`selection`)."""
        keys = ("encoder", "pseudo_novelty_auroc", "colour", "animal_crop", "cam_boxes", "infrared_whole", "scorer", "features", "selection")
        return {k: engine.stats[k] for k in keys if engine.stats.get(k) is not None}

    def scoring_items(self, project: Project, engine_cls: type[EngineProtocol], train: Sequence[DatasetItem],
                      val: Sequence[DatasetItem]) -> list[DatasetItem]:
        first = list(val) + list(train)
        seen = {it.id for it in first}
        return first + [it for it in task_items(project, self.task) if it.id not in seen]

    def calibrate(self, project: Project, run_id: int, min_area: float) -> tuple[float, str, str]:
        """As for images; when no validation item is labelled (camera traps usually are not), the held-out
        training crops count as normal, since the one-class model learns them as normal."""
        try:
            return super().calibrate(project, run_id, min_area)
        except ValueError:
            from anomaly_gui.core.run_files import run_split
            from anomaly_gui.core.run_metrics import critical_values, threshold_from_values

            split = run_split(project, run_id)
            ids = split["val"] or split["train"]
            values = critical_values(project, run_id, ids, min_area)
            t, how = threshold_from_values(values, np.zeros(len(ids), np.int64))
            return t, f"{how} (unlabelled crops taken as normal)", "validation" if split["val"] else "training"

    def evaluate(self, project: Project, run_id: int, threshold: float, min_area: float) -> dict[str, Any]:
        out = super().evaluate(project, run_id, threshold, min_area)
        if out.get("image_auroc") is not None:  # anomalous = unknown animal: the AUROC of the novelty score
            out["novelty_auroc"] = out["image_auroc"]
        return out


_POLICIES: dict[Task, TaskPolicy] = {}


def register_policy(policy: TaskPolicy) -> TaskPolicy:
    _POLICIES[policy.task] = policy
    return policy


for _p in (TaskPolicy(), VideoPolicy(), DetectionPolicy(), EmbeddingPolicy()):
    register_policy(_p)


def policy_for(task: Task | str) -> TaskPolicy:
    """The policy of a task (`Task` or its value)."""
    return _POLICIES[Task(task)]
