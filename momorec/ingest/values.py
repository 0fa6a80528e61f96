"""Pure value normalisers of ingest: one raw field -> (clean value, None) or (None, reason).

Every function here takes whatever a CSV cell, a JSON value or a Parquet cell can be (str, int, float,
bool, None, list, dict, datetime, Decimal, bytes, a Spark Row) and never raises: a value it cannot use
comes back with the reason that goes to the `rejects` table (or to the catalog's counted issues).
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

MAX_ID_CHARS = 256

# Unicode categories an id may not contain: controls (Cc: NUL, TAB, NEL U+0085 ...), format
# characters (Cf: zero-width spaces and joiners, BOM, direction marks: invisible, so two ids that print
# alike would differ), line and paragraph separators (Zl U+2028, Zp U+2029), lone surrogates (Cs: not
# encodable as UTF-8) and private use (Co). Space separators (Zs) other than the plain space U+0020 are
# rejected too: a no-break or ideographic space inside an id is almost always a copy-paste accident,
# and mapping it to a plain space would merge ids silently.
_FORBIDDEN_ID_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co"})


def safe_text(text: str) -> str:
    """The text with lone surrogates (which JSON can spell as \\ud800) replaced, so it encodes as UTF-8."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", errors="replace").decode("utf-8")


def _bad_id_characters(text: str) -> bool:
    if text.isascii() and text.isprintable():  # the common case, without a per-character lookup
        return False
    return any((cat := unicodedata.category(c)) in _FORBIDDEN_ID_CATEGORIES or (cat == "Zs" and c != " ") for c in text)


def normalise_id(value: Any) -> tuple[str | None, str | None]:
    """An id as its canonical string, or (None, reason).

    Accepted: strings and integers. A string is NFC-normalised and stripped of surrounding whitespace;
    an integer is its decimal form, so the JSON number 7, the CSV cell "7" and a Parquet int 7 are the
    same id, as before. An integral float (pandas writes an int column with gaps as float64) is its
    integer: 7.0 -> "7". Reasons: missing (None or ""), bad_id:type (bool, list, dict, bytes, a
    non-integral or non-finite float), bad_id:empty (only whitespace), bad_id:characters (see
    _FORBIDDEN_ID_CATEGORIES), bad_id:too_long (more than MAX_ID_CHARS characters).
    """
    if value is None or (isinstance(value, str) and value == ""):
        return None, "missing"
    if isinstance(value, bool):
        return None, "bad_id:type"
    if isinstance(value, int):
        return str(value), None
    if isinstance(value, float | Decimal):
        if not math.isfinite(value) or value != int(value):
            return None, "bad_id:type"
        return str(int(value)), None
    if not isinstance(value, str):
        return None, "bad_id:type"
    text = unicodedata.normalize("NFC", value).strip()
    if not text:
        return None, "bad_id:empty"
    if _bad_id_characters(text):
        return None, "bad_id:characters"
    if len(text) > MAX_ID_CHARS:
        return None, "bad_id:too_long"
    return text, None


def clean_id(value: Any) -> str | None:
    """normalise_id without the reason."""
    return normalise_id(value)[0]


# ---- timestamps -----------------------------------------------------------------------------------

# A unix time in seconds below 1e11 is before the year 5138; larger numbers in real logs are finer units.
_AUTO_UNITS = ((1e17, 1e9), (1e14, 1e6), (1e11, 1e3))
_UNIT_DIVISORS = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}


@dataclass(frozen=True)
class TimestampRule:
    """Which event times are plausible. unit "auto": a number >= 1e11 is read as milliseconds, >= 1e14
    as microseconds, >= 1e17 as nanoseconds; any other unit divides every number by that unit."""

    min_seconds: float = 631_152_000.0  # 1990-01-01T00:00:00Z
    max_seconds: float = 4_102_444_800.0  # 2100-01-01T00:00:00Z
    unit: str = "auto"

    def seconds(self, number: float) -> float:
        if self.unit != "auto":
            return number / _UNIT_DIVISORS[self.unit]
        for threshold, divisor in _AUTO_UNITS:
            if abs(number) >= threshold:
                return number / divisor
        return number


