"""Typed config of the ingest stage: where the behaviour logs and the catalog come from."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from momorec.typed import StrictModel


class EventSource(StrictModel):
    """One input of user behaviour: an event log or a pre-ordered sequence file."""

    path: str = Field(description="File, folder or glob. Relative paths resolve against the config file's folder.")
    kind: Literal["events", "sequences"] = Field(
        "events", description="events: one event per row; sequences: `user item item ...` per line, oldest first."
    )
    format: Literal["auto", "csv", "tsv", "parquet", "jsonl", "recbole"] = Field(
        "auto", description="auto picks by extension (.csv .tsv .parquet .jsonl/.json .inter); ignored for sequences."
    )
    user_col: str = Field("user", description="Column holding the user id (recbole: the name before ':').")
    item_col: str = Field("item", description="Column holding the item id.")
    timestamp_col: str | None = Field("timestamp", description="Event time (unix seconds or ISO); None = file order.")
    rating_col: str | None = Field(None, description="Optional explicit rating column.")
    event_type_col: str | None = Field(None, description="Optional event type column (view, cart, purchase ...).")
    min_rating: float | None = Field(None, description="Keep only events whose rating is >= this (implicit feedback).")


class CatalogSource(StrictModel):
    """The item catalog: one row per item with whatever text fields exist."""

    path: str = Field(description="JSONL (one object per line) or a RecBole .item file.")
    format: Literal["auto", "jsonl", "recbole"] = Field("auto", description="auto: .item -> recbole, else jsonl.")
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Map of our field -> source column, e.g. {title: movie_title, categories: class}.",
    )


class IngestConfig(StrictModel):
    """Validation, cleaning and splitting rules of ingest."""

    sources: list[EventSource] = Field(default_factory=list, description="Behaviour inputs, read in this order.")
    catalog: CatalogSource | None = Field(None, description="Item text; items missing from it get an empty profile.")
    kcore: int = Field(0, ge=0, description="Iterative k-core on users and items (0 = off; Beauty is already 5-core).")
    min_user_events: int = Field(
        3, ge=3, description="Users with fewer events are rejected: leave-one-out needs train, valid and test."
    )
    max_text_chars: int = Field(
        2000, ge=16, description="Catalog text longer than this is truncated (and counted) so prompts stay bounded."
    )
    staging_dir: str | None = Field(None, description="Scratch folder for Spark output; default <warehouse>/_staging.")
    min_timestamp: float = Field(
        631_152_000.0,
        description="Earliest plausible event time, unix seconds (default 1990-01-01T00:00:00Z); an event before "
        "it is rejected as bad_timestamp:range.",
    )
    max_timestamp: float = Field(
        4_102_444_800.0,
        description="Latest plausible event time, unix seconds (default 2100-01-01T00:00:00Z); an event after it "
        "(after the unit rule) is rejected as bad_timestamp:range.",
    )
    timestamp_unit: Literal["auto", "s", "ms", "us", "ns"] = Field(
        "auto",
        description="Unit of numeric event times. auto: a number >= 1e11 (past the year 5138 in seconds) is "
        "milliseconds, >= 1e14 microseconds, >= 1e17 nanoseconds, anything smaller seconds; so a log mixing "
        "seconds and milliseconds lands on one clock. s/ms/us/ns: every number is in that unit. ISO-8601 "
        "strings are read as they are.",
    )

    @model_validator(mode="after")
    def _timestamp_range_is_not_empty(self) -> IngestConfig:
        if not self.min_timestamp < self.max_timestamp:
            raise ValueError(f"ingest.min_timestamp ({self.min_timestamp}) must be below max_timestamp")
        return self
