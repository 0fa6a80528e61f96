"""The agent loop over one batch of rows, engine in hand: item profiles, and user motivations.

Each agent runs batched over the whole batch (one engine call per attempt), so vLLM can schedule
many sequences at once. A row whose agent still fails after its retries comes back with status
"failed" and the reason; no row is dropped and no exception escapes for a bad output.

User flow (MoMoREC's three agents): motivation analyst drafts -> reviewer accepts or critiques ->
the analyst revises (at most `max_review_rounds` times) -> after a revision the reviewer looks again,
and `accepted` says whether it finally accepted.

Every prompt is fitted to the engine's window before it is sent (momorec.motivate.prompts.fit_prompt):
narrower data fields, and for a draft fewer of the oldest purchases (the row then records only the
purchases its prompt showed, so evidence numbers still name them). A row that cannot fit fails with
"input: prompt_too_long"; a review or revision that cannot fit leaves the draft standing, noted. A row
any of whose prompts the window shaped (or refused) says so (`window_shaped`): its content hash then
names the window too (momorec.motivate.inputs.window_hash).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NamedTuple

import numpy as np

from momorec.llm.base import Engine
from momorec.llm.embedder import Embedder, LLMEmbedder
from momorec.motivate.config import AgentsConfig
from momorec.motivate.parsing import parse_item_profile, parse_motivations, parse_review
from momorec.motivate.prompts import (
    PromptSet,
    fit_prompt,
    item_analyst_prompt,
    item_catalog_text,
    motivation_prompt,
    reviewer_prompt,
    sanitize,
)
from momorec.motivate.runner import AgentStats, Decoding, Outcome, Request, run_requests
from momorec.motivate.schemas import (
    ItemProfile,
    Motivations,
    item_profile_regex,
    item_profile_schema,
    motivations_regex,
    motivations_schema,
    review_regex,
    review_schema,
)

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


class _Fitted(NamedTuple):
    kept: int  # history entries the prompt shows
    text: str  # the prompt in the engine's chat format
    shaped: bool  # narrower or shorter than the full rendering, to fit the window


def _fitted(
    ctx: AgentContext,
    render: Callable[[int, int], tuple[str, str]],
    max_tokens: int,
    entries: int = 1,
    drop_entries: bool = False,
) -> _Fitted | None:
    """The first rendering that leaves `max_tokens` of the engine's window for the answer (see
    fit_prompt), or None when none does."""
    engine = ctx.engine
    budget = None if engine.max_model_len is None else engine.max_model_len - max_tokens

    def fits(system: str, user: str) -> bool:
        return budget is None or engine.prompt_tokens(engine.chat_prompt(system, user)) <= budget

    fitted = fit_prompt(render, entries, ctx.agents.max_field_chars, fits, drop_entries)
    return None if fitted is None else _Fitted(fitted.kept, engine.chat_prompt(*fitted.prompt), fitted.shaped)


def _shaped(fitted: _Fitted | None) -> bool:
    """Whether the window decided this prompt: shaped it, or left no room for it."""
    return fitted is None or fitted.shaped


def _run_fitted(ctx: AgentContext, requests: list[Request | None], max_tokens: int, agent: str) -> list[Outcome | None]:
    """run_requests over the requests that are not None (None: its prompt did not fit); outcomes in order,
    None where there was no request."""
    ran = iter(
        run_requests(ctx.engine, [r for r in requests if r is not None], ctx.decoding(max_tokens), ctx.stats[agent])
    )
    return [None if r is None else next(ran) for r in requests]


def _too_long(ctx: AgentContext, max_tokens: int) -> str:
    return (
        f"prompt_too_long: no rendering fits max_model_len {ctx.engine.max_model_len} less {max_tokens} answer tokens"
    )


def profile_items(ctx: AgentContext, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Item analyst + embedding for `items` rows (item_id, title, categories, brand, price, description).

    Returns one dict per item with item_id, status, failure_reason, profile_text, profile_json,
    embedding (list[float] | None), attempts, window_shaped.
    """
    a = ctx.agents
    if a.item_profiles == "catalog":
        return catalog_profiles(ctx, items)
    schema = item_profile_schema() if a.profile_pattern is None else item_profile_regex(a.profile_pattern)
    prompts = [
        _fitted(ctx, lambda _, width, item=item: item_analyst_prompt(ctx.prompts, item, width), a.item_max_tokens)
        for item in items
    ]
    requests = [None if p is None else Request(p.text, schema, parse_item_profile) for p in prompts]
    outcomes = _run_fitted(ctx, requests, a.item_max_tokens, "item_analyst")
    rows = []
    for item, out, fitted in zip(items, outcomes, prompts, strict=True):
        row = {"item_id": int(item["item_id"]), "attempts": 0 if out is None else out.attempts, "embedding": None}
        row["window_shaped"] = _shaped(fitted)
        if out is None:
            failure = f"input: {_too_long(ctx, a.item_max_tokens)}"
            row.update(status="failed", failure_reason=failure, profile_text="", profile_json="")
        elif out.value is None:
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
    entries: list[tuple[str, str]]  # (title, detail) of the purchases the prompts show, oldest first
    history: list[int]  # their item ids: evidence number k names history[k - 1]
    draft: Motivations | None = None
    accepted: bool = False
    rounds: int = 0
    attempts: int = 0
    note: str = ""
    failure: str = ""
    window_shaped: bool = False  # the window shaped (or refused) one of its prompts

    def fitted(self, fitted: _Fitted | None) -> str | None:
        """The prompt text of `fitted`, noting whether the window decided it."""
        self.window_shaped |= _shaped(fitted)
        return None if fitted is None else fitted.text


