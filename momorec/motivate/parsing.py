"""Pure output parsing: model text -> a validated agent answer, or the reason it is not one.

Nothing in an output is executed: the text is only searched for one JSON object, decoded with
`json`, and validated by pydantic. Failure reasons are short, stable codes (they are counted in
MLflow and stored in the tables): empty, no_json, invalid_json, truncated, schema, invented_items,
missing_critique.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from momorec.motivate.schemas import ItemProfile, Motivations, Review

T = TypeVar("T", bound=BaseModel)


@dataclass(frozen=True)
class Parsed(Generic[T]):
    value: T | None
    reason: str | None = None  # None when value is set
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.value is not None


def extract_json(text: str) -> tuple[Any, str | None]:
    """The first JSON object in `text` (code fences and chatter around it are ignored)."""
    if not text or not text.strip():
        return None, "empty"
    start = text.find("{")
    if start < 0:
        return None, "no_json"
    try:
        value, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError:
        return None, "invalid_json"
    if not isinstance(value, dict):
        return None, "no_json"
    return value, None


def parse_as(text: str, model: type[T], finish_reason: str = "stop") -> Parsed[T]:
    """Decode + validate; a broken object cut off by the token limit is reported as `truncated`."""
    value, reason = extract_json(text)
    if reason is not None:
        if finish_reason == "length" and reason in ("invalid_json", "no_json", "empty"):
            return Parsed(None, "truncated", text[-80:])
        return Parsed(None, reason, text[:80])
    try:
        return Parsed(model.model_validate(value))
    except ValidationError as exc:
        first = exc.errors()[0]
        return Parsed(None, "schema", f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}")


def parse_item_profile(text: str, finish_reason: str = "stop") -> Parsed[ItemProfile]:
    return parse_as(text, ItemProfile, finish_reason)


def parse_motivations(text: str, n_history: int, finish_reason: str = "stop") -> Parsed[Motivations]:
    """Also checks grounding that a schema cannot: every cited purchase exists in this history."""
    parsed = parse_as(text, Motivations, finish_reason)
    if not parsed.ok:
        return parsed
    cited = {e for m in parsed.value.motivations for e in m.evidence}
    invented = sorted(e for e in cited if not 1 <= e <= n_history)
    if invented:
        return Parsed(None, "invented_items", f"cited {invented} of a {n_history}-item history")
    return parsed


def parse_review(text: str, finish_reason: str = "stop") -> Parsed[Review]:
    parsed = parse_as(text, Review, finish_reason)
    if parsed.ok and parsed.value.verdict == "revise" and not parsed.value.critique.strip():
        return Parsed(None, "missing_critique", "revise without a critique")
    return parsed
