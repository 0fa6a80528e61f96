"""Pure row parsers, without Spark."""

from __future__ import annotations

import json

import pytest

from momorec.ingest import parsing
from momorec.ingest.values import TimestampRule

RULES = dict(
    user_col="user",
    item_col="item",
    timestamp_col="timestamp",
    rating_col="rating",
    event_type_col=None,
    min_rating=None,
    timestamps=TimestampRule(min_seconds=0),  # these lines use small made-up times
)
COLUMNS = ["user", "item", "timestamp", "rating"]


def parse_csv(line: bytes, **overrides):
    rules = {**RULES, **overrides}
    return parsing.parse_delimited_line(line, 7, COLUMNS, ",", **rules)


def test_a_good_csv_line_is_an_event():
    rec = parse_csv(b"u1,i1,1000,4.5")
    assert rec["kind"] == "event"
    assert (rec["user"], rec["item"], rec["timestamp"], rec["rating"], rec["line"]) == ("u1", "i1", 1000.0, 4.5, 7)


@pytest.mark.parametrize(
    "line, reason",
    [
        (b"", "empty_line"),
        (b"u1,,1000,4", "missing_or_bad_field:item"),
        (b",i1,1000,4", "missing_or_bad_field:user"),
        (b"u1,i1,,4", "missing_or_bad_field:timestamp"),
        (b"u1,i1,yesterday,4", "bad_timestamp"),
        (b"u1,i1,1000,great", "bad_rating"),
        (b"u1,i1,1000", "malformed_line:column_count"),
        (b"u1,i\xff,1000,4", "invalid_utf8"),
        (b"u1,i1,inf,4", "bad_timestamp:range"),
        (b"u1,i1,nan,4", "bad_timestamp"),
    ],
)
def test_bad_csv_lines_are_rejected_with_a_reason(line, reason):
    rec = parse_csv(line)
    assert rec["kind"] == "reject"
    assert rec["reason"] == reason
    assert rec["line"] == 7


def test_min_rating_turns_explicit_feedback_into_implicit():
    assert parse_csv(b"u1,i1,1000,2", min_rating=3.0)["reason"] == "below_min_rating"
    assert parse_csv(b"u1,i1,1000,3", min_rating=3.0)["kind"] == "event"


def test_iso_timestamps_are_unix_seconds():
    since_1970 = TimestampRule(min_seconds=0)
    assert parsing.parse_timestamp("1970-01-01T00:01:40Z", since_1970) == (100.0, None)
    assert parsing.parse_timestamp("1970-01-01T00:01:40", since_1970) == (100.0, None)
    assert parsing.parse_timestamp("not a time") == (None, "bad_timestamp")


def test_a_sequence_line_yields_one_event_per_item_in_order():
    recs = list(parsing.parse_sequence_line(b"u1 a b a", line=3))
    assert [r["item"] for r in recs] == ["a", "b", "a"]
    orders = [r["event_order"] for r in recs]
    assert orders == sorted(orders) and len(set(orders)) == 3
    assert orders[0] == parsing.event_order(3, 0)
    assert all(r["timestamp"] is None for r in recs)


@pytest.mark.parametrize(
    "line, reason",
    [(b"", "empty_line"), (b"   ", "empty_line"), (b"u1", "malformed_line:no_items"), (b"u1 \xc3(", "invalid_utf8")],
)
def test_bad_sequence_lines_become_one_reject(line, reason):
    recs = list(parsing.parse_sequence_line(line, line=0))
    assert len(recs) == 1
    assert recs[0]["kind"] == "reject" and recs[0]["reason"] == reason


def test_event_order_sorts_by_line_then_position():
    keys = [(5, 0), (5, 9), (6, 0), (2**30, 0), (2**30, 1)]
    orders = [parsing.event_order(*k) for k in keys]
    assert orders == sorted(orders)


def test_json_event_lines():
    good = parsing.parse_json_line(json.dumps({"user": 1, "item": "x", "timestamp": 5}).encode(), 0, **RULES)
    assert good["kind"] == "event" and good["user"] == "1"
    assert parsing.parse_json_line(b"[1, 2]", 0, **RULES)["reason"] == "malformed_line:not_an_object"
    assert parsing.parse_json_line(b"{oops", 0, **RULES)["reason"] == "malformed_line:json"


def test_catalog_rows_flatten_categories_and_truncate_long_text():
    obj = {"item": "i1", "title": "T" * 5000, "categories": [["Beauty"], ["Beauty", "Skin", "Face"]], "price": "9.5"}
    rec = parsing.parse_catalog_line(json.dumps(obj).encode(), 0, columns={}, max_text_chars=100)
    assert rec["kind"] == "item"
    assert rec["categories"] == ["Beauty", "Skin", "Face"]
    assert len(rec["title"]) == 100 and rec["truncated"]
    assert rec["price"] == 9.5


def test_recbole_catalog_columns_are_mapped():
    header = ["item_id", "movie_title", "release_year", "class"]
    rec = parsing.parse_catalog_line(
        b"1\tToy Story\t1995\tAnimation Comedy",
        1,
        columns={"item": "item_id", "title": "movie_title", "categories": "class"},
        max_text_chars=100,
        header=header,
    )
    assert (rec["item"], rec["title"], rec["categories"]) == ("1", "Toy Story", ["Animation", "Comedy"])
