"""Typed config of the quantize stage: PCA + residual k-means semantic IDs for items and users."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationError, model_serializer, model_validator

from momorec.typed import StrictModel


class EntityQuantizeOverrides(StrictModel):
    """The settings one entity type may set apart from the shared ones: what changes its codes (whitening
    helps items, collapsed a small user sample). Only the keys given override (`null` sets PCA off)."""

    pca_dim: int | None = Field(None, ge=1)
    pca_whiten: bool | None = None
    levels: int | None = Field(None, ge=1, le=16)
    codes: int | list[int] | None = None
    iterations: int | None = Field(None, ge=1)
    balanced: bool | None = None
    balance_slack: float | None = Field(None, ge=1.0)

    @model_serializer(mode="wrap")
    def _only_given(self, handler):  # a dump re-validates to the same keys (an explicit null stays, a gap stays)
        return {k: v for k, v in handler(self).items() if k in self.model_fields_set}


class QuantizeConfig(StrictModel):
    """How embeddings become residual semantic IDs: shared by items and users, except what `per_entity` sets."""

    entities: list[Literal["item", "user"]] = Field(
        default_factory=lambda: ["item", "user"],
        description="Entity types to quantize: item (table item_profiles) and/or user (table user_motivations).",
    )
    mode: Literal["fit", "assign", "auto"] = Field(
        "fit",
        description="fit: refit the codebooks; assign: code everything with the latest frozen codebooks; "
        "auto: assign, and refit only when there is no codebook or drift passes drift_threshold.",
    )
    pca_dim: int | None = Field(
        64, ge=1, description="PCA to this many dimensions before clustering (fit on training entities); None = off."
    )
    pca_whiten: bool = Field(
        False,
        description="Divide each principal component by its standard deviation before clustering, so k-means "
        "weighs every kept direction alike (LLM hidden states put most variance in a few directions). Needs pca_dim "
        "and many more rows than pca_dim (768 users in 128 dims collapsed onto a few codes).",
    )
    pca_max_rows: int | None = Field(
        131_072, ge=2, description="PCA covariance from a seeded sample of at most this many rows (None = all rows)."
    )
    fit_max_rows: int | None = Field(
        131_072,
        ge=1,
        description="Fit projection and codebooks on a seeded sample of at most this many training entities (None = "
        "all); every entity is still coded. Bounds the fit's memory (rows x dim floats; k-means iterates on K x "
        "max_points_per_centroid rows anyway).",
    )
    batch_rows: int = Field(
        65_536, ge=1, description="Embedding rows read and encoded at a time (the stage's memory: one batch)."
    )
    levels: int = Field(3, ge=1, le=16, description="Residual levels L: level l clusters what levels < l left over.")
    codes: int | list[int] = Field(
        256, description="Codes K per level (one int for all levels, or one per level); K must not exceed the fit rows."
    )
    iterations: int = Field(10, ge=1, description="Lloyd iterations per level (faiss's ResidualQuantizer uses 10).")
    init: Literal["kmeans++", "random"] = Field(
        "kmeans++",
        description="Centroid initialisation per level: k-means++ (Arthur & Vassilvitskii 2007) or seeded sample.",
    )
    init_points_per_centroid: int = Field(
        16, ge=1, description="k-means++ runs on a seeded sample of this many points per centroid (bounds its cost)."
    )
    max_points_per_centroid: int | None = Field(
        256,
        ge=1,
        description="Lloyd iterations run on a seeded sample of K x this many rows (faiss's default); every row "
        "is still assigned at the end of a level. None = iterate on all rows.",
    )
    seed: int | None = Field(None, description="Seed of sampling and initialisation; None = the platform seed.")
    balanced: bool = Field(
        False,
        description="Capacity-constrained assignment during the fit, so codes are used evenly (fit members' codes); "
        "new entities still get their nearest codes.",
    )
    balance_slack: float = Field(
        1.1, ge=1.0, description="Balanced mode: a code holds at most ceil(slack x rows / K) rows of a shard."
    )
    unique_items: bool = Field(
        False, description="Append one more level to item IDs: the index of the item among items sharing its codes."
    )
    per_entity: dict[Literal["item", "user"], EntityQuantizeOverrides] = Field(
        default_factory=dict,
        description="Per entity type, the keys that differ from the shared settings, e.g. "
        "{item: {pca_dim: 128, pca_whiten: true}}: items and users, each with settings chosen on validation, in one "
        "config and one run.",
    )
    expected_dim: int | None = Field(
        None,
        ge=1,
        description="Embedding dimension; rows of another length are rejected. None = the most common length.",
    )
    use_ray: Literal["auto", "always", "never"] = Field(
        "auto", description="Shard the fit over Ray actors: always, never, or auto (when fit rows >= ray_min_rows)."
    )
    ray_min_rows: int = Field(200_000, ge=1, description="Row count from which use_ray=auto shards the fit on Ray.")
    num_shards: int = Field(2, ge=1, description="Ray actors the fit rows are split over (each holds one shard).")
    cpus_per_shard: float = Field(1.0, gt=0, description="Logical CPUs each shard actor reserves (its faiss threads).")
    drift_threshold: float = Field(
        1.5,
        gt=0,
        description="Refit when new entities' reconstruction error / the fit-time error exceeds this (mode auto).",
    )

    @model_validator(mode="after")
    def _codes_match_levels(self) -> QuantizeConfig:
        if isinstance(self.codes, list):
            if len(self.codes) != self.levels:
                raise ValueError(f"codes lists {len(self.codes)} sizes but levels is {self.levels}")
            if any(k < 1 for k in self.codes):
                raise ValueError("every per-level code count must be >= 1")
        elif self.codes < 1:
            raise ValueError("codes must be >= 1")
        if not self.entities:
            raise ValueError("entities must name at least one of item, user")
        if self.pca_whiten and self.pca_dim is None:
            raise ValueError("pca_whiten needs PCA: set pca_dim")
        for entity in self.per_entity:
            try:
                self.for_entity(entity)
            except ValidationError as err:
                reasons = "; ".join(e["msg"].removeprefix("Value error, ") for e in err.errors())
                raise ValueError(f"per_entity.{entity}: {reasons}") from None
        return self

    def for_entity(self, entity: str) -> QuantizeConfig:
        """The settings `entity` is quantized with: the shared ones, then its per_entity keys."""
        overrides = self.per_entity.get(entity)  # type: ignore[call-overload]
        if overrides is None or not overrides.model_fields_set:
            return self
        merged = self.model_dump() | overrides.model_dump()
        merged["per_entity"] = {}
        return QuantizeConfig.model_validate(merged)

    def codes_per_level(self) -> list[int]:
        """K of each level, length `levels`."""
        return list(self.codes) if isinstance(self.codes, list) else [self.codes] * self.levels
