"""Typed config of the recommend stage."""

from __future__ import annotations

from pydantic import Field

from momorec.typed import StrictModel


class RecommendConfig(StrictModel):
    top_k: int = Field(10, ge=1, le=1000, description="Items recommended per user.")
    batch_size: int = Field(512, ge=1, description="Users scored per forward pass.")
    train_run_id: str | None = Field(None, description="Train run whose models to use; None = the latest one.")
    exclude_seen: bool = Field(True, description="Never recommend an item the user already interacted with.")
