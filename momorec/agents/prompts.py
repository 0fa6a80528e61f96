"""Prompt templates (versioned files in ./prompts) and the pure functions that fill them.

Catalog text and model outputs are untrusted: they enter a prompt only through `sanitize`, which
flattens them to one line, cuts them to a length, and replaces angle brackets so that no data can
open or close the <item>/<history>/... delimiters the templates put around it. Templates are filled
with `string.Template`, which never re-reads a substituted value, so `$` or `{}` in data are inert.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from importlib import resources
from string import Template
from typing import Any

AGENTS = ("item_analyst", "motivation_analyst", "motivation_revision", "reviewer")
_SECTION = re.compile(r"^=== (system|user) ===$", re.MULTILINE)
_SPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True)
class PromptTemplate:
    """One agent's template: a system and a user part (a revision note has only a user part)."""

    name: str
    version: str
    system: str
    user: str
    text: str  # the file as read: what MLflow stores and the content hash digests

    def render(self, **values: str) -> tuple[str, str]:
        return Template(self.system).substitute(values), Template(self.user).substitute(values)


@dataclass(frozen=True)
class PromptSet:
    version: str
    templates: dict[str, PromptTemplate]

    def __getitem__(self, name: str) -> PromptTemplate:
        return self.templates[name]

    @property
    def digest(self) -> str:
        """sha256 of every template's text: a changed template changes every user's content hash."""
        return self.digest_of(*sorted(self.templates))

    def digest_of(self, *names: str) -> str:
        """sha256 of the named templates' text (items hash only the item analyst's)."""
        h = hashlib.sha256()
        for name in names:
            h.update(name.encode() + b"\0" + self.templates[name].text.encode() + b"\0")
        return h.hexdigest()


def parse_template(name: str, version: str, text: str) -> PromptTemplate:
    parts = _SECTION.split(text)
    if len(parts) == 1:  # no sections: a user-only fragment
        return PromptTemplate(name, version, "", text.strip("\n"), text)
    sections = dict(zip(parts[1::2], (p.strip("\n") for p in parts[2::2]), strict=True))
    return PromptTemplate(name, version, sections.get("system", ""), sections.get("user", ""), text)


def load_prompts(version: str) -> PromptSet:
    """The templates `<agent>.<version>.txt` shipped in momorec/agents/prompts."""
    folder = resources.files("momorec.agents").joinpath("prompts")
    templates = {}
    for name in AGENTS:
        file = folder.joinpath(f"{name}.{version}.txt")
        if not file.is_file():
            raise FileNotFoundError(f"prompt template {name}.{version}.txt is missing from momorec/agents/prompts")
        templates[name] = parse_template(name, version, file.read_text(encoding="utf-8"))
    return PromptSet(version, templates)


def sanitize(value: Any, max_chars: int) -> str:
    """Untrusted text as one inert line: no delimiters, no control characters, at most max_chars."""
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        value = " > ".join(str(v) for v in value if v is not None)  # a category path
    text = _CONTROL.sub(" ", str(value))
    text = text.replace("<", "‹").replace(">", "›")
    text = _SPACE.sub(" ", text).strip()
    return text if len(text) <= max_chars else text[: max_chars - 1].rstrip() + "…"


def item_catalog_text(item: dict[str, Any], max_chars: int) -> str:
    """The catalog fields of one `items` row as labelled, sanitized lines (empty fields left out)."""
    lines = [f"Title: {sanitize(item.get('title'), max_chars) or 'unknown'}"]
    categories = item.get("categories") or []
    if categories:
        lines.append(f"Category: {sanitize(categories, max_chars)}")
    if item.get("brand"):
        lines.append(f"Brand: {sanitize(item['brand'], max_chars)}")
    if item.get("price") is not None:
        lines.append(f"Price: {float(item['price']):.2f}")
    if item.get("description"):
        lines.append(f"Description: {sanitize(item['description'], max_chars)}")
    return "\n".join(lines)


def catalog_hint(item: dict[str, Any]) -> str:
    """What a purchase line shows besides the title when items have no analyst profile: the most
    specific levels of the category path, and the brand ("" when the catalog has neither)."""
    parts = []
    categories = [c for c in (item.get("categories") or []) if c]
    if categories:
        parts.append("category: " + " > ".join(str(c) for c in categories[-2:]))
    if item.get("brand"):
        parts.append(f"brand: {item['brand']}")
    return "; ".join(parts)


def history_detail(profile: dict[str, Any], mode: str) -> str:
    """What a purchase line shows after the title, from an ok `item_profiles` row (profile_text,
    profile_json): the whole profile text, the analyst's "what" only, or nothing."""
    if mode == "profile":
        return profile.get("profile_text") or ""
    if mode == "what":
        try:
            return str(json.loads(profile.get("profile_json") or "{}").get("what") or "")
        except (json.JSONDecodeError, AttributeError):
            return ""
    if mode == "none":
        return ""
    raise ValueError(f"unknown history_detail {mode!r} (profile | what | none)")


def item_analyst_prompt(prompts: PromptSet, item: dict[str, Any], max_chars: int) -> tuple[str, str]:
    """(system, user) for one item."""
    return prompts["item_analyst"].render(item=item_catalog_text(item, max_chars))


def history_block(entries: list[tuple[str, str]], max_chars: int) -> str:
    """Numbered history lines `[k] title — profile`, oldest first; `entries` = (title, profile) pairs."""
    lines = []
    for k, (title, profile) in enumerate(entries, start=1):
        line = f"[{k}] {sanitize(title, max_chars) or 'unknown item'}"
        if profile:
            line += f" — {sanitize(profile, max_chars)}"
        lines.append(line)
    return "\n".join(lines)


def motivation_prompt(
    prompts: PromptSet,
    entries: list[tuple[str, str]],
    max_motivations: int,
    max_chars: int,
    previous: str | None = None,
    critique: str | None = None,
) -> tuple[str, str]:
    """(system, user) for the motivation analyst; with previous + critique it is a revision round."""
    revision = ""
    if critique is not None:
        revision = prompts["motivation_revision"].render(
            previous=sanitize(previous, 4 * max_chars), critique=sanitize(critique, max_chars)
        )[1]
    return prompts["motivation_analyst"].render(
        n=str(len(entries)),
        max_motivations=str(max_motivations),
        history=history_block(entries, max_chars),
        revision=revision,
    )


def motivations_block(motivations: list[dict[str, Any]], max_chars: int) -> str:
    """The draft under review: `k. reason (purchases: [a, b])` lines."""
    return "\n".join(
        f"{k}. {sanitize(m['reason'], max_chars)} (purchases: {list(m['evidence'])})"
        for k, m in enumerate(motivations, 1)
    )


def reviewer_prompt(
    prompts: PromptSet, entries: list[tuple[str, str]], motivations: list[dict[str, Any]], max_chars: int
) -> tuple[str, str]:
    return prompts["reviewer"].render(
        n=str(len(entries)),
        history=history_block(entries, max_chars),
        motivations=motivations_block(motivations, max_chars),
    )
