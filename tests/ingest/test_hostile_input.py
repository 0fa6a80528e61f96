"""Pure tests of the hostile-input rules: ids, times, prices, CSV framing, line reading, the order key."""

from __future__ import annotations

import bz2
import gzip
import importlib.util
import io
import lzma

import pytest

from momorec.ingest import lines, parsing, readers
from momorec.ingest.config import EventSource
from momorec.ingest.values import (
    TimestampRule,
    normalise_id,
    parse_categories,
    parse_price,
    parse_text,
    parse_timestamp,
)

# ---- ids ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [(7, "7"), ("7", "7"), (" 7 ", "7"), (7.0, "7"), ("007", "007"), ("u1", "u1"), (-3, "-3"), (2**70, str(2**70))],
)
def test_ids_that_were_valid_map_to_the_same_string_as_before(value, expected):
    assert normalise_id(value) == (expected, None)


@pytest.mark.parametrize(
    "value, reason",
    [
        ([1, 2], "bad_id:type"),
        ({"x": 1}, "bad_id:type"),
        (True, "bad_id:type"),
        (False, "bad_id:type"),
        (3.5, "bad_id:type"),
        (float("nan"), "bad_id:type"),
        (float("inf"), "bad_id:type"),
        (b"bytes", "bad_id:type"),
        ("a\u2028b", "bad_id:characters"),
        ("a\u0085b", "bad_id:characters"),
        ("a\u3000b", "bad_id:characters"),  # ideographic space (Zs)
        ("a\u200db", "bad_id:characters"),  # zero-width joiner (Cf)
        ("a\ue000b", "bad_id:characters"),  # private use
        (" \t ", "bad_id:empty"),
        ("x" * 257, "bad_id:too_long"),
        (None, "missing"),
        ("", "missing"),
    ],
)
def test_unusable_ids_are_rejected_with_a_reason(value, reason):
    assert normalise_id(value) == (None, reason)


def test_nfc_and_nfd_spellings_are_one_id_and_a_plain_space_inside_is_kept():
    assert normalise_id("Jose\u0301")[0] == normalise_id("Jos\u00e9")[0] == "Jos\u00e9"
    assert normalise_id("x" * 256) == ("x" * 256, None)
    assert normalise_id("two words") == ("two words", None)


# ---- timestamps -----------------------------------------------------------------------------------

T = 1_700_000_000


@pytest.mark.parametrize(
    "value, expected",
    [
        (-1e18, (None, "bad_timestamp:range")),
        (1e300, (None, "bad_timestamp:range")),
        (float("nan"), (None, "bad_timestamp")),
        (10**400, (None, "bad_timestamp:range")),
        (T, (T, None)),
        (T * 1000, (T, None)),
        (str(T * 1000), (T, None)),
        (True, (None, "bad_timestamp")),
        ([T], (None, "bad_timestamp")),
        ("9999-12-31T23:59:59Z", (None, "bad_timestamp:range")),
    ],
)
def test_timestamps_outside_the_range_are_rejected_and_milliseconds_are_converted(value, expected):
    assert parse_timestamp(value) == expected


def test_an_explicit_unit_applies_to_every_number_and_the_range_is_configurable():
    assert parse_timestamp(T * 1000, TimestampRule(unit="ms")) == (T, None)
    assert parse_timestamp(T, TimestampRule(unit="ms")) == (None, "bad_timestamp:range")  # 1970 in ms
    assert parse_timestamp(5, TimestampRule(min_seconds=0, max_seconds=10, unit="s")) == (5, None)
    assert parse_timestamp(11, TimestampRule(min_seconds=0, max_seconds=10, unit="s")) == (None, "bad_timestamp:range")


def test_ingest_config_carries_the_range_and_rejects_an_empty_one():
    from momorec.config import ConfigError, load_config
    from momorec.ingest.stage import timestamp_rule

    cfg = load_config(None, ["dataset=t", "ingest.min_timestamp=0", "ingest.timestamp_unit=ms"])
    assert timestamp_rule(cfg.ingest) == TimestampRule(min_seconds=0, max_seconds=4_102_444_800, unit="ms")
    with pytest.raises(ConfigError, match="min_timestamp"):
        load_config(None, ["dataset=t", "ingest.min_timestamp=5e9"])