def _draft_prompt(ctx: AgentContext, s: _UserState) -> str | None:
    """The draft prompt fitted to the window; the purchases it leaves out leave `s` too."""

    def render(keep: int, width: int) -> tuple[str, str]:
        return motivation_prompt(ctx.prompts, s.entries[-keep:], ctx.agents.max_motivations, width)

    a = ctx.agents
    fitted = _fitted(ctx, render, a.motivation_max_tokens, len(s.entries), drop_entries=True)
    prompt = s.fitted(fitted)
    if fitted is not None:
        s.entries, s.history = s.entries[-fitted.kept :], s.history[-fitted.kept :]
    return prompt


def _revision_prompt(ctx: AgentContext, s: _UserState, critique: str) -> str | None:
    """The revision prompt fitted to the window, over the purchases the draft saw (its evidence numbers)."""
    previous = json.dumps(s.draft.model_dump()["motivations"])

    def render(_: int, width: int) -> tuple[str, str]:
        return motivation_prompt(ctx.prompts, s.entries, ctx.agents.max_motivations, width, previous, critique)

    return s.fitted(_fitted(ctx, render, ctx.agents.motivation_max_tokens))


def _motivation_requests(ctx: AgentContext, states: list[_UserState], prompts: list[str]) -> list[Request]:
    a = ctx.agents
    requests = []
    for s, prompt in zip(states, prompts, strict=True):
        n = len(s.entries)
        constraint = (
            motivations_schema(n, a.max_motivations)
            if a.reason_pattern is None
            else motivations_regex(n, a.max_motivations, a.reason_pattern)
        )
        requests.append(Request(prompt, constraint, partial(_parse_mot, n=n)))
    return requests


def _parse_mot(text: str, finish_reason: str, n: int):
    return parse_motivations(text, n, finish_reason)


def _review_prompt(ctx: AgentContext, s: _UserState) -> str | None:
    motivations = s.draft.model_dump()["motivations"]

    def render(_: int, width: int) -> tuple[str, str]:
        return reviewer_prompt(ctx.prompts, s.entries, motivations, width)

    return s.fitted(_fitted(ctx, render, ctx.agents.review_max_tokens))


def _review(ctx: AgentContext, states: list[_UserState]) -> list[Outcome | None]:
    """One review per state, None where the review prompt cannot fit (noted on the state)."""
    a = ctx.agents
    schema = review_schema() if a.critique_pattern is None else review_regex(a.critique_pattern)
    prompts = [_review_prompt(ctx, s) for s in states]
    requests = [None if p is None else Request(p, schema, parse_review) for p in prompts]
    outcomes = _run_fitted(ctx, requests, a.review_max_tokens, "reviewer")
    for s, out in zip(states, outcomes, strict=True):
        if out is None:
            s.note = f"reviewer: {_too_long(ctx, a.review_max_tokens)}"  # the draft stands, unaccepted
        else:
            s.attempts += out.attempts
    return outcomes


def motivate_users(ctx: AgentContext, users: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Motivation analyst + reviewer + embedding for `users` rows.

    Each user dict holds user_id, history_item_ids (list[int], the prompt's items, oldest first),
    titles and profiles (list[str], aligned with history_item_ids). Returns one dict per user with
    the USER_MOTIVATIONS columns except content_hash / prompt_version / model, and window_shaped.
    """
    a = ctx.agents
    states = [
        _UserState(u, list(zip(u["titles"], u["profiles"], strict=True)), [int(i) for i in u["history_item_ids"]])
        for u in users
    ]
    drafts: dict[int, str] = {}
    for k, s in enumerate(states):
        if not s.entries:
            s.failure = "input: no_training_history: the user has no training items"
        elif (prompt := _draft_prompt(ctx, s)) is None:
            s.failure = f"input: {_too_long(ctx, a.motivation_max_tokens)} with one purchase"
        else:
            drafts[k] = prompt

    drafting = [states[k] for k in drafts]
    outcomes = run_requests(
        ctx.engine,
        _motivation_requests(ctx, drafting, list(drafts.values())),
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
        revise, revisions = [], []
        for s, out in zip(reviewing, _review(ctx, reviewing), strict=True):
            if out is None:
                continue  # the review prompt did not fit: noted by _review
            if out.value is None:
                s.note = _failure("reviewer", out)  # the draft stands, unaccepted
            elif out.value.verdict == "accept":
                s.accepted = True
            elif s.rounds < a.max_review_rounds:
                if (prompt := _revision_prompt(ctx, s, out.value.critique)) is None:
                    s.note = f"motivation_analyst(revision): {_too_long(ctx, a.motivation_max_tokens)}"
                else:
                    revise.append(s)
                    revisions.append(prompt)
        outcomes = run_requests(
            ctx.engine,
            _motivation_requests(ctx, revise, revisions),
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
    history = s.history
    row = {
        "user_id": int(s.user["user_id"]),
        "review_rounds": s.rounds,
        "accepted": s.accepted,
        "history_item_ids": history,
        "embedding": None,
        "attempts": s.attempts,
        "window_shaped": s.window_shaped,
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
