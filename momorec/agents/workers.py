"""The agent loop over one batch of rows, engine in hand: item profiles, and user motivations.

Each agent runs batched over the whole batch (one engine call per attempt), so vLLM can schedule
many sequences at once. A row whose agent still fails after its retries comes back with status
"failed" and the reason; no row is dropped and no exception escapes for a bad output.

User flow (MoMoREC's three agents): motivation analyst drafts -> reviewer accepts or critiques ->
the analyst revises (at most `max_review_rounds` times) -> after a revision the reviewer looks again,
and `accepted` says whether it finally accepted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from momorec.agents.config import AgentsConfig
from momorec.agents.parsing import parse_item_profile, parse_motivations, parse_review
from momorec.agents.prompts import (
    PromptSet,
    item_analyst_prompt,
    item_catalog_text,
    motivation_prompt,
    reviewer_prompt,
    sanitize,
)
from momorec.agents.runner import AgentStats, Decoding, Outcome, Request, run_requests
from momorec.agents.schemas import (
    ItemProfile,
    Motivations,
    item_profile_regex,
    item_profile_schema,
    motivations_regex,
    motivations_schema,
    review_regex,
    review_schema,
)
from momorec.llm.base import Engine
from momorec.llm.embedder import Embedder, LLMEmbedder

AGENT_NAMES = ("item_analyst", "motivation_analyst", "reviewer", "embedding")


@dataclass
class AgentContext:
    """What a worker holds: the engine, the prompts, the agents' settings, the embedder (None = the
    engine's pooled hidden states) and running counters."""

    engine: Engine
    prompts: PromptSet
    agents: AgentsConfig
    temperature: float
    seed: int
    embedder: Embedder | None = None
    stats: dict[str, AgentStats] = field(default_factory=lambda: {name: AgentStats() for name in AGENT_NAMES})

    def __post_init__(self) -> None:
        if self.embedder is None:
            self.embedder = LLMEmbedder(self.engine)

    def decoding(self, max_tokens: int) -> Decoding:
        return Decoding(
            max_tokens, self.agents.max_attempts, self.temperature, self.agents.retry_temperature, self.seed
        )

    def embed(self, texts: list[str]) -> np.ndarray:
        """(len(texts), embedder.dim) float32, timed into the "embedding" counters."""
        stats = self.stats["embedding"]
        vectors = stats.timed(self.engine, self.embedder.embed, texts)  # vLLM's pooling start lands in start_s
        stats.requests += len(texts)
        stats.ok += len(texts)
        return vectors


def profile_text(title: str | None, profile: ItemProfile) -> str:
    """The text embedded for an item: its title and the analyst's three sentences."""
    return f"{sanitize(title, 200) or 'Unknown item'}. {profile.what} Need: {profile.need} Buyers: {profile.buyers}"


def motivation_text(motivations: Motivations) -> str:
    """The text embedded for a user: the motivations, one sentence each."""
    return " ".join(m.reason.strip().rstrip(".") + "." for m in motivations.motivations)


def _failure(agent: str, outcome: Outcome) -> str:
    return f"{agent}: {outcome.reason}: {outcome.detail}"[:500]


