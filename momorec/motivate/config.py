"""Typed config of the motivate stage (composed into momorec.config.PlatformConfig as `motivate`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from momorec.llm.config import EmbedderConfig, LLMConfig
from momorec.typed import StrictModel


class AgentsConfig(StrictModel):
    """How the three agents prompt, decode, retry and review."""

    prompt_version: str = Field(
        "v2",
        description="Prompt templates momorec/motivate/prompts/<agent>.<version>.txt. v2 drops v1's in-prompt "
        "example answers: SmolLM2-135M copied them (4 of 10 demo users 'cook at home'), collapsing distinct users "
        "onto one text.",
    )
    item_profiles: Literal["analyst", "catalog"] = Field(
        "analyst",
        description="analyst: the item analyst writes each profile and its text is embedded (the method; about 1 s "
        "an item on a 2-core CPU). catalog: no generation: the item's embedding is the LLM's hidden states of its "
        "sanitized catalog entry, and the motivation analyst sees each purchase's title, category and brand (about "
        "12 items/s here).",
    )
    profile_pattern: str | None = Field(
        None,
        description="Regular expression each of the item analyst's three fields must match during guided decoding "
        "(see momorec.motivate.schemas.item_profile_regex), e.g. plain lower-case words: under the bare schema "
        "SmolLM2-135M filled 'need' and 'buyers' with numbers and brackets ('Need: 25% Buyers: 368'). None = the "
        "JSON schema. Must not match '\"' or '\\\\'.",
    )
    reason_pattern: str | None = Field(
        "(Wants to|Needs to|Cares about) [a-z][a-z ,'-]{6,80}",
        description="Regular expression every motivation's reason must match during guided decoding: a sentence "
        "opener and plain words (see momorec.motivate.schemas.motivations_regex). None = the plain JSON schema, under "
        "which SmolLM2-135M wrote unreadable reasons for 61 of 64 Beauty users. Must not match '\"' or '\\\\'.",
    )
    critique_pattern: str | None = Field(
        "(Cite|Name|Make|Replace|Remove|Explain) [a-z][a-z ,'-]{6,60}",
        description="Regular expression the reviewer's critique must match when it asks for a revision: one imperative "
        "sentence in plain words, which the revision prompt then shows (momorec.motivate.schemas.review_regex). "
        "An accept carries an empty critique. None = the plain JSON schema. Must not match '\"' or '\\\\'.",
    )
    history_items: int = Field(
        10, ge=1, description="The user's most recent N training items shown to the motivation analyst."
    )
    max_motivations: int = Field(3, ge=1, le=5, description="At most this many motivations per user.")
    max_review_rounds: int = Field(1, ge=0, description="Revision rounds the reviewer may ask for (0 = no reviewer).")
    max_attempts: int = Field(3, ge=1, description="Generations per agent call before the row is recorded as failed.")
    retry_temperature: float = Field(
        0.7, ge=0.0, description="Temperature of retries (a greedy retry would repeat itself)."
    )
    item_max_tokens: int = Field(96, ge=1, description="Token limit of the item analyst's answer.")
    motivation_max_tokens: int = Field(160, ge=1, description="Token limit of the motivation analyst's answer.")
    review_max_tokens: int = Field(64, ge=1, description="Token limit of the reviewer's answer.")
    max_field_chars: int = Field(
        200, ge=16, description="Catalog fields and profiles are cut to this many characters in prompts."
    )
    history_detail: Literal["profile", "what", "none"] = Field(
        "profile",
        description="What a purchase line of the motivation analyst's history shows after the title: the item's "
        "whole profile text (which repeats the title), only the analyst's 'what' (a few words: the prompt diet), or "
        "nothing. With item_profiles: catalog it is the category path / brand hint either way.",
    )
    history_chars: int = Field(
        200,
        ge=16,
        description="A purchase line's title and detail are each cut to this many characters (prompt tokens are "
        "the cost of the user agents: Beauty titles run to 100+ characters).",
    )


class ExecutionConfig(StrictModel):
    """How the work is sharded over Ray Data actors and committed."""

    num_actors: int = Field(1, ge=1, description="Actors in the pool; each holds one engine.")
    cpus_per_actor: float = Field(
        0.5, gt=0, description="Logical CPUs per actor; fractional locally (2-core deadlock, DESIGN.md)."
    )
    gpus_per_actor: float = Field(
        0.0, ge=0, description="GPUs per actor on a cluster (set llm.tensor_parallel_size to match)."
    )
    batch_rows: int = Field(16, ge=1, description="Rows per map_batches call (one batched pass of each agent).")
    commit_rows: int = Field(
        32, ge=1, description="Rows per Delta commit: a crash loses at most this much finished work."
    )
    no_progress_timeout_s: float = Field(
        7200.0,
        description="Ray Data aborts when no batch finishes for this long (its default, 1800 s, is short for slow "
        "CPUs); -1 = never.",
    )
    retry_failed: bool = Field(
        True, description="Re-run rows whose last result failed (ok rows with the same hash are always skipped)."
    )
    limit_items: int | None = Field(
        None, ge=1, description="Process only the first N items needed (by id): a slice for tests."
    )
    limit_users: int | None = Field(
        None,
        ge=1,
        description="Process only the first N users (by id), and only the items their prompts show: a slice for "
        "tests and demos.",
    )
    sample_users: int | None = Field(
        None,
        ge=1,
        description="Process a uniform random sample of N users, drawn with the platform seed (the same N and seed "
        "give the same users), and every item: a documented fixed user sample for benchmarks on catalogs too large to "
        "motivate whole.",
    )


class MotivateConfig(StrictModel):
    """LLM agents: item profiles, user motivations and their embeddings."""

    llm: LLMConfig = Field(default_factory=LLMConfig)
    embedder: EmbedderConfig = Field(
        default_factory=EmbedderConfig,
        description="What embeds profiles and motivations: the LLM's hidden states (kind llm, the default) or a "
        "bundled sentence-embedding model (kind sentence).",
    )
    agents: AgentsConfig = Field(default_factory=AgentsConfig)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