# ---- catalog fields -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        ("$12.99", (12.99, None)),
        ("12,99 €", (12.99, None)),
        ("USD 12.99", (12.99, None)),
        ("EUR 1.299,00", (1299.0, None)),
        ("1,299.00", (1299.0, None)),
        ("1 299,50", (1299.5, None)),
        ("12.5", (12.5, None)),
        (9, (9.0, None)),
        (None, (None, None)),
        ("", (None, None)),
        ("$5 - $9", (None, "price:unparsed")),
        ("12.34.5", (None, "price:unparsed")),
        ("call us", (None, "price:unparsed")),
        ([1], (None, "price:unparsed")),
        (-1, (None, "price:negative")),
        (float("inf"), (None, "price:unparsed")),
    ],
)
def test_prices_parse_currency_strings_or_say_why_not(value, expected):
    assert parse_price(value) == expected


def test_category_strings_split_on_hierarchy_separators_only():
    assert parse_categories("Skin Care > Face") == (["Skin Care", "Face"], None)
    assert parse_categories("Beauty|Skin Care|Face") == (["Beauty", "Skin Care", "Face"], None)
    assert parse_categories("Sun/Tanning") == (["Sun/Tanning"], None)
    assert parse_categories("Animation Comedy", token_separated=True) == (["Animation", "Comedy"], None)
    assert parse_categories([["A", "B"], ["A"]]) == (["A", "B"], None)
    assert parse_categories([["A"], "stray"]) == (["A"], "categories:dropped_values")


def test_list_titles_are_joined_and_objects_become_null_with_an_issue():
    assert parse_text(["Big", "Soap"], 100, "title") == ("Big Soap", False, "title:joined")
    assert parse_text({"en": "x"}, 100, "title") == (None, False, "title:bad_type")
    assert parse_text(True, 100, "title") == (None, False, "title:bad_type")
    assert parse_text("x" * 20, 16, "title") == ("x" * 16, True, None)


# ---- line reading and CSV framing -----------------------------------------------------------------


def test_lines_split_on_lf_only_with_crlf_and_a_leading_bom_dropped():
    data = b"\xef\xbb\xbfa\r\nb\rc\n\xef\xbb\xbfd\n\ne"
    assert list(lines.split_lines(io.BytesIO(data))) == [
        (b"a", 0),
        (b"b\rc", 1),
        (b"\xef\xbb\xbfd", 2),
        (b"", 3),
        (b"e", 4),
    ]


def test_an_overlong_line_is_one_marker_and_the_next_line_is_read():
    data = b"short\n" + b"x" * 100 + b"\nafter\n"
    assert list(lines.split_lines(io.BytesIO(data), max_line_bytes=50)) == [
        (b"short", 0),
        (lines.OVERLONG_LINE, 1),
        (b"after", 2),
    ]
    assert parsing.parse_json_line(lines.OVERLONG_LINE, 1)["reason"] == "malformed_line:too_long"


def test_a_line_over_the_limit_that_crosses_byte_ranges_is_read_once(tmp_path):
    path = tmp_path / "seq.txt"
    path.write_bytes(b"\xef\xbb\xbfu1 a b\r\n" + b"u2 " + b"x" * 200 + b"\nu3 c d\n")
    ranges = lines.byte_ranges(path.stat().st_size, 16)
    counts = [lines.count_newlines(str(path), *r) for r in ranges]
    got = [
        rec
        for r in readers.numbered_ranges(ranges, counts)
        for rec in lines.read_range(str(path), *r, max_line_bytes=100)
    ]
    assert got == [(b"u1 a b", 0), (lines.OVERLONG_LINE, 1), (b"u3 c d", 2)]
    assert not readers._split_by_range(EventSource(path=str(path), kind="sequences"), str(path))  # small: whole


