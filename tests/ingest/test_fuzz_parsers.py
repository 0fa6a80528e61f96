"""Fuzzing the pure parsers (hypothesis, derandomized: the same examples on every run).

Random bytes, mutated valid lines and arbitrary JSON values must never crash a parser, every input
record must come out as exactly one record (a sequence line: one per item token, at least one), every
reject must carry a reason, and every string must be encodable as UTF-8 (Arrow and Spark need it).
8 properties x 250 examples (2,000 in all); about 15 s here.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from momorec.ingest import lines, parsing, readers
from momorec.ingest.config import EventSource
from momorec.ingest.values import TimestampRule, normalise_id, parse_categories, parse_price, parse_timestamp

FUZZ = settings(max_examples=250, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
RULES = dict(
    user_col="user",
    item_col="item",
    timestamp_col="timestamp",
    rating_col="rating",
    event_type_col="type",
    min_rating=None,
    timestamps=TimestampRule(),
)
COLUMNS = ["user", "item", "timestamp", "rating", "type"]
VALID_LINES = [
    b"u1,i1,1700000000,4.5,view",
    b'"u 2","i,2",1700000000000,,"a ""b"""',
    b'{"user": "u3", "item": 7, "timestamp": "2023-11-14T22:13:20Z", "rating": 3, "type": "buy"}',
    "u4 i1 i2 \u00e9t\u00e9".encode(),
]
# Bytes that break parsers: quotes, separators, line ends, invalid UTF-8, U+2028, NEL, BOM, NUL, braces.
NASTY = [b'"', b",", b"\t", b"\n", b"\r", b"\xff", b"\xc3", b"\xe2\x80\xa8", b"\xc2\x85", b"\xef\xbb\xbf", b"\x00"]
NASTY += [b"{", b"}", b"[", b"]", b"\\", b"\\ud800", b"1e999", b"NaN", b"\xef\xbf\xbd"]


@st.composite
def mutated_line(draw) -> bytes:
    line = bytearray(draw(st.sampled_from(VALID_LINES)))
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(line)))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(st.one_of(st.sampled_from(NASTY), st.binary(min_size=1, max_size=3)))
        if action == "insert":
            line[at:at] = piece
        elif action == "delete":
            del line[at : at + len(piece)]
        else:
            line[at : at + len(piece)] = piece
    return bytes(line)


raw_lines = st.one_of(st.binary(max_size=200), mutated_line())
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=12,
)


def assert_well_formed(record: dict) -> None:
    assert record["kind"] in ("event", "reject", "item")
    if record["kind"] == "reject":
        assert isinstance(record["reason"], str) and record["reason"]
    if record["kind"] == "event":
        assert isinstance(record["user"], str) and isinstance(record["item"], str)
        assert record["timestamp"] is None or 631_152_000 <= record["timestamp"] <= 4_102_444_800
        assert 0 <= record["event_order"] < 2**63
    for value in record.values():
        if isinstance(value, str):
            value.encode("utf-8")
        if isinstance(value, list):
            for v in value:
                v.encode("utf-8")


@FUZZ
@given(raw_lines)
def test_a_delimited_line_is_always_one_record(raw):
    raw = raw.replace(b"\n", b"")  # lines never hold their own line end
    record = parsing.parse_delimited_line(raw, 1, COLUMNS, ",", **RULES)
    assert_well_formed(record)
    assert record["kind"] in ("event", "reject") and record["line"] == 1


@FUZZ
@given(raw_lines)
def test_a_json_line_is_always_one_record(raw):
    record = parsing.parse_json_line(raw.replace(b"\n", b""), 5, **RULES)
    assert_well_formed(record)
    assert record["kind"] in ("event", "reject")


@FUZZ
@given(raw_lines)
def test_a_sequence_line_is_one_record_per_token_or_one_reject(raw):
    raw = raw.replace(b"\n", b"")
    records = list(parsing.parse_sequence_line(raw, 2))
    assert records
    for r in records:
        assert_well_formed(r)
    if len(records) > 1:
        assert len({r["event_order"] for r in records}) == len(records)  # exact: no two share a key


