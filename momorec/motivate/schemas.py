"""What each agent must answer: a small pydantic model per agent, and its JSON schema for guided decoding.

The JSON schemas are deliberately plain (objects, strings with length bounds, small integer arrays)
so every structured-output backend (xgrammar, guidance) compiles them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from momorec.llm.base import Regex

SHORT = 100  # characters per free-text field: one short sentence (a small model rambles otherwise)


class _Output(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ItemProfile(_Output):
    """Item analyst: what the product is, what need it serves, who buys it."""

    what: str = Field(min_length=3, max_length=SHORT)
    need: str = Field(min_length=3, max_length=SHORT)
    buyers: str = Field(min_length=3, max_length=SHORT)


class Motivation(_Output):
    reason: str = Field(min_length=8, max_length=SHORT)
    evidence: list[int] = Field(min_length=1, max_length=10)  # 1-based positions in the prompt's history


class Motivations(_Output):
    """Motivation analyst: the shopper's motivations, each citing the purchases that show it."""

    motivations: list[Motivation] = Field(min_length=1, max_length=5)


class Review(_Output):
    """Reviewer: accept, or ask for a revision with a critique."""

    verdict: Literal["accept", "revise"]
    critique: str = Field("", max_length=SHORT)


def item_profile_schema() -> dict[str, Any]:
    text = {"type": "string", "minLength": 3, "maxLength": SHORT}
    return {
        "type": "object",
        "properties": {"what": text, "need": text, "buyers": text},
        "required": ["what", "need", "buyers"],
        "additionalProperties": False,
    }


def motivations_schema(n_history: int, max_motivations: int) -> dict[str, Any]:
    """Evidence numbers are bounded by this user's history length, so guided decoding cannot invent items."""
    motivation = {
        "type": "object",
        "properties": {
            "reason": {"type": "string", "minLength": 8, "maxLength": SHORT},
            "evidence": {
                "type": "array",
                "items": {"type": "integer", "minimum": 1, "maximum": max(n_history, 1)},
                "minItems": 1,
                "maxItems": min(max(n_history, 1), 10),
            },
        },
        "required": ["reason", "evidence"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "motivations": {"type": "array", "items": motivation, "minItems": 1, "maxItems": max_motivations}
        },
        "required": ["motivations"],
        "additionalProperties": False,
    }


def motivations_regex(n_history: int, max_motivations: int, reason_pattern: str) -> Regex:
    """The motivations JSON (compact, keys in schema order) as one regular expression, so that each
    reason can be held to `reason_pattern`: a sentence opener and plain words. SmolLM2-135M under the
    plain schema wrote "buynail art.", "desireToSucceed" or a product name for 61 of 64 Beauty users;
    with "(Wants to|Needs to|Cares about) <words>" it wrote e.g. "Needs to make their hair more attractive".

    reason_pattern must not match '"' or '\\' (the reason is a JSON string) and stays within SHORT chars.
    """
    n = max(1, min(n_history, 10))
    number = "(10|[1-9])" if n == 10 else f"[1-{n}]"
    evidence = rf"\[{number}(,{number}){{0,{n - 1}}}\]"
    one = rf'\{{"reason":"(?:{reason_pattern})","evidence":{evidence}\}}'
    return Regex(rf'\{{"motivations":\[{one}(,{one}){{0,{max_motivations - 1}}}\]\}}')


def item_profile_regex(field_pattern: str) -> Regex:
    """The item analyst's JSON (compact, keys in schema order) with every field held to `field_pattern`
    (same reason as motivations_regex; the pattern must not match '"' or '\\')."""
    field = f"(?:{field_pattern})"
    return Regex(rf'\{{"what":"{field}","need":"{field}","buyers":"{field}"\}}')


def review_regex(critique_pattern: str) -> Regex:
    """The reviewer's JSON (compact, verdict first) as one regular expression: an accept with an empty
    critique, or a revise whose critique matches `critique_pattern` (what the revision prompt shows).
    Same reason as motivations_regex: under the bare schema a small model's critique is free text."""
    return Regex(
        rf'(?:\{{"verdict":"accept","critique":""\}}|\{{"verdict":"revise","critique":"(?:{critique_pattern})"\}})'
    )


def review_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "verdict": {"type": "string", "enum": ["accept", "revise"]},
            "critique": {"type": "string", "maxLength": SHORT},
        },
        "required": ["verdict", "critique"],
        "additionalProperties": False,
    }
