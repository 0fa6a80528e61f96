"""The agent loop's control flow (retries, failure records, review rounds) with a scripted engine.

The engine here is a deterministic stand-in that answers by prompt content, so every branch is
exercised exactly; the real model runs in test_llm_agents.py and test_motivate_stage.py.
"""

from __future__ import annotations

import json

import numpy as np

from momorec.llm.base import Engine, Generation
from momorec.motivate.config import AgentsConfig
from momorec.motivate.prompts import load_prompts
from momorec.motivate.workers import AgentContext, motivate_users, profile_items


class ScriptedEngine(Engine):
    supports_structured_output = False
    model_name = "scripted"

    def __init__(self, review_verdicts: list[str] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.review_verdicts = list(review_verdicts or ["accept"])

    def chat_prompt(self, system: str, user: str) -> str:
        return f"SYSTEM {system}\nUSER {user}"

    def _answer(self, prompt: str, temperature: float) -> tuple[str, str]:
        if "retail catalog analyst" in prompt:
            if "BROKEN" in prompt:
                return '{"what": "never clo', "length"
            if "FLAKY" in prompt and temperature == 0:
                return "I think this is a nice product.", "stop"
            return json.dumps({"what": "A product.", "need": "A need.", "buyers": "Some buyers."}), "stop"
        if "You review" in prompt:
            verdict = self.review_verdicts.pop(0) if self.review_verdicts else "accept"
            return json.dumps(
                {"verdict": verdict, "critique": "Be more specific." if verdict == "revise" else ""}
            ), "stop"
        if "INVENTS" in prompt:
            return json.dumps({"motivations": [{"reason": "Buys many invented things.", "evidence": [99]}]}), "stop"
        revised = "A reviewer rejected" in prompt
        reason = "Refines a skin-care routine." if revised else "Keeps a skin-care routine."
        return json.dumps({"motivations": [{"reason": reason, "evidence": [1, 2]}]}), "stop"

    def generate(self, prompts, *, json_schema=None, max_tokens=128, temperature=0.0, seed=None):
        self.calls.append(prompts)
        out = []
        for p in prompts:
            text, finish = self._answer(p, temperature)
            out.append(Generation(text, len(p.split()), len(text.split()), finish))
        return out

    def embed(self, texts):
        return np.asarray([[len(t), 1.0, 2.0] for t in texts], dtype=np.float32)


def _ctx(engine: Engine, **agents) -> AgentContext:
    return AgentContext(engine, load_prompts("v1"), AgentsConfig(**agents), temperature=0.0, seed=1)


def test_items_ok_retried_and_failed_are_all_recorded():
    engine = ScriptedEngine()
    ctx = _ctx(engine, max_attempts=3)
    items = [
        {"item_id": 1, "title": "Polish"},
        {"item_id": 2, "title": "FLAKY cream"},
        {"item_id": 3, "title": "BROKEN soap"},
    ]
    rows = profile_items(ctx, items)
    assert [r["item_id"] for r in rows] == [1, 2, 3]  # nothing dropped, order kept
    assert [r["status"] for r in rows] == ["ok", "ok", "failed"]
    assert [r["attempts"] for r in rows] == [1, 2, 3]
    assert rows[2]["failure_reason"].startswith("item_analyst: truncated") and rows[2]["embedding"] is None
    assert rows[0]["profile_text"].startswith("Polish. A product.") and len(rows[0]["embedding"]) == 3
    assert json.loads(rows[1]["profile_json"])["need"] == "A need."
    s = ctx.stats["item_analyst"]
    assert (s.requests, s.generations, s.retries, s.ok) == (3, 6, 3, 2)
    assert s.failures == {"truncated": 1} and s.attempt_failures == {"no_json": 1, "truncated": 3}
    assert [len(c) for c in engine.calls] == [3, 2, 1]  # retries are batched, only the failed rows


def _user(uid: int, titles: list[str]) -> dict:
    return {
        "user_id": uid,
        "history_item_ids": [10 + k for k in range(len(titles))],
        "titles": titles,
        "profiles": [""] * len(titles),
    }


def test_review_round_revises_then_accepts():
    engine = ScriptedEngine(review_verdicts=["revise", "accept"])
    ctx = _ctx(engine, max_review_rounds=1)
    (row,) = motivate_users(ctx, [_user(5, ["Serum", "Cleanser", "Toner"])])
    assert row["status"] == "ok" and row["accepted"] is True and row["review_rounds"] == 1
    assert row["motivation_text"] == "Refines a skin-care routine."
    assert json.loads(row["motivations_json"]) == [
        {"reason": "Refines a skin-care routine.", "evidence_item_ids": [10, 11]}
    ]
    assert row["history_item_ids"] == [10, 11, 12] and row["attempts"] == 4  # draft, review, revision, review
    assert any("Be more specific." in p for call in engine.calls for p in call)


def test_review_rounds_are_bounded_and_unaccepted_drafts_are_kept():
    engine = ScriptedEngine(review_verdicts=["revise"] * 10)
    ctx = _ctx(engine, max_review_rounds=2)
    (row,) = motivate_users(ctx, [_user(5, ["Serum", "Cleanser"])])
    assert row["status"] == "ok" and row["accepted"] is False and row["review_rounds"] == 2
    assert ctx.stats["reviewer"].requests == 3 and ctx.stats["motivation_analyst"].requests == 3


def test_user_failures_are_recorded_not_dropped():
    ctx = _ctx(ScriptedEngine(), max_attempts=2, max_review_rounds=0)
    rows = motivate_users(ctx, [_user(1, []), _user(2, ["INVENTS things", "Soap"]), _user(3, ["Soap", "Brush"])])
    assert [r["user_id"] for r in rows] == [1, 2, 3]
    assert [r["status"] for r in rows] == ["failed", "failed", "ok"]
    assert rows[0]["failure_reason"].startswith("input: no_training_history")
    assert rows[1]["failure_reason"].startswith("motivation_analyst: invented_items") and rows[1]["attempts"] == 2
    assert rows[2]["accepted"] is False and rows[2]["embedding"] is not None  # no reviewer: not accepted
