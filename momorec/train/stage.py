"""The train stage: fit one model per seed (Ray Train or the plain loop), track it, register it.

Reads `sequences`, `item_ids` (and `semantic_ids` + codebooks when a semantic mode is on); writes
one row per seed to `trained_models`. MLflow: the stage run holds the config and the Delta and
codebook versions; a nested run per seed holds per-epoch `train.loss` and `valid.full.*`, the best
epoch, and the best model (an MLflow pyfunc over the checkpoint, `logged_model`, registered). The
test split is never read here: `momorec evaluate` scores it once.

Checkpoints go to `train.checkpoint_dir` (default <dataset_root>/checkpoints, any storage location)
under the stage run's id. A driver that dies mid-run is resumed by running the same command again:
the unfinished train run with the same config and inputs (tag `momorec.train.resume_key`) is
continued, not replaced; each seed picks up from its last checkpoint (local: the seed's folder;
Ray: the Ray Train run of the same name), and a seed that had finished keeps its logged model.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Iterator

import pyarrow as pa
from pydantic import Field

from momorec import tracking
from momorec.config import PlatformConfig
from momorec.core.checkpoint import FILE, TrainState, write_checkpoint
from momorec.core.logged_model import log_recommender, registered_checkpoint, registered_name
from momorec.core.sequences import ALL_USERS, scan_sequences
from momorec.core.significance import mean_std
from momorec.core.stage_run import StageRun, stage_run
from momorec.storage import delta, objectstore, schemas
from momorec.train.runner import TrainingInputs, UserSelections, checkpoint_root, train_local, user_selections
from momorec.typed import StageResult

log = logging.getLogger(__name__)


class TrainResult(StageResult):
    stage: str = "train"
    dataset: str
    architecture: str
    launcher: str
    users: int = 0
    items: int = 0
    train_rows: int = Field(0, description="Sequences with at least min_train_items training items.")
    seeds: list[int] = Field(default_factory=list)
    models: list[dict] = Field(
        default_factory=list, description="Per seed: run id, checkpoint, best epoch, valid NDCG@10."
    )
    valid: dict[str, dict[str, float]] = Field(default_factory=dict, description="valid.full.* mean/std over seeds.")
    semantic: dict[str, object] = Field(default_factory=dict, description="Codebook versions, missing-ID counts.")
    users_selected: dict[str, object] = Field(
        default_factory=dict,
        description="Whom it trained and validated on (all, or a stable sample plus the changed users) and how many "
        "users' sequences changed since train.users_since.",
    )
    tables: dict[str, dict] = Field(default_factory=dict)
    resumed: bool = Field(False, description="This call continued an unfinished train run (same MLflow run).")


RESUME_TAG = "momorec.train.resume_key"
ROW_TAG = "momorec.trained_model"  # a finished seed's trained_models row, reused when its run is resumed


def _log_history(state: TrainState) -> None:
    import mlflow

    for record in state.history:
        step = int(record["epoch"])
        mlflow.log_metrics({k: float(v) for k, v in record.items() if k != "epoch"}, step=step)
    mlflow.log_metrics(
        {
            "best_epoch": state.best_epoch,
            "best.valid.full.ndcg_10": state.best_metric,
            "epochs_run": state.epoch,
            "stopped_early": float(state.stopped_early),
            "resumes": float(len(state.resumed_at)),
            **{name: float(count) for name, count in state.warm_start.items()},
        }
    )


def _resume_key(cfg: PlatformConfig, read_versions: dict, semantic_facts: dict) -> str:
    """What makes two train runs the same run: dataset, warehouse, seed, train config and input versions."""
    identity = {
        "dataset": cfg.dataset,
        "warehouse": cfg.warehouse,
        "seed": cfg.seed,
        "train": cfg.train.model_dump(mode="json"),
        "read": read_versions,
        "semantic": semantic_facts,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _unfinished_run(cfg: PlatformConfig, key: str) -> str | None:
    """The newest train run with this resume key that never finished (its driver died or it failed)."""
    import mlflow

    tracking.configure(cfg.tracking)
    experiment = mlflow.get_experiment_by_name(cfg.tracking.experiment)
    runs = mlflow.MlflowClient().search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{RESUME_TAG}` = '{key}' and attributes.status != 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


@contextlib.contextmanager
def _train_run(cfg: PlatformConfig, key: str, show_progress: bool, started: float) -> Iterator[tuple[StageRun, bool]]:
    """The stage run: the unfinished one with this key when `train.resume`, else a new one; (run, resumed)."""
    import mlflow

    previous = _unfinished_run(cfg, key) if cfg.train.resume else None
    if previous is not None:
        log.warning("resuming train run %s (same config and inputs, it did not finish)", previous)
    params = {"train": cfg.train.model_dump(mode="json")}
    with stage_run(cfg, "train", params, show_progress=show_progress, run_id=previous, started=started) as stage:
        mlflow.set_tag(RESUME_TAG, key)
        yield stage, previous is not None


def _seed_runs(parent_run_id: str) -> dict[int, object]:
    """The seed runs already under a (resumed) train run, by seed."""
    import mlflow

    parent = mlflow.get_run(parent_run_id)
    runs = mlflow.MlflowClient().search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
        order_by=["attributes.start_time ASC"],
    )
    return {int(r.data.tags["momorec.seed"]): r for r in runs if "momorec.seed" in r.data.tags}


def _resolved_warm_start(cfg: PlatformConfig, run_id: str) -> PlatformConfig:
    """A registered model to warm-start from (models:/...) becomes a checkpoint file in this run's
    storage, which every Ray worker can read without asking MLflow."""
    source = cfg.train.warm_start
    if not source or not source.startswith("models:/"):
        return cfg
    location = objectstore.join(checkpoint_root(cfg), run_id, "warm_start", FILE)
    write_checkpoint(location, registered_checkpoint(cfg, source))
    log.info("warm start from %s (copied to %s)", source, location)
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"warm_start": location})})


def _train_one(
    cfg: PlatformConfig, inputs: TrainingInputs, selections: UserSelections, seed: int, run_id: str, progress, task
) -> tuple[TrainState, str]:
    if cfg.train.launcher == "ray":
        from momorec.train.distributed import train_with_ray

        progress.update(task, description=f"seed {seed}: Ray Train, {cfg.train.num_workers} workers")
        state, checkpoint = train_with_ray(cfg, seed, run_name=f"{run_id}-seed{seed}", selections=selections)
        progress.update(task, completed=state.epoch)
        return state, checkpoint
    folder = objectstore.join(checkpoint_root(cfg), run_id, f"seed_{seed}")
    state = train_local(
        cfg, inputs, seed, folder, on_epoch=lambda s: progress.update(task, completed=s.epoch), selections=selections
    )
    return state, objectstore.join(folder, FILE)


def run_train(cfg: PlatformConfig, show_progress: bool = True) -> TrainResult:
    """Train `cfg.train.model` once per seed; see the module docstring for what is read and written."""
    import mlflow

    start = time.perf_counter()
    train = cfg.train
    seeds = train.seeds or [cfg.seed]
    # checks the tables before anything starts; Ray Train's workers read the users, its driver none of them
    facts = scan_sequences(cfg.table_path("sequences"), cfg.table_path("item_ids"), train.min_train_items)
    selections = user_selections(cfg, facts.users)
    users = None if train.launcher == "ray" else ALL_USERS
    inputs = TrainingInputs.load(cfg, users, selections.either, facts=facts)
    rows_trainable = inputs.facts["train_rows"]
    if not rows_trainable:
        raise ValueError(f"empty training set: no user has {train.min_train_items} or more training items")
    semantic_facts = {k: v for k, v in inputs.facts.items() if k.startswith("semantic.")}
    read_versions = {
        "sequences": inputs.data.versions.get("sequences"),
        "item_ids": inputs.data.versions.get("item_ids"),
    }
    if "semantic.item.table_version" in inputs.facts or "semantic.user.table_version" in inputs.facts:
        read_versions["semantic_ids"] = inputs.facts.get(
            "semantic.item.table_version", inputs.facts.get("semantic.user.table_version")
        )

    models: list[dict] = []
    key = _resume_key(cfg, read_versions, semantic_facts)
    with _train_run(cfg, key, show_progress, start) as (stage, resumed):
        run_id = stage.run_id
        stage.read(read_versions)
        mlflow.log_params({k: str(v) for k, v in (semantic_facts | selections.facts()).items()})
        mlflow.log_metrics(
            {"users": inputs.facts["users"], "items": inputs.data.num_items, "train_rows": rows_trainable}
        )
        earlier = _seed_runs(run_id) if resumed else {}
        seed_cfg = _resolved_warm_start(cfg, run_id)
        progress = stage.progress
        for seed in seeds:
            task = stage.task(f"seed {seed}: epochs", total=train.epochs)
            previous = earlier.get(seed)
            if previous is not None and previous.info.status == "FINISHED" and ROW_TAG in previous.data.tags:
                log.info("seed %d finished before the restart: its model is kept", seed)
                models.append(json.loads(previous.data.tags[ROW_TAG]))
                progress.update(task, completed=train.epochs)
                continue
            with mlflow.start_run(
                run_id=None if previous is None else previous.info.run_id,
                run_name=f"seed-{seed}",
                nested=True,
                tags={"momorec.seed": str(seed)},
            ) as child:
                mlflow.log_param("seed", seed)
                state, checkpoint = _train_one(seed_cfg, inputs, selections, seed, run_id, progress, task)
                _log_history(state)
                model_uri = version = None
                if train.log_model:
                    model_uri, version = log_recommender(checkpoint, registered_name(cfg))
                row = {
                    "train_run_id": run_id,
                    "seed_run_id": child.info.run_id,
                    "seed": seed,
                    "architecture": train.model.architecture,
                    "model_config": json.dumps(train.model.model_dump(mode="json")),
                    "checkpoint": checkpoint,
                    "best_epoch": state.best_epoch,
                    "epochs_run": state.epoch,
                    "valid_ndcg_10": state.best_metric,
                    "model_uri": model_uri,
                    "registered_version": version,
                    "item_codebook_version": semantic_facts.get("semantic.item.version"),
                    "user_codebook_version": semantic_facts.get("semantic.user.version"),
                    "sequences_version": inputs.data.versions.get("sequences"),
                    "created_at": time.time(),
                    "valid_users": selections.valid.label(),
                }
                mlflow.set_tag(ROW_TAG, json.dumps(row))
                models.append(row)
        path = cfg.table_path("trained_models")
        table = pa.Table.from_pylist(models, schema=schemas.TRAINED_MODELS)
        # keyed: a resumed run whose first driver had already written its rows adds none twice
        # merge_schema: a table written before the valid_users column gains it (its old rows read as null: all users)
        written, _ = delta.merge_insert(path, table, keys=["train_run_id", "seed"], merge_schema=True)
        stage.wrote("trained_models", written)
        valid = mean_std([{"valid.full.ndcg_10": m["valid_ndcg_10"]} for m in models])
        mlflow.log_metrics({f"{k}.{stat}": v for k, s in valid.items() for stat, v in s.items() if stat != "n"})
        return TrainResult(
            **stage.result_fields(),
            resumed=resumed,
            dataset=cfg.dataset,
            architecture=train.model.architecture,
            launcher=train.launcher,
            users=inputs.facts["users"],
            items=inputs.data.num_items,
            train_rows=rows_trainable,
            seeds=seeds,
            models=[
                {k: m[k] for k in ("seed", "seed_run_id", "checkpoint", "best_epoch", "valid_ndcg_10", "model_uri")}
                for m in models
            ],
            valid=valid,
            semantic=semantic_facts,
            users_selected=selections.facts(),
            tables={"trained_models": {"path": path, "version": written}},
        )
