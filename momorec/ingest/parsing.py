"""Pure row parsers: one raw input record (bytes) -> accepted records or a reject with a reason.

Run inside Spark (`rdd.flatMap`) and unit-tested without it. Every record yields at least one output,
so rows in = rows accepted + rows rejected holds by construction: an event-log record is one output; a
sequence line is one output per item token (or one reject when it has no usable item). Field values
are normalised by momorec.ingest.values.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from typing import Any

from momorec.ingest import lines as text_lines
from momorec.ingest.values import (
    MAX_ID_CHARS,
    TimestampRule,
    clean_id,
    normalise_id,
    parse_categories,
    parse_number,
    parse_price,
    parse_text,
    parse_timestamp,
    safe_text,
)

__all__ = ["MAX_ID_CHARS", "clean_id", "normalise_id", "parse_timestamp"]

MAX_RAW_CHARS = 1024

# event_order packs (line, position) into one sortable, non-negative int64: line < 2^43, position < 2^20.
# It orders the events of one ingested file; across files the `batch` column (the file's row in
# `sources`) comes first, so the number of files a warehouse ingests over its life has no bound. Tables
# written before the batch column held batch << 50 | line << 20 | position here; ingest migrates them
# (`ingest.stage.full_rebuild_reason`). A value out of these bounds is an error (EventOrderOverflow),
# never a silent overflow or a collision with another event.
LINE_BITS = 43
POS_BITS = 20
MAX_LINE = (1 << LINE_BITS) - 1
MAX_POSITION = (1 << POS_BITS) - 1


class EventOrderOverflow(ValueError):
    """A line or position that does not fit the event_order key."""


def event_order(line: int, position: int = 0) -> int:
    """The in-file order key: sorts by line, then position; exact (one key per pair)."""
    if 0 <= line <= MAX_LINE and 0 <= position <= MAX_POSITION:
        return (line << POS_BITS) | position
    name, value, bound = ("line", line, MAX_LINE) if not 0 <= line <= MAX_LINE else ("position", position, MAX_POSITION)
    raise EventOrderOverflow(f"event_order: {name} {value} is outside 0..{bound}, the bound of the int64 key")


def record(kind: str, **fields: Any) -> dict[str, Any]:
    """One output record; `kind` is "event" or "reject". Missing fields are None."""
    base = {
        "kind": kind,
        "user": None,
        "item": None,
        "timestamp": None,
        "event_order": None,
        "rating": None,
        "event_type": None,
        "line": None,
        "reason": None,
        "raw": None,
    }
    base.update(fields)
    return base


def _clip(text: str) -> str:
    return text if len(text) <= MAX_RAW_CHARS else text[:MAX_RAW_CHARS] + "…"


def decode_line(raw: bytes) -> tuple[str | None, str]:
    """(text, printable raw). text is None when the bytes are not valid UTF-8 (a real U+FFFD, the
    three bytes EF BF BD, is valid) or when the line was over-long (lines.OVERLONG_LINE)."""
    if raw == text_lines.OVERLONG_LINE:
        return None, f"<line longer than {text_lines.MAX_LINE_BYTES} bytes>"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, _clip(raw[: MAX_RAW_CHARS * 4].decode("utf-8", errors="replace"))
    return text, _clip(text)


def _undecodable_reason(raw: bytes) -> str:
    return "malformed_line:too_long" if raw == text_lines.OVERLONG_LINE else "invalid_utf8"


def _id_reject_reason(reason: str, field: str) -> str:
    return f"missing_or_bad_field:{field}" if reason == "missing" else reason


def validate_event(
    fields: dict[str, Any],
    *,
    user_col: str,
    item_col: str,
    timestamp_col: str | None,
    rating_col: str | None,
    event_type_col: str | None,
    min_rating: float | None,
    order: int,
    line: int,
    raw: str,
    timestamps: TimestampRule | None = None,
) -> dict[str, Any]:
    """One event-log row (already split into named fields) -> an event or a reject record."""
    user, user_problem = normalise_id(fields.get(user_col))
    item, item_problem = normalise_id(fields.get(item_col))

    def reject(reason: str) -> dict[str, Any]:
        return record("reject", reason=reason, line=line, raw=safe_text(raw), event_order=order, user=user, item=item)

    if user_problem is not None:
        return reject(_id_reject_reason(user_problem, "user"))
    if item_problem is not None:
        return reject(_id_reject_reason(item_problem, "item"))
    timestamp = None
    if timestamp_col is not None:
        if fields.get(timestamp_col) in (None, ""):
            return reject("missing_or_bad_field:timestamp")
        timestamp, problem = parse_timestamp(fields.get(timestamp_col), timestamps)
        if problem is not None:
            return reject(problem)
    rating = None
    if rating_col is not None:
        rating = parse_number(fields.get(rating_col))
        if rating is None and fields.get(rating_col) not in (None, ""):
            return reject("bad_rating")
        if min_rating is not None and (rating is None or rating < min_rating):
            return reject("below_min_rating")
    event_type = None
    if event_type_col is not None and fields.get(event_type_col) not in (None, ""):
        value = fields.get(event_type_col)
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            return reject("bad_event_type")
        event_type = safe_text(str(value))[:64]
    return record(
        "event",
        user=user,
        item=item,
        timestamp=timestamp,
        rating=rating,
        event_type=event_type,
        event_order=order,
        line=line,
    )


# Sequence files separate tokens by ASCII blanks only: a token holding U+2028 or NEL is a bad id (and
# rejected as such), not two tokens, which str.split() would make of it.
_BLANKS = re.compile(r"[ \t\x0b\x0c]+")


def parse_sequence_line(raw_bytes: bytes, line: int) -> Iterator[dict[str, Any]]:
    """`user item item ...` (oldest first) -> one event per item token, or one reject."""
    text, raw = decode_line(raw_bytes)
    order0 = event_order(line)
    if text is None:
        yield record("reject", reason=_undecodable_reason(raw_bytes), line=line, raw=raw, event_order=order0)
        return
    tokens = [t for t in _BLANKS.split(text) if t]
    if not tokens:
        yield record("reject", reason="empty_line", line=line, raw=raw, event_order=order0)
        return
    user, problem = normalise_id(tokens[0])
    if problem is not None:
        yield record("reject", reason=_id_reject_reason(problem, "user"), line=line, raw=raw, event_order=order0)
        return
    if len(tokens) == 1:
        yield record("reject", reason="malformed_line:no_items", line=line, raw=raw, user=user, event_order=order0)
        return
    if len(tokens) - 1 > MAX_POSITION + 1:
        yield record(
            "reject", reason="malformed_line:too_many_items", line=line, raw=raw, user=user, event_order=order0
        )
        return
    for position, token in enumerate(tokens[1:]):
        order = event_order(line, position)
        item, problem = normalise_id(token)
        if problem is not None:
            reason = _id_reject_reason(problem, "item")
            yield record("reject", reason=reason, line=line, raw=_clip(token), user=user, event_order=order)
        else:
            yield record("event", user=user, item=item, event_order=order, line=line)


def split_header(header: str, delimiter: str, recbole: bool) -> list[str]:
    """Column names of a CSV/TSV header; RecBole writes `name:type`, we keep `name`."""
    names = next(csv.reader([header], delimiter=delimiter))
    return [n.split(":", 1)[0].strip() if recbole else n.strip() for n in names]


def _unreadable_line(raw_bytes: bytes, text: str | None, raw: str, line: int, order: int) -> dict[str, Any] | None:
    """The reject for an event-log line that is not UTF-8, over-long or blank; None when it can be parsed."""
    if text is None:
        return record("reject", reason=_undecodable_reason(raw_bytes), line=line, raw=raw, event_order=order)
    if not text.strip():
        return record("reject", reason="empty_line", line=line, raw=raw, event_order=order)
    return None


def parse_delimited_line(
    raw_bytes: bytes, line: int, columns: list[str], delimiter: str, **rules: Any
) -> dict[str, Any]:
    """One CSV/TSV record (lines.delimited_records: quoted newlines already joined) -> an event or a reject."""
    text, raw = decode_line(raw_bytes)
    order = event_order(line)
    if (unusable := _unreadable_line(raw_bytes, text, raw, line, order)) is not None:
        return unusable
    if text_lines.ends_in_open_quote(raw_bytes, delimiter.encode()):
        return record("reject", reason="malformed_line:unterminated_quote", line=line, raw=raw, event_order=order)
    try:
        values = next(csv.reader([text], delimiter=delimiter))
    except csv.Error:
        return record("reject", reason="malformed_line", line=line, raw=raw, event_order=order)
    if len(values) != len(columns):
        return record("reject", reason="malformed_line:column_count", line=line, raw=raw, event_order=order)
    return validate_event(dict(zip(columns, values, strict=True)), order=order, line=line, raw=raw, **rules)


def _json_object(text: str) -> tuple[Any, str | None]:
    try:
        return json.loads(text), None
    except (json.JSONDecodeError, RecursionError):  # RecursionError: [[[[...]]]] nested past the stack
        return None, "malformed_line:json"


def parse_json_line(raw_bytes: bytes, line: int, **rules: Any) -> dict[str, Any]:
    """One JSONL event line -> an event or a reject."""
    text, raw = decode_line(raw_bytes)
    order = event_order(line)
    if (unusable := _unreadable_line(raw_bytes, text, raw, line, order)) is not None:
        return unusable
    obj, problem = _json_object(text)
    if problem is not None:
        return record("reject", reason=problem, line=line, raw=raw, event_order=order)
    if not isinstance(obj, dict):
        return record("reject", reason="malformed_line:not_an_object", line=line, raw=raw, event_order=order)
    return validate_event(obj, order=order, line=line, raw=raw, **rules)


# ---- catalog --------------------------------------------------------------------------------------

CATALOG_FIELDS = ("item", "title", "categories", "brand", "price", "description")


def _catalog_reject(reason: str, line: int, raw: str, item: str | None = None) -> dict[str, Any]:
    return {"kind": "reject", "reason": reason, "line": line, "raw": raw, "item": item, "issues": []}


def catalog_record(
    obj: dict[str, Any], columns: dict[str, str], line: int, raw: str, max_text_chars: int, recbole: bool = False
) -> dict[str, Any]:
    """One catalog object -> a catalog row (kind "item") or a reject.

    A field that is present but unusable does not reject the row: it becomes null (or is joined, for a
    list-valued title or description) and its issue is listed in `issues` (counted by the stage)."""

    def get(field: str) -> Any:
        return obj.get(columns.get(field, field))

    item, problem = normalise_id(get("item"))
    if problem is not None:
        return _catalog_reject(_id_reject_reason(problem, "item"), line, safe_text(raw))
    title, t_cut, title_issue = parse_text(get("title"), max_text_chars, "title")
    description, d_cut, description_issue = parse_text(get("description"), max_text_chars, "description")
    brand, _, brand_issue = parse_text(get("brand"), 256, "brand")
    categories, categories_issue = parse_categories(get("categories"), token_separated=recbole)
    price, price_issue = parse_price(get("price"))
    issues = [i for i in (title_issue, description_issue, brand_issue, categories_issue, price_issue) if i]
    return {
        "kind": "item",
        "item": item,
        "title": title,
        "categories": categories,
        "brand": brand,
        "price": price,
        "description": description,
        "truncated": t_cut or d_cut,
        "issues": issues,
        "line": line,
        "raw": safe_text(raw),
    }


def parse_catalog_line(
    raw_bytes: bytes, line: int, columns: dict[str, str], max_text_chars: int, header: list[str] | None = None
) -> dict[str, Any]:
    """A JSONL catalog line, or a RecBole .item line when `header` is given."""
    text, raw = decode_line(raw_bytes)
    if text is None:
        return _catalog_reject(_undecodable_reason(raw_bytes), line, raw)
    if not text.strip():
        return _catalog_reject("empty_line", line, raw)
    if header is not None:
        values = text.split("\t")
        if len(values) != len(header):
            return _catalog_reject("malformed_line:column_count", line, raw)
        obj: Any = dict(zip(header, values, strict=True))
    else:
        obj, problem = _json_object(text)
        if problem is not None:
            return _catalog_reject(problem, line, raw)
    if not isinstance(obj, dict):
        return _catalog_reject("malformed_line:not_an_object", line, raw)
    return catalog_record(obj, columns, line, raw, max_text_chars, recbole=header is not None)
