"""Pure row parsers: one raw input line (bytes) -> accepted records or a reject with a reason.

Run inside Spark (`rdd.flatMap`) and unit-tested without it. Every line yields at least one record,
so rows in = rows accepted + rows rejected holds by construction: an event-log line is one record; a
sequence line is one record per item token (or one reject when it has no usable item).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

MAX_ID_CHARS = 256
MAX_RAW_CHARS = 1024

# event_order packs (batch, line, position) into one sortable int64: batch < 2^13, line < 2^30, pos < 2^20.
LINE_BITS = 30
POS_BITS = 20


def event_order(batch: int, line: int, position: int = 0) -> int:
    return (batch << (LINE_BITS + POS_BITS)) | (line << POS_BITS) | position


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
    """(text, printable raw). text is None when the bytes are not valid UTF-8."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, _clip(raw.decode("utf-8", errors="replace"))
    # Spark's text reader decodes through Java strings, which turns invalid bytes into U+FFFD
    # before we see them; a replacement character therefore marks a line that was not UTF-8.
    if "\ufffd" in text:
        return None, _clip(text.rstrip("\r"))
    return text.rstrip("\r"), _clip(text.rstrip("\r"))


def clean_id(value: Any) -> str | None:
    """A usable raw id: a non-empty string without control characters, at most 256 chars; else None."""
    if value is None:
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        value = int(value) if value.is_integer() else value
    text = str(value).strip()
    if not text or len(text) > MAX_ID_CHARS or any(ord(c) < 32 for c in text):
        return None
    return text


