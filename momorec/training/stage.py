"""The train stage: fit one model per seed (Ray Train or the plain loop), track it, register it.

Reads `sequences`, `item_ids` (and `semantic_ids` + codebooks when a semantic mode is on); writes
one row per seed to `trained_models`. MLflow: the stage run holds the config and the Delta and
codebook versions; a nested run per seed holds per-epoch `train.loss` and `valid.full.*`, the best
epoch, and the best model (logged with an input example and registered). The test split is never
read here: `momorec evaluate` scores it once.
"""

from __future__ import annotations

import json
import logging
import os
import time

import numpy as np
import pyarrow as pa
import torch
from pydantic import Field
from rich.progress import BarColumn, TextColumn, TimeElapsedColumn

from momorec import tracking
from momorec.config import PlatformConfig
from momorec.evaluation.significance import mean_std
from momorec.progress import progress_bar
from momorec.storage import delta, schemas
from momorec.training.checkpoint import FILE, load_checkpoint, model_from_checkpoint
from momorec.training.data import training_arrays
from momorec.training.loop import TrainState
from momorec.training.runner import TrainingInputs, train_local
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
    tables: dict[str, dict] = Field(default_factory=dict)


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
        }
    )


def _log_model(cfg: PlatformConfig, checkpoint: str, max_len: int) -> tuple[str | None, str | None]:
    """Log the best weights as an MLflow PyTorch model and register it; returns (model uri, version)."""
    import mlflow

    model = model_from_checkpoint(load_checkpoint(checkpoint))
    example = np.zeros((1, 1 + max_len), dtype=np.int64)  # [user_id, history...] left-padded
    example[0, 0], example[0, -1] = 1, 1  # user 1 after item 1
    name = cfg.train.registered_model_name or f"momorec-{cfg.dataset}-{cfg.train.model.architecture}"
    # pickle, not MLflow's default pt2: torch.export cannot trace the data-dependent padding trim
    info = mlflow.pytorch.log_model(
        model,
        name="model",
        input_example=example,
        registered_model_name=name,
        serialization_format="pickle",
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "numpy"],
    )
    mlflow.log_artifact(checkpoint, artifact_path="checkpoint")
    version = getattr(info, "registered_model_version", None)
    return info.model_uri, None if version is None else str(version)


def _train_one(
    cfg: PlatformConfig, inputs: TrainingInputs, seed: int, run_id: str, progress, task
) -> tuple[TrainState, str]:
    if cfg.train.launcher == "ray":
        from momorec.training.distributed import train_with_ray

        progress.update(task, description=f"seed {seed}: Ray Train, {cfg.train.num_workers} workers")
        state, checkpoint = train_with_ray(cfg, seed, run_name=f"{run_id}-seed{seed}")
        progress.update(task, completed=state.epoch)
        return state, checkpoint
    folder = os.path.join(
        cfg.train.checkpoint_dir or os.path.join(cfg.dataset_root, "checkpoints"), run_id, f"seed_{seed}"
    )
    state = train_local(cfg, inputs, seed, folder, on_epoch=lambda s: progress.update(task, completed=s.epoch))
    return state, os.path.join(folder, FILE)


def run_train(cfg: PlatformConfig, show_progress: bool = True) -> TrainResult:
    """Train `cfg.train.model` once per seed; see the module docstring for what is read and written."""
    import mlflow

    start = time.perf_counter()
    train = cfg.train
    seeds = train.seeds or [cfg.seed]
    inputs = TrainingInputs.load(cfg)  # checks the tables before anything starts
    rows_trainable = len(training_arrays(inputs.data, train.model.max_len, train.min_train_items)["user_id"])
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
    with tracking.stage_run(cfg, "train", params={"train": train.model_dump(mode="json")}) as run:
        tracking.log_table_versions(read=read_versions, written={})
        mlflow.log_params({k: str(v) for k, v in semantic_facts.items()})
        mlflow.log_metrics(
            {"users": inputs.data.num_users, "items": inputs.data.num_items, "train_rows": rows_trainable}
        )
        progress = progress_bar(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} epochs"),
            TimeElapsedColumn(),
            show=show_progress,
        )
        with progress:
            for seed in seeds:
                task = progress.add_task(f"seed {seed}", total=train.epochs)
                with mlflow.start_run(run_name=f"seed-{seed}", nested=True, tags={"momorec.seed": str(seed)}) as child:
                    mlflow.log_param("seed", seed)
                    state, checkpoint = _train_one(cfg, inputs, seed, run.info.run_id, progress, task)
                    _log_history(state)
                    model_uri = version = None
                    if train.log_model:
                        model_uri, version = _log_model(cfg, checkpoint, train.model.max_len)
                    models.append(
                        {
                            "train_run_id": run.info.run_id,
                            "seed_run_id": child.info.run_id,
                            "seed": seed,
                            "architecture": train.model.architecture,
                            "model_config": json.dumps(train.model.model_dump(mode="json")),
                            "checkpoint": os.path.abspath(checkpoint),
                            "best_epoch": state.best_epoch,
                            "epochs_run": state.epoch,
                            "valid_ndcg_10": state.best_metric,
                            "model_uri": model_uri,
                            "registered_version": version,
                            "item_codebook_version": semantic_facts.get("semantic.item.version"),
                            "user_codebook_version": semantic_facts.get("semantic.user.version"),
                            "sequences_version": inputs.data.versions.get("sequences"),
                            "created_at": time.time(),
                        }
                    )
        path = cfg.table_path("trained_models")
        table = pa.Table.from_pylist(models, schema=schemas.TRAINED_MODELS)
        written = delta.write(path, table, mode="append" if delta.exists(path) else "overwrite")
        tracking.log_table_versions(read={}, written={"trained_models": written})
        valid = mean_std([{"valid.full.ndcg_10": m["valid_ndcg_10"]} for m in models])
        mlflow.log_metrics({f"{k}.{stat}": v for k, s in valid.items() for stat, v in s.items() if stat != "n"})
        return TrainResult(
            mlflow_run_id=run.info.run_id,
            wall_time_s=time.perf_counter() - start,
            dataset=cfg.dataset,
            architecture=train.model.architecture,
            launcher=train.launcher,
            users=inputs.data.num_users,
            items=inputs.data.num_items,
            train_rows=rows_trainable,
            seeds=seeds,
            models=[
                {k: m[k] for k in ("seed", "seed_run_id", "checkpoint", "best_epoch", "valid_ndcg_10", "model_uri")}
                for m in models
            ],
            valid=valid,
            semantic=semantic_facts,
            tables={"trained_models": {"path": path, "version": written}},
        )