def profile_items(ctx: AgentContext, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Item analyst + embedding for `items` rows (item_id, title, categories, brand, price, description).

    Returns one dict per item with item_id, status, failure_reason, profile_text, profile_json,
    embedding (list[float] | None), attempts.
    """
    a = ctx.agents
    if a.item_profiles == "catalog":
        return catalog_profiles(ctx, items)
    requests = [
        Request(
            ctx.engine.chat_prompt(*item_analyst_prompt(ctx.prompts, item, a.max_field_chars)),
            item_profile_schema() if a.profile_pattern is None else item_profile_regex(a.profile_pattern),
            parse_item_profile,
        )
        for item in items
    ]
    outcomes = run_requests(ctx.engine, requests, ctx.decoding(a.item_max_tokens), ctx.stats["item_analyst"])
    rows = []
    for item, out in zip(items, outcomes, strict=True):
        row = {"item_id": int(item["item_id"]), "attempts": out.attempts, "embedding": None}
        if out.value is None:
            row.update(status="failed", failure_reason=_failure("item_analyst", out), profile_text="", profile_json="")
        else:
            row.update(
                status="ok",
                failure_reason="",
                profile_text=profile_text(item.get("title"), out.value),
                profile_json=out.value.model_dump_json(),
            )
        rows.append(row)
    ok = [r for r in rows if r["status"] == "ok"]
    if ok:
        for row, vector in zip(ok, ctx.embed([r["profile_text"] for r in ok]), strict=True):
            row["embedding"] = vector.tolist()
    return rows


def catalog_profiles(ctx: AgentContext, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`item_profiles: catalog`: no item analyst; each item's text is its sanitized catalog entry
    (one line), and its embedding the embedder's vector of that text."""
    texts = [item_catalog_text(item, ctx.agents.max_field_chars).replace("\n", ". ") for item in items]
    vectors = ctx.embed(texts)
    return [
        {
            "item_id": int(item["item_id"]),
            "attempts": 0,
            "status": "ok",
            "failure_reason": "",
            "profile_text": text,
            "profile_json": "",
            "embedding": vector.tolist(),
        }
        for item, text, vector in zip(items, texts, vectors, strict=True)
    ]


@dataclass
class _UserState:
    user: dict[str, Any]
    entries: list[tuple[str, str]]
    draft: Motivations | None = None
    accepted: bool = False
    rounds: int = 0
    attempts: int = 0
    note: str = ""
    failure: str = ""


def _motivation_requests(ctx: AgentContext, states: list[_UserState], critiques: list[str] | None) -> list[Request]:
    a = ctx.agents
    requests = []
    for k, s in enumerate(states):
        previous = critique = None
        if critiques is not None:
            previous = json.dumps(s.draft.model_dump()["motivations"])
            critique = critiques[k]
        system, user = motivation_prompt(
            ctx.prompts, s.entries, a.max_motivations, a.max_field_chars, previous, critique
        )
        n = len(s.entries)
        constraint = (
            motivations_schema(n, a.max_motivations)
            if a.reason_pattern is None
            else motivations_regex(n, a.max_motivations, a.reason_pattern)
        )
        requests.append(Request(ctx.engine.chat_prompt(system, user), constraint, partial(_parse_mot, n=n)))
    return requests


def _parse_mot(text: str, finish_reason: str, n: int):
    return parse_motivations(text, n, finish_reason)


def _review(ctx: AgentContext, states: list[_UserState]) -> list[Outcome]:
    a = ctx.agents
    requests = [
        Request(
            ctx.engine.chat_prompt(
                *reviewer_prompt(ctx.prompts, s.entries, s.draft.model_dump()["motivations"], a.max_field_chars)
            ),
            review_schema() if a.critique_pattern is None else review_regex(a.critique_pattern),
            parse_review,
        )
        for s in states
    ]
    outcomes = run_requests(ctx.engine, requests, ctx.decoding(a.review_max_tokens), ctx.stats["reviewer"])
    for s, out in zip(states, outcomes, strict=True):
        s.attempts += out.attempts
    return outcomes


def motivate_users(ctx: AgentContext, users: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Motivation analyst + reviewer + embedding for `users` rows.

    Each user dict holds user_id, history_item_ids (list[int], the prompt's items, oldest first),
    titles and profiles (list[str], aligned with history_item_ids). Returns one dict per user with
    the USER_MOTIVATIONS columns except content_hash / prompt_version / model.
    """
    a = ctx.agents
    states = [_UserState(u, list(zip(u["titles"], u["profiles"], strict=True))) for u in users]
    for s in states:
        if not s.entries:
            s.failure = "input: no_training_history: the user has no training items"

    drafting = [s for s in states if not s.failure]
    outcomes = run_requests(
        ctx.engine,
        _motivation_requests(ctx, drafting, None),
        ctx.decoding(a.motivation_max_tokens),
        ctx.stats["motivation_analyst"],
    )
    for s, out in zip(drafting, outcomes, strict=True):
        s.attempts += out.attempts
        if out.value is None:
            s.failure = _failure("motivation_analyst", out)
        else:
            s.draft = out.value

    reviewing = [s for s in states if s.draft is not None] if a.max_review_rounds > 0 else []
    while reviewing:
        revise, critiques = [], []
        for s, out in zip(reviewing, _review(ctx, reviewing), strict=True):
            if out.value is None:
                s.note = _failure("reviewer", out)  # the draft stands, unaccepted
            elif out.value.verdict == "accept":
                s.accepted = True
            elif s.rounds < a.max_review_rounds:
                revise.append(s)
                critiques.append(out.value.critique)
        outcomes = run_requests(
            ctx.engine,
            _motivation_requests(ctx, revise, critiques),
            ctx.decoding(a.motivation_max_tokens),
            ctx.stats["motivation_analyst"],
        )
        reviewing = []
        for s, out in zip(revise, outcomes, strict=True):
            s.rounds += 1
            s.attempts += out.attempts
            if out.value is None:
                s.note = _failure("motivation_analyst(revision)", out)  # keep the reviewed draft
            else:
                s.draft = out.value
                reviewing.append(s)

    rows = [_user_row(s) for s in states]
    ok = [r for r in rows if r["status"] == "ok"]
    if ok:
        for row, vector in zip(ok, ctx.embed([r["motivation_text"] for r in ok]), strict=True):
            row["embedding"] = vector.tolist()
    return rows


def _user_row(s: _UserState) -> dict[str, Any]:
    history = [int(i) for i in s.user["history_item_ids"]]
    row = {
        "user_id": int(s.user["user_id"]),
        "review_rounds": s.rounds,
        "accepted": s.accepted,
        "history_item_ids": history,
        "embedding": None,
        "attempts": s.attempts,
    }
    if s.draft is None:
        row.update(status="failed", failure_reason=s.failure, motivation_text="", motivations_json="")
        return row
    cited = [
        {"reason": m.reason, "evidence_item_ids": [history[e - 1] for e in dict.fromkeys(m.evidence)]}
        for m in s.draft.motivations
    ]
    row.update(
        status="ok", failure_reason=s.note, motivation_text=motivation_text(s.draft), motivations_json=json.dumps(cited)
    )
    return row