def parse_timestamp(value: Any) -> float | None:
    """Unix seconds from a number or an ISO-8601 string; None when it cannot be read."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) if math.isfinite(float(value)) else None
    text = str(value).strip()
    try:
        number = float(text)
        return number if math.isfinite(number) else None
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


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
) -> dict[str, Any]:
    """One event-log row (already split into named fields) -> an event or a reject record."""

    def reject(reason: str) -> dict[str, Any]:
        return record(
            "reject",
            reason=reason,
            line=line,
            raw=raw,
            event_order=order,
            user=clean_id(fields.get(user_col)),
            item=clean_id(fields.get(item_col)),
        )

    user, item = clean_id(fields.get(user_col)), clean_id(fields.get(item_col))
    if user is None:
        return reject("missing_or_bad_field:user")
    if item is None:
        return reject("missing_or_bad_field:item")
    timestamp = None
    if timestamp_col is not None:
        if fields.get(timestamp_col) in (None, ""):
            return reject("missing_or_bad_field:timestamp")
        timestamp = parse_timestamp(fields.get(timestamp_col))
        if timestamp is None:
            return reject("bad_timestamp")
    rating = None
    if rating_col is not None:
        rating = _number(fields.get(rating_col))
        if rating is None and fields.get(rating_col) not in (None, ""):
            return reject("bad_rating")
        if min_rating is not None and (rating is None or rating < min_rating):
            return reject("below_min_rating")
    event_type = None
    if event_type_col is not None and fields.get(event_type_col) not in (None, ""):
        event_type = str(fields.get(event_type_col))[:64]
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


def parse_sequence_line(raw_bytes: bytes, line: int, batch: int) -> Iterator[dict[str, Any]]:
    """`user item item ...` (oldest first) -> one event per item token, or one reject."""
    text, raw = decode_line(raw_bytes)
    order0 = event_order(batch, line)
    if text is None:
        yield record("reject", reason="invalid_utf8", line=line, raw=raw, event_order=order0)
        return
    tokens = text.split()
    if not tokens:
        yield record("reject", reason="empty_line", line=line, raw=raw, event_order=order0)
        return
    user = clean_id(tokens[0])
    if user is None:
        yield record("reject", reason="missing_or_bad_field:user", line=line, raw=raw, event_order=order0)
        return
    if len(tokens) == 1:
        yield record("reject", reason="malformed_line:no_items", line=line, raw=raw, user=user, event_order=order0)
        return
    if len(tokens) - 1 >= (1 << POS_BITS):
        yield record(
            "reject", reason="malformed_line:too_many_items", line=line, raw=raw, user=user, event_order=order0
        )
        return
    for position, token in enumerate(tokens[1:]):
        order = event_order(batch, line, position)
        item = clean_id(token)
        if item is None:
            yield record(
                "reject", reason="missing_or_bad_field:item", line=line, raw=_clip(token), user=user, event_order=order
            )
        else:
            yield record("event", user=user, item=item, event_order=order, line=line)


def split_header(header: str, delimiter: str, recbole: bool) -> list[str]:
    """Column names of a CSV/TSV header; RecBole writes `name:type`, we keep `name`."""
    names = next(csv.reader([header], delimiter=delimiter))
    return [n.split(":", 1)[0].strip() if recbole else n.strip() for n in names]


def _unreadable_line(text: str | None, raw: str, line: int, order: int) -> dict[str, Any] | None:
    """The reject for an event-log line that is not UTF-8 or is blank; None when it can be parsed."""
    if text is None:
        return record("reject", reason="invalid_utf8", line=line, raw=raw, event_order=order)
    if not text.strip():
        return record("reject", reason="empty_line", line=line, raw=raw, event_order=order)
    return None


def parse_delimited_line(
    raw_bytes: bytes, line: int, batch: int, columns: list[str], delimiter: str, **rules: Any
) -> dict[str, Any]:
    """One CSV/TSV data line -> an event or a reject."""
    text, raw = decode_line(raw_bytes)
    order = event_order(batch, line)
    if (unusable := _unreadable_line(text, raw, line, order)) is not None:
        return unusable
    try:
        values = next(csv.reader([text], delimiter=delimiter))
    except csv.Error:
        return record("reject", reason="malformed_line", line=line, raw=raw, event_order=order)
    if len(values) != len(columns):
        return record("reject", reason="malformed_line:column_count", line=line, raw=raw, event_order=order)
    return validate_event(dict(zip(columns, values, strict=True)), order=order, line=line, raw=raw, **rules)


def parse_json_line(raw_bytes: bytes, line: int, batch: int, **rules: Any) -> dict[str, Any]:
    """One JSONL event line -> an event or a reject."""
    text, raw = decode_line(raw_bytes)
    order = event_order(batch, line)
    if (unusable := _unreadable_line(text, raw, line, order)) is not None:
        return unusable
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return record("reject", reason="malformed_line:json", line=line, raw=raw, event_order=order)
    if not isinstance(obj, dict):
        return record("reject", reason="malformed_line:not_an_object", line=line, raw=raw, event_order=order)
    return validate_event(obj, order=order, line=line, raw=raw, **rules)


# ---- catalog --------------------------------------------------------------------------------------

CATALOG_FIELDS = ("item", "title", "categories", "brand", "price", "description")


def _categories(value: Any) -> list[str]:
    """Categories as a flat list: the Amazon nested paths [[a, b, c]] -> the longest path; a string
    (RecBole `class`: space separated) -> its tokens."""
    if value is None:
        return []
    if isinstance(value, str):
        return [v for v in value.split() if v][:32]
    if isinstance(value, list):
        paths = [v for v in value if isinstance(v, list)]
        if paths:
            return [str(c)[:128] for c in max(paths, key=len)][:32]
        return [str(c)[:128] for c in value if c is not None][:32]
    return [str(value)[:128]]


def _text(value: Any, max_chars: int) -> tuple[str | None, bool]:
    """(text, truncated?)"""
    if value is None:
        return None, False
    text = str(value).strip()
    if len(text) > max_chars:
        return text[:max_chars], True
    return text or None, False


def catalog_record(
    obj: dict[str, Any], columns: dict[str, str], line: int, raw: str, max_text_chars: int
) -> dict[str, Any]:
    """One catalog object -> a catalog row (kind "item") or a reject."""

    def get(field: str) -> Any:
        return obj.get(columns.get(field, field))

    item = clean_id(get("item"))
    if item is None:
        return {"kind": "reject", "reason": "missing_or_bad_field:item", "line": line, "raw": raw}
    title, t_cut = _text(get("title"), max_text_chars)
    description, d_cut = _text(get("description"), max_text_chars)
    brand, _ = _text(get("brand"), 256)
    return {
        "kind": "item",
        "item": item,
        "title": title,
        "categories": _categories(get("categories")),
        "brand": brand,
        "price": _number(get("price")),
        "description": description,
        "truncated": t_cut or d_cut,
        "line": line,
        "raw": raw,
    }


def parse_catalog_line(
    raw_bytes: bytes, line: int, columns: dict[str, str], max_text_chars: int, header: list[str] | None = None
) -> dict[str, Any]:
    """A JSONL catalog line, or a RecBole .item line when `header` is given."""
    text, raw = decode_line(raw_bytes)
    if text is None:
        return {"kind": "reject", "reason": "invalid_utf8", "line": line, "raw": raw}
    if not text.strip():
        return {"kind": "reject", "reason": "empty_line", "line": line, "raw": raw}
    if header is not None:
        values = text.split("\t")
        if len(values) != len(header):
            return {"kind": "reject", "reason": "malformed_line:column_count", "line": line, "raw": raw}
        obj: Any = dict(zip(header, values, strict=True))
    else:
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            return {"kind": "reject", "reason": "malformed_line:json", "line": line, "raw": raw}
    if not isinstance(obj, dict):
        return {"kind": "reject", "reason": "malformed_line:not_an_object", "line": line, "raw": raw}
    return catalog_record(obj, columns, line, raw, max_text_chars)
