"""Typed config of the recommend stage."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from momorec.typed import StrictModel


class RecommendConfig(StrictModel):
    top_k: int = Field(10, ge=1, le=1000, description="Items recommended per user.")
    batch_size: int = Field(512, ge=1, description="Users scored per forward pass (and rows per written batch).")
    join_bucket_users: int = Field(
        100_000,
        ge=1,
        description="Users per bucket of the join that adds motivations and codes (spilled to local disk): "
        "bounds that join's memory (momorec.recommend.explain).",
    )
    model: Literal["champion", "latest"] = Field(
        "champion",
        description="champion: the registry's @champion version (the latest train run's best seed while none is set); "
        "latest: the latest train run's best seed.",
    )
    train_run_id: str | None = Field(None, description="Train run whose best seed to use (overrides `model`).")
    exclude_seen: bool = Field(True, description="Never recommend an item the user already interacted with.")
    users: Literal["all", "changed"] = Field(
        "all",
        description="all: score every user and rewrite the table; changed: when the table was last written by the "
        "same model with the same settings, score only the users whose rows would change (their history, "
        "motivation or semantic ID, or the semantic ID of an item recommended to them) and MERGE their rows "
        "(momorec.recommend.stale); otherwise every user. The nightly refresh uses changed.",
    )
    max_changed_share: float = Field(
        0.25,
        gt=0,
        le=1,
        description="With users: changed, rewrite the whole table instead when more than this share of the users "
        "changed (a MERGE rewrites the files it touches: past a share it costs what a rewrite does).",
    )