def test_compressed_inputs_are_read_by_their_inner_extension(tmp_path):
    body = b'{"user": "u", "item": "i", "timestamp": 1700000000}\n'
    for name, data in (
        ("e.jsonl.gz", gzip.compress(body)),
        ("e.jsonl.bz2", bz2.compress(body)),
        ("e.jsonl.xz", lzma.compress(body)),
    ):
        path = tmp_path / name
        path.write_bytes(data)
        assert readers.detect_format(str(path), "auto") == "jsonl"
        records = list(readers.parse_text_events(EventSource(path=str(path)), str(path), None, None))
        assert [(r["kind"], r["user"], r["item"]) for r in records] == [("event", "u", "i")]


def test_zstd_without_the_zstandard_package_is_a_clear_error(tmp_path):
    path = tmp_path / "e.jsonl.zst"
    path.write_bytes(b"\x28\xb5\x2f\xfd")
    assert readers.detect_format(str(path), "auto") == "jsonl"
    if importlib.util.find_spec("zstandard") is not None:
        pytest.fail("zstandard is installed here: replace this test by one that reads a real .zst file")
    with pytest.raises(ValueError, match=r"e\.jsonl\.zst: a zstd-compressed input needs the `zstandard` package"):
        list(lines.read_lines(str(path)))


@pytest.mark.parametrize(
    "line, inside, expected",
    [
        (b'a,"b', False, True),
        (b'a,"b""', False, True),  # "" is a literal quote: still open
        (b'a,"b"', False, False),
        (b'a,b"c', False, False),  # a quote inside an unquoted field is a character
        (b'x"', True, False),  # closes the field continued from the line before
        (b'x""', True, True),
        (b"no quotes", True, True),
    ],
)
def test_open_quote_detection_follows_pythons_csv(line, inside, expected):
    assert lines.ends_in_open_quote(line, b",", inside=inside) is expected


def test_an_unclosed_quote_gives_up_after_max_record_lines_and_the_lines_after_it_are_read_afresh():
    physical = [(b'u,i,1,"open', 0)] + [(b"u,i,%d,x" % k, k) for k in range(1, 10)]
    records = list(lines.delimited_records(physical, b",", max_lines=4))
    assert records == physical
    joined = list(lines.delimited_records([(b'u,i,1,"a', 0), (b'b"', 1), (b"c,d", 2)], b","))
    assert joined == [(b'u,i,1,"a\nb"', 0), (b"c,d", 2)]


# ---- the ingest-order key -------------------------------------------------------------------------


def test_event_order_is_exact_and_sorted_up_to_its_bounds():
    last = parsing.event_order(parsing.MAX_LINE, parsing.MAX_POSITION)
    assert last == 2**63 - 1  # the largest int64: the key never overflows the column
    boundary = [
        (0, parsing.MAX_POSITION),
        (1, 0),
        (2**30 - 1, 2**20 - 1),
        (2**30, 0),  # past the bound of the old (batch, line, position) packing: fits now
        (parsing.MAX_LINE - 1, parsing.MAX_POSITION),
        (parsing.MAX_LINE, 0),
    ]
    orders = [parsing.event_order(*k) for k in boundary]
    assert orders == sorted(orders) and len(set(orders)) == len(orders)


@pytest.mark.parametrize(
    "line, position, name",
    [
        (2**43, 0, "line 8796093022208"),
        (0, 2**20, "position 1048576"),
        (-1, 0, "line -1"),
        (0, -1, "position -1"),
    ],
)
def test_event_order_out_of_bounds_is_an_error_not_a_collision(line, position, name):
    with pytest.raises(parsing.EventOrderOverflow, match=name):
        parsing.event_order(line, position)


def test_a_file_past_the_line_bound_fails_naming_the_file_and_line():
    numbered = [(b"a", parsing.MAX_LINE), (b"b", parsing.MAX_LINE + 1)]
    checked = readers._checked_lines("/data/huge.csv", iter(numbered))
    assert next(checked) == (b"a", 2**43 - 1)
    with pytest.raises(parsing.EventOrderOverflow, match=r"/data/huge\.csv line 8796093022208"):
        next(checked)
