"""Prompt templates (versioned files in ./prompts) and the pure functions that fill them.

Catalog text and model outputs are untrusted: they enter a prompt only through `sanitize`, which
flattens them to one line, cuts them to a length, and makes them inert: no data can open or close the
<item>/<history>/... delimiters the templates put around it (angle brackets, their lookalikes and HTML
entities that spell them become ‹ ›), hide text from a reader (bidi controls, zero-width and other format
characters are removed), or break a line (controls, line and paragraph separators become spaces). A
history line shows its title and detail through `history_text`, which also turns `[2]`-like numbers
into `(2)`, so the only `[k]` in a history block are its entries' numbers. Templates are filled with
`string.Template`, which never re-reads a substituted value, so `$` or `{}` in data are inert.

Ordinary text (no such characters) renders exactly as it did before this hardening, so content hashes
and stored texts of ordinary data stay valid (tests/motivate/ordinary_prompts.py pins it).

A prompt longer than the engine's window is never cut by the engine (which would cut the system prompt
off its start): `fit_prompt` renders it again with narrower data fields, then with fewer of the oldest
purchases, until it fits; the instructions are never shortened.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from string import Template
from typing import Any, NamedTuple

AGENTS = ("item_analyst", "motivation_analyst", "motivation_revision", "reviewer")
_SECTION = re.compile(r"^=== (system|user) ===$", re.MULTILINE)
_SPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

# '<' and '>' and what a reader (or a model) takes for them: fullwidth and small forms (their NFKC is
# '<' / '>'), angle brackets of CJK, mathematics and ornaments, modifier arrowheads, Canadian syllabics.
# All become the inert ‹ › that '<' and '>' always became, so '＜/item＞' reads like a neutralised '</item>'.
_ANGLES = str.maketrans(
    {
        **dict.fromkeys("<\uff1c\ufe64\u2329\u3008\u27e8\u276c\u276e\u02c2\u1438", "‹"),
        **dict.fromkeys(">\uff1e\ufe65\u232a\u3009\u27e9\u276d\u276f\u02c3\u1433", "›"),
    }
)
# An HTML entity, possibly escaped again ('&amp;lt;'), with or without its ';' (html.unescape reads both).
_ENTITY = re.compile(r"&(?:amp;)*(?:#[0-9]+;?|#x[0-9a-f]+;?|[a-z][a-z0-9]*;?)", re.IGNORECASE)
# A number in square brackets or their lookalikes, the shape of a history line's "[k]".
_NUMBER_MARK = re.compile(
    r"[\[\uff3b\ufe47\u3010\u3014\u27e6\u301a\u2045]\s*(\d+)\s*[\]\uff3d\ufe48\u3011\u3015\u27e7\u301b\u2046]"
)
#: The narrowest a data field is cut to when a prompt must shrink (AgentsConfig.max_field_chars' floor).
MIN_FIELD_CHARS = 16


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
    """The templates `<agent>.<version>.txt` shipped in momorec/motivate/prompts."""
    folder = resources.files("momorec.motivate").joinpath("prompts")
    templates = {}
    for name in AGENTS:
        file = folder.joinpath(f"{name}.{version}.txt")
        if not file.is_file():
            raise FileNotFoundError(f"prompt template {name}.{version}.txt is missing from momorec/motivate/prompts")
        templates[name] = parse_template(name, version, file.read_text(encoding="utf-8"))
    return PromptSet(version, templates)


def _inert_characters(text: str) -> str:
    """Controls as spaces, format characters removed, angle brackets and lookalikes as ‹ ›.

    Format characters (Unicode Cf: zero-width spaces and joiners, word joiner, BOM, soft hyphen, bidi
    embeddings, overrides and isolates U+202A-202E / U+2066-2069, direction marks, tag characters) are
    invisible: removed, the model reads what a person reading the prompt or the tables sees (U+202E shows
    '>meti/<' as '</item>'; 'ig\u200bnore' tokenizes unlike 'ignore'). Controls (Cc, C1 ones such as NEL
    and CSI included) become spaces as C0 controls always did; lone surrogates (Cs) cannot be encoded."""
    text = _CONTROL.sub(" ", text).translate(_ANGLES)
    if text.isascii():  # the common case, without a per-character lookup
        return text
    kept = []
    for c in text:
        category = unicodedata.category(c)
        if category == "Cc":
            kept.append(" ")
        elif category not in ("Cf", "Cs"):
            kept.append(c)
    return "".join(kept)


def _unescape(entity: str) -> str:
    """An entity decoded until nothing is left to decode ('&amp;lt;' -> '&lt;' -> '<')."""
    for _ in range(8):
        decoded = html.unescape(entity)
        if decoded == entity:
            break
        entity = decoded
    return entity


def _inert_entity(match: re.Match[str]) -> str:
    """An entity that spells a character `sanitize` neutralises (or a bracket, which could spell a history
    number) as that character made inert; any other entity as written, so ordinary text such as
    'AT&amp;T' or 'XIUstyle&#8482' renders as it always did."""
    decoded = _unescape(match.group())
    inert = _inert_characters(decoded)
    return inert if inert != decoded or "[" in decoded or "]" in decoded else match.group()


def sanitize(value: Any, max_chars: int) -> str:
    """Untrusted text as one inert line, at most max_chars: HTML entities that spell a delimiter decoded,
    then no delimiters (angle brackets and their lookalikes as ‹ ›), no control or invisible format
    characters, all whitespace (line and paragraph separators included) one space."""
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        value = " > ".join(str(v) for v in value if v is not None)  # a category path
    text = str(value)
    if "&" in text:
        text = _ENTITY.sub(_inert_entity, text)
    text = _SPACE.sub(" ", _inert_characters(text)).strip()
    return text if len(text) <= max_chars else text[: max_chars - 1].rstrip() + "…"


def history_text(value: Any, max_chars: int) -> str:
    """`sanitize`, and a bracketed number ('[2]', '［２］', '【3】') as '(2)': a history line's title or detail
    cannot forge the "[k]" of another entry (the numbers the motivation analyst cites as evidence)."""
    return _NUMBER_MARK.sub(r"(\1)", sanitize(value, max_chars))


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
        line = f"[{k}] {history_text(title, max_chars) or 'unknown item'}"
        if profile:
            line += f" — {history_text(profile, max_chars)}"
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


def field_widths(max_chars: int) -> list[int]:
    """The widths an over-long prompt's data fields are tried at: max_chars, halved down to MIN_FIELD_CHARS."""
    widths = [max_chars]
    while widths[-1] > MIN_FIELD_CHARS:
        widths.append(max(widths[-1] // 2, MIN_FIELD_CHARS))
    return widths


class FittedPrompt(NamedTuple):
    kept: int  # history entries the prompt shows
    prompt: tuple[str, str]  # (system, user)
    shaped: bool  # the full rendering did not fit: this one depends on the window


def fit_prompt(
    render: Callable[[int, int], tuple[str, str]],
    entries: int,
    max_chars: int,
    fits: Callable[[str, str], bool],
    drop_entries: bool,
) -> FittedPrompt | None:
    """The first rendering that `fits` the engine's window, or None.

    `render(keep, width)` renders the prompt with the `keep` most recent of `entries` history entries and
    its data fields cut to `width`. Tried in order: every entry at each of `field_widths(max_chars)` (an
    ordinary prompt fits at once and renders as it always did); then, with `drop_entries`, the oldest
    entries left out one at a time at the narrowest width, down to one. Only data shrinks: the system
    prompt and the template's text are the same in every rendering."""
    for k, width in enumerate(field_widths(max_chars)):
        prompt = render(entries, width)
        if fits(*prompt):
            return FittedPrompt(entries, prompt, shaped=k > 0)
    for keep in range(entries - 1, 0, -1) if drop_entries else ():
        prompt = render(keep, MIN_FIELD_CHARS)
        if fits(*prompt):
            return FittedPrompt(keep, prompt, shaped=True)
    return None
