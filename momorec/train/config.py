"""Typed config of the train stage (composed into momorec.config.PlatformConfig as `train`).

Optimisation defaults follow the RecBole SASRec setting our benchmark compares against
(Adam, lr 1e-3, batch 256); early stopping watches validation NDCG@10 under full ranking.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from momorec.models.config import ModelConfig
from momorec.typed import StrictModel


class FaultInjection(StrictModel):
    """Chaos testing: kill one Ray Train worker once, to prove resume-from-checkpoint works."""

    kill_rank: int = Field(1, ge=0, description="World rank of the worker that kills itself (SIGKILL).")
    at_epoch: int = Field(1, ge=0, description="It dies at the start of this epoch (0-based), once.")
    marker: str = Field(description="File created just before the kill; while it exists, nobody dies again.")


class TrainConfig(StrictModel):
    """How the recommenders are fit: model, optimisation, early stopping, seeds and launcher."""

    model: ModelConfig = Field(default_factory=ModelConfig, description="Backbone, size, loss and semantic-ID inputs.")
    epochs: int = Field(200, ge=1, description="Most epochs per seed (early stopping usually ends sooner).")
    patience: int = Field(10, ge=1, description="Stop after this many epochs without a better validation NDCG@10.")
    time_budget_min: float | None = Field(
        None, gt=0, description="Stop a seed after the epoch that passes this many minutes (None = no limit)."
    )
    max_steps_per_epoch: int | None = Field(
        None,
        ge=1,
        description="End an epoch after this many steps (None = every batch). For smoke runs and scale benchmarks: "
        "the epoch then sees the first steps x batch_size rows of its seeded order (`train.steps`: how many ran).",
    )
    batch_size: int = Field(256, ge=1, description="Training sequences per step, per worker.")
    eval_batch_size: int = Field(1024, ge=1, description="Users per scoring step in validation.")
    length_bucketing: bool = Field(
        False,
        description="local launcher: batch sequences of similar length together (less padding, faster epochs). "
        "Off by default: on Beauty it cost test NDCG@10 0.0570 -> 0.0502 (benchmarks/results/train_quality.json).",
    )
    learning_rate: float = Field(1e-3, gt=0, description="Adam learning rate.")
    weight_decay: float = Field(0.0, ge=0, description="Adam (L2) weight decay.")
    grad_clip: float | None = Field(None, gt=0, description="Clip the global gradient norm to this (None = off).")
    seeds: list[int] | None = Field(
        None, description="One model per seed (mean +- std in evaluation); None = [the platform seed]."
    )
    launcher: Literal["ray", "local"] = Field(
        "ray", description="ray: Ray Train TorchTrainer (data-parallel); local: the plain epoch loop in this process."
    )
    num_workers: int = Field(2, ge=1, description="Ray Train workers (data-parallel replicas).")
    use_gpu: bool = Field(False, description="One GPU per worker (NCCL); False = CPU workers with gloo.")
    cpus_per_worker: float = Field(1.0, gt=0, description="Logical CPUs Ray reserves per worker.")
    torch_threads: int | None = Field(
        None,
        ge=1,
        description="torch intra-op threads per worker (None = torch's default; set 1 when workers share cores).",
    )
    max_failures: int = Field(
        2, ge=0, description="Ray Train FailureConfig: restarts from the last checkpoint after a worker dies."
    )
    checkpoint_dir: str | None = Field(
        None, description="Where checkpoints go (Ray storage_path); None = <warehouse>/<dataset>/checkpoints."
    )
    resume: bool = Field(
        True,
        description="A train run that did not finish (its driver died) with the same config and inputs is continued: "
        "same MLflow run, each seed from its last checkpoint. False = always a new run.",
    )
    min_train_items: int = Field(
        2, ge=2, description="Users with fewer training items give no (input, next item) pair and are not trained on."
    )
    log_model: bool = Field(True, description="Log the best model of each seed to MLflow (with an input example).")
    registered_model_name: str | None = Field(
        None, description="MLflow registry name for the logged models; None = momorec-<dataset>-<architecture>."
    )
    warm_start: str | None = Field(
        None,
        description="Checkpoint (file or folder, any storage location) or MLflow model (models:/<name>/<version>) "
        "whose best weights initialise every seed's model; tables that grew keep the old rows (the nightly refresh "
        "passes the champion's registered version). None = fresh initialisation.",
    )
    users_since: int | None = Field(
        None,
        description="Train only on the users whose `sequences` row changed since this table version, plus a replay "
        "sample of the others (`replay_ratio`): the nightly refresh passes the version its warm-start model trained "
        "on, so its training costs what the night changed. None = every user.",
    )
    replay_ratio: float = Field(
        4.0,
        ge=0,
        description="With users_since: about this many unchanged users (a stable seeded sample) per changed user are "
        "trained on too, so the warm-started model does not drift towards the night's users.",
    )
    valid_users: int | None = Field(
        None,
        ge=1,
        description="Validation (early stopping and the recorded NDCG@10) and the champion's rescoring at promotion "
        "score a stable seeded sample of about this many users (core.user_selection); None = every user.",
    )
    fault_injection: FaultInjection | None = Field(
        None, description="Testing only: kill a worker once (see FaultInjection)."
    )