def _number_or_none(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number


def _iso_seconds(text: str) -> float | None:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:  # an ISO time without a zone is UTC, so a file means the same everywhere
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _raw_seconds(value: Any, rule: TimestampRule) -> float | None:
    """Unix seconds before the range check; None when the value is not a time at all."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal):
        return rule.seconds(float(value))
    if isinstance(value, datetime):
        # A naive datetime comes from Spark's TimestampType, which converts to local time.
        return value.timestamp()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()
    if not isinstance(value, str):
        return None
    text = value.strip()
    number = _number_or_none(text)
    if number is not None:
        return rule.seconds(number)
    return _iso_seconds(text)


def parse_timestamp(value: Any, rule: TimestampRule | None = None) -> tuple[float | None, str | None]:
    """Unix seconds from a number, a numeric string, an ISO-8601 string or a datetime, or (None, reason):
    bad_timestamp (not a time, NaN), bad_timestamp:range (outside [rule.min_seconds, rule.max_seconds]
    after the unit rule, infinities included)."""
    rule = rule or TimestampRule()
    try:
        seconds = _raw_seconds(value, rule)
    except (OverflowError, ValueError, OSError):  # a datetime or Decimal far outside the platform's range
        return None, "bad_timestamp:range"
    if seconds is None or math.isnan(seconds):
        return None, "bad_timestamp"
    if not rule.min_seconds <= seconds <= rule.max_seconds:
        return None, "bad_timestamp:range"
    return seconds, None


def parse_number(value: Any) -> float | None:
    """A finite float from a number or a numeric string; None otherwise (booleans included)."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    if not isinstance(value, int | float | Decimal | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


# ---- catalog fields -------------------------------------------------------------------------------

_CURRENCY = r"(?:[$€£¥₹]|[A-Z]{3}|US\$|R\$)"
_PRICE = re.compile(rf"^{_CURRENCY}?\s*(?P<number>[0-9][0-9.,' \u00a0\u202f]*)\s*{_CURRENCY}?$")


def _decimal_string(number: str) -> str | None:
    """'1,299.00' / '1.299,00' / '12,99' / '1 299' -> a float literal; None when ambiguous garbage.

    Rule: spaces and apostrophes group thousands. With both '.' and ',' the last one is the decimal
    separator. A lone kind of separator is a decimal separator when it occurs once and is not followed by
    exactly three digits ('12,99', '12.5'); otherwise it groups thousands ('1,299', '1.299.000')."""
    number = re.sub(r"[' \u00a0\u202f]", "", number)
    if "," in number and "." in number:
        decimal = "," if number.rfind(",") > number.rfind(".") else "."
        thousands = "." if decimal == "," else ","
        number = number.replace(thousands, "").replace(decimal, ".")
    elif "," in number or "." in number:
        sep = "," if "," in number else "."
        head, _, tail = number.rpartition(sep)
        if number.count(sep) == 1 and len(tail) != 3:
            number = f"{head}.{tail}"
        elif all(len(group) == 3 for group in number.split(sep)[1:]):
            number = number.replace(sep, "")
        else:
            return None
    return number if re.fullmatch(r"[0-9]+(?:\.[0-9]+)?", number) else None


def parse_price(value: Any) -> tuple[float | None, str | None]:
    """A price as a float, from a number or a currency string ("$12.99", "12,99 €", "USD 12.99",
    "1.299,00 EUR"); the currency is dropped. (None, None) when absent; (None, issue) when present but
    unusable: price:unparsed (a range like "$5 - $9", words, a list), price:negative."""
    if value is None or value == "":
        return None, None
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        return None, "price:unparsed"
    if isinstance(value, str):
        match = _PRICE.match(value.strip())
        literal = _decimal_string(match.group("number").strip()) if match else None
        if literal is None:
            return None, "price:unparsed"
        value = literal
    number = parse_number(value)
    if number is None:
        return None, "price:unparsed"
    if number < 0:
        return None, "price:negative"
    return number, None


# Category paths written as one string: "Beauty > Skin Care > Face" or "Beauty|Skin Care". A "/" is not
# a separator: it occurs inside real category names ("Bath/Shower", "Sun/Tanning").
_HIERARCHY = re.compile(r"\s*[>|]\s*")
MAX_CATEGORIES = 32
MAX_CATEGORY_CHARS = 128


def _scalar_text(value: Any) -> str | None:
    if isinstance(value, str):
        return safe_text(value).strip() or None
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return str(value)
    return None


def parse_categories(value: Any, token_separated: bool = False) -> tuple[list[str], str | None]:
    """Categories as a flat list, and an issue when some value could not be used.

    A list of paths (Amazon's [[a, b, c], [a, d]]) -> the longest path; a flat list -> its strings; a
    string with '>' or '|' -> its parts; any other string -> one category, or, for RecBole token
    sequences (`token_separated`, e.g. "Animation Comedy"), its space-separated tokens. Values that are
    not strings or numbers (dicts, booleans, deeper lists) are dropped: issue categories:dropped_values."""
    if value is None or value == "":
        return [], None
    if isinstance(value, str):
        text = safe_text(value).strip()
        if _HIERARCHY.search(text):
            parts = _HIERARCHY.split(text)
        else:
            parts = text.split() if token_separated else [text]
        return [p[:MAX_CATEGORY_CHARS] for p in parts if p][:MAX_CATEGORIES], None
    if not isinstance(value, list):
        scalar = _scalar_text(value)
        return ([scalar[:MAX_CATEGORY_CHARS]], None) if scalar else ([], "categories:dropped_values")
    paths = [v for v in value if isinstance(v, list)]
    chosen = max(paths, key=len) if paths else value
    names = [_scalar_text(v) for v in chosen]
    kept = [n[:MAX_CATEGORY_CHARS] for n in names if n]
    dropped = any(n is None and v is not None for n, v in zip(names, chosen, strict=True))
    dropped = dropped or (bool(paths) and len(paths) != len(value))
    return kept[:MAX_CATEGORIES], "categories:dropped_values" if dropped else None


def parse_text(value: Any, max_chars: int, field: str) -> tuple[str | None, bool, str | None]:
    """(text, truncated?, issue). A list of strings or numbers (Amazon writes some descriptions as a list
    of paragraphs) is joined with spaces: issue <field>:joined. A dict, a boolean or a nested list
    becomes null: issue <field>:bad_type."""
    if value is None:
        return None, False, None
    issue = None
    if isinstance(value, list):
        parts = [_scalar_text(v) for v in value]
        if any(p is None and v is not None for p, v in zip(parts, value, strict=True)):
            return None, False, f"{field}:bad_type"
        text, issue = " ".join(p for p in parts if p), f"{field}:joined"
    else:
        scalar = _scalar_text(value)
        if scalar is None and not isinstance(value, str):
            return None, False, f"{field}:bad_type"
        text = scalar or ""
    text = text.strip()
    if len(text) > max_chars:
        return text[:max_chars], True, issue
    return text or None, False, issue
