"""Typed config of the evaluate stage (composed into momorec.config.PlatformConfig as `evaluate`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from momorec.typed import StrictModel


class EvaluateConfig(StrictModel):
    """Which trained models to score on the test split, and how."""

    train_run_id: str | None = Field(
        None,
        description="MLflow run id of the train stage whose models (one per seed) are evaluated; None = the latest.",
    )
    protocols: list[Literal["full", "sampled"]] = Field(
        default_factory=lambda: ["full", "sampled"],
        description="full: rank the test item against all items (headline); sampled: against num_negatives unseen "
        "items.",
    )
    ks: list[int] = Field(default_factory=lambda: [5, 10, 20], description="Cut-offs K of HR@K and NDCG@K.")
    num_negatives: int = Field(100, ge=1, description="Negatives per user in the sampled protocol.")
    negative_seed: int | None = Field(None, description="Seed of the sampled negatives; None = the platform seed.")
    batch_size: int = Field(1024, ge=1, description="Users per scoring step.")
    users: int | None = Field(
        None,
        ge=1,
        description="Score a stable seeded sample of about this many users (the metrics are logged with the sample's "
        "share and seed: `evaluate.users_scored`, `evaluate.users_selection`); None = every user, the headline.",
    )
    compare_with: str | None = Field(
        None,
        description="Another train run id: paired t-test and Wilcoxon on per-user test NDCG@10 and HR@10 (mean over "
        "seeds).",
    )