@FUZZ
@given(raw_lines)
def test_a_catalog_line_is_always_one_record(raw):
    record = parsing.parse_catalog_line(raw.replace(b"\n", b""), 0, {}, 64)
    assert_well_formed(record)


@FUZZ
@given(json_values, json_values, json_values, json_values)
def test_arbitrary_json_values_in_every_field_never_crash(user, item, timestamp, price):
    obj = {"user": user, "item": item, "timestamp": timestamp, "rating": price, "type": user}
    assert_well_formed(parsing.validate_event(obj, order=0, line=0, raw=repr(obj), **RULES))
    catalog = {"item": item, "title": user, "categories": timestamp, "price": price, "description": item}
    assert_well_formed(parsing.catalog_record(catalog, {}, 0, json.dumps(catalog, default=str), 64))
    normalise_id(user), parse_timestamp(timestamp), parse_price(price), parse_categories(timestamp)
    value, _ = parse_price(price)
    assert value is None or (math.isfinite(value) and value >= 0)


@FUZZ
@given(st.lists(st.one_of(mutated_line(), st.binary(max_size=40)), max_size=12))
def test_csv_records_cover_every_physical_line_exactly_once(body_lines):
    body = b"\n".join(body_lines)
    physical = list(lines.split_lines(io.BytesIO(body)))
    records = list(lines.delimited_records(physical, b","))
    spans = []
    for record, first in records:
        spans.extend(range(first, first + record.count(b"\n") + 1))
    assert spans == [n for _, n in physical]


@FUZZ
@given(st.binary(max_size=300), st.sampled_from(["events.csv", "events.tsv", "events.jsonl", "seq.txt", "e.csv.gz"]))
def test_a_whole_file_of_random_bytes_conserves_its_records(body, name):
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, name)
        header = b"user\titem\ttimestamp\n" if name.endswith(".tsv") else b"user,item,timestamp\n"
        data = body if name.endswith((".jsonl", ".txt")) else header + body
        if name.endswith(".gz"):
            import gzip

            data = gzip.compress(data)
        with open(path, "wb") as fh:
            fh.write(data)
        source = EventSource(path=path, kind="sequences" if name.endswith(".txt") else "events")
        columns = readers.event_columns(source, path) if name.endswith((".csv", ".tsv", ".gz")) else None
        records = list(readers.parse_text_events(source, path, None, columns))
        physical = list(lines.read_lines(path))
    for r in records:
        assert_well_formed(r)
    if source.kind == "sequences":
        assert {r["line"] for r in records} == {n for _, n in physical}  # every line gave at least one record
    else:
        skip = 0 if name.endswith(".jsonl") else 1
        # one record per CSV record / JSON line, numbered by its first physical line
        assert len({r["line"] for r in records}) == len(records)
        assert all(skip <= r["line"] < len(physical) for r in records)
        if name.endswith(".jsonl"):
            assert len(records) == len(physical)


@FUZZ
@given(
    st.lists(st.one_of(mutated_line(), st.binary(max_size=30), st.just(b"\xef\xbb\xbf")), max_size=15),
    st.integers(1, 60),
    st.sampled_from([b"\n", b"\r\n"]),
)
def test_byte_ranges_read_every_line_once_with_its_whole_file_number(body_lines, range_bytes, ending):
    body = ending.join(line.replace(b"\n", b"") for line in body_lines)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "events.jsonl")
        with open(path, "wb") as fh:
            fh.write(body)
        ranges = lines.byte_ranges(len(body), range_bytes)
        counts = [lines.count_newlines(path, start, end) for start, end in ranges]
        by_range = [
            r for byte_range in readers.numbered_ranges(ranges, counts) for r in lines.read_range(path, *byte_range)
        ]
        assert by_range == list(lines.read_lines(path))
        source = EventSource(path=path)
        ranged = [
            r
            for byte_range in readers.numbered_ranges(ranges, counts)
            for r in readers.parse_text_events(source, path, None, None, byte_range)
        ]
        assert ranged == list(readers.parse_text_events(source, path, None, None))
