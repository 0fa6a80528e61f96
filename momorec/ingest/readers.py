"""Spark readers: input files -> a DataFrame of parsed records (events and rejects, one schema).

Text inputs (plain or compressed) are read by momorec.ingest.lines in a Spark task, from the raw bytes,
so invalid UTF-8 is caught per line and a real U+FFFD is kept; each record carries its line number for
the rejects table. A CSV/TSV or compressed file is read and parsed by one task (a CSV record may span
lines, a compressed stream cannot be split); a large plain JSONL or sequence file by one task per 64 MB
byte range. Parquet is read by Spark.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

from momorec.ingest import lines as text_lines
from momorec.ingest import parsing
from momorec.ingest.config import CatalogSource, EventSource
from momorec.ingest.values import TimestampRule
from momorec.storage import objectstore
from momorec.storage.locations import is_uri

# A plain JSONL or sequence file larger than this is read in ranges of this size, in parallel.
RANGE_BYTES = 64 << 20

RECORD_DDL = (
    "kind string, user string, item string, timestamp double, event_order long, rating double, "
    "event_type string, line long, reason string, raw string"
)
CATALOG_DDL = (
    "kind string, item string, title string, categories array<string>, brand string, price double, "
    "description string, truncated boolean, issues array<string>, line long, reason string, raw string"
)


@dataclass(frozen=True)
class InputFile:
    path: str
    sha256: str
    size: int


def expand(path: str) -> list[str]:
    """A file, a folder (its files, sorted) or a glob -> files, on a local disk or an object store;
    missing input is a clear error."""
    if any(c in path for c in "*?["):
        files = objectstore.glob(path)
    elif objectstore.is_dir(path):
        files = objectstore.list_files(path)
    else:
        files = [path]
    files = [f for f in files if objectstore.is_file(f)]
    if not files:
        raise FileNotFoundError(f"no input file at {path}")
    return files


def fingerprint(path: str) -> InputFile:
    digest = hashlib.sha256()
    size = 0
    with objectstore.open_input(path) as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    location = path if is_uri(path) else os.path.abspath(path)
    return InputFile(path=location, sha256=digest.hexdigest(), size=size)


def detect_format(path: str, declared: str) -> str:
    """The declared format, or the one of the file's (inner) extension: `x.jsonl.gz` is JSONL."""
    if declared != "auto":
        return declared
    ext = os.path.splitext(text_lines.inner_name(path))[1].lower()
    return {
        ".csv": "csv",
        ".tsv": "tsv",
        ".parquet": "parquet",
        ".jsonl": "jsonl",
        ".json": "jsonl",
        ".inter": "recbole",
    }.get(ext, "csv")


def _checked_lines(path: str, numbered):
    """The records of one file, with an error naming the file and line past the event_order bound."""
    for raw, line in numbered:
        if line > parsing.MAX_LINE:
            raise parsing.EventOrderOverflow(
                f"{path} line {line}: more than {parsing.MAX_LINE + 1} lines in one file do not fit the ingest-order "
                "key; split the file"
            )
        yield raw, line


def _file_records(path: str, delimiter: str | None = None, skip_header: bool = False):
    """(record bytes, line number) of a text file: physical lines, or CSV/TSV records when `delimiter` is set."""
    numbered = text_lines.read_lines(path)
    if delimiter is not None:
        numbered = text_lines.delimited_records(numbered, delimiter.encode())
    if skip_header:
        next(numbered, None)
    return _checked_lines(path, numbered)


def first_record(path: str, delimiter: str | None = None) -> bytes | None:
    """The file's first record (its header, for CSV/TSV/RecBole), read on the driver; None when empty."""
    first = next(_file_records(path, delimiter), None)
    return first[0] if first is not None else None


def _header(path: str, delimiter: str, recbole: bool) -> list[str] | None:
    """Column names of a delimited file; None when the file is empty. An undecodable header is an error."""
    header_bytes = first_record(path, delimiter)
    if header_bytes is None:
        return None
    header_text, _ = parsing.decode_line(header_bytes)
    if header_text is None:
        raise ValueError(f"{path} line 0: the header line is not valid UTF-8 (or longer than the line limit)")
    return parsing.split_header(header_text, delimiter, recbole=recbole)


def _delimiter(fmt: str) -> str:
    return "," if fmt == "csv" else "\t"


def event_rules(source: EventSource, timestamps: TimestampRule | None = None) -> dict:
    """The keyword rules of parsing.validate_event for one source."""
    return dict(
        user_col=source.user_col,
        item_col=source.item_col,
        timestamp_col=source.timestamp_col,
        rating_col=source.rating_col,
        event_type_col=source.event_type_col,
        min_rating=source.min_rating,
        timestamps=timestamps or TimestampRule(),
    )


def event_columns(source: EventSource, path: str) -> list[str] | None:
    """The header of a CSV/TSV/RecBole event log, checked against the source's columns (read on the
    driver, so a wrong header is one clear error naming the file); None when the file is empty."""
    fmt = detect_format(path, source.format)
    columns = _header(path, _delimiter(fmt), recbole=(fmt == "recbole"))
    if columns is None:
        return None
    wanted = (source.user_col, source.item_col, source.timestamp_col, source.rating_col, source.event_type_col)
    missing = [c for c in wanted if c is not None and c not in columns]
    if missing:
        raise ValueError(f"{path}: columns {missing} not in the header {columns}; set them in the source config")
    return columns


def parse_text_events(
    source: EventSource,
    path: str,
    timestamps: TimestampRule | None,
    columns: list[str] | None,
    byte_range: tuple[int, int, int] | None = None,
) -> Iterator[dict]:
    """Every record of a text event log or sequence file (plain or compressed) -> parsed records.

    Pure Python: a Spark task runs it, and the tests run it as it is. `columns`: the header of a
    delimited file (event_columns); ignored for JSONL and sequences. `byte_range` (start, end,
    newlines before start): only the lines starting in that range of a plain JSONL or sequence file."""
    if byte_range is None:
        numbered = _file_records(path)
    else:
        numbered = _checked_lines(path, text_lines.read_range(path, *byte_range))
    if source.kind == "sequences":
        for raw, line in numbered:
            yield from parsing.parse_sequence_line(raw, line)
        return
    rules = event_rules(source, timestamps)
    fmt = detect_format(path, source.format)
    if fmt == "jsonl":
        for raw, line in numbered:
            yield parsing.parse_json_line(raw, line, **rules)
        return
    if byte_range is not None:
        raise ValueError(f"{path}: a {fmt} file is read whole (its records may span lines), not by byte range")
    if columns is None:  # empty file
        return
    delimiter = _delimiter(fmt)
    for raw, line in _file_records(path, delimiter, skip_header=True):
        yield parsing.parse_delimited_line(raw, line, columns, delimiter, **rules)


def line_ranges(spark, path: str) -> list[tuple[int, int, int]]:
    """(start, end, newlines before start) for each RANGE_BYTES range of a plain file: one Spark job counts
    the newlines of every range, so each range's first line gets its number in the whole file."""
    ranges = text_lines.byte_ranges(objectstore.size(path), RANGE_BYTES)
    counts = (
        spark.sparkContext.parallelize(ranges, len(ranges))
        .map(lambda r: text_lines.count_newlines(path, r[0], r[1]))
        .collect()
    )
    return numbered_ranges(ranges, counts)


def numbered_ranges(ranges: list[tuple[int, int]], newline_counts: list[int]) -> list[tuple[int, int, int]]:
    """(start, end, newlines before start): the running sum of the ranges' newline counts."""
    before = [0]
    for count in newline_counts[:-1]:
        before.append(before[-1] + count)
    return [(start, end, n) for (start, end), n in zip(ranges, before, strict=True)]


def _split_by_range(source: EventSource, path: str) -> bool:
    """A large plain JSONL or sequence file is read in byte ranges, in parallel; line records cannot span
    lines there. CSV/TSV (quoted newlines) and compressed streams are read whole, one task per file."""
    line_oriented = source.kind == "sequences" or detect_format(path, source.format) == "jsonl"
    return line_oriented and text_lines.inner_name(path) == path and objectstore.size(path) > RANGE_BYTES


def read_events(spark, source: EventSource, path: str, timestamps: TimestampRule | None = None):
    """One event-log or sequence file -> DataFrame[RECORD_DDL]. An empty or header-only file gives no rows.
    The caller adds the file's `batch` (one value for the whole file)."""
    if text_lines.is_empty(path):
        return spark.createDataFrame([], RECORD_DDL)
    fmt = detect_format(path, source.format)
    if source.kind == "events" and fmt == "parquet":
        return _read_parquet_events(spark, path, event_rules(source, timestamps))
    if _split_by_range(source, path):
        ranges = line_ranges(spark, path)
        rdd = spark.sparkContext.parallelize(ranges, len(ranges)).flatMap(
            lambda byte_range: parse_text_events(source, path, timestamps, None, byte_range)
        )
        return spark.createDataFrame(rdd.map(_as_tuple), RECORD_DDL, verifySchema=False)
    columns = event_columns(source, path) if source.kind == "events" and fmt != "jsonl" else None
    rdd = spark.sparkContext.parallelize([path], 1).flatMap(
        lambda file_path: parse_text_events(source, file_path, timestamps, columns)
    )
    return spark.createDataFrame(rdd.map(_as_tuple), RECORD_DDL, verifySchema=False)


def _read_parquet_events(spark, path: str, rules: dict):
    frame = spark.read.parquet(path)
    wanted = [
        c
        for c in (
            rules["user_col"],
            rules["item_col"],
            rules["timestamp_col"],
            rules["rating_col"],
            rules["event_type_col"],
        )
        if c is not None
    ]
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: columns {missing} not in {frame.columns}")

    def parse(pair):
        row, line = pair
        if line > parsing.MAX_LINE:
            raise parsing.EventOrderOverflow(f"{path} row {line}: too many rows in one file for the ingest-order key")
        fields = row.asDict()
        raw = str(fields)[: parsing.MAX_RAW_CHARS]
        return parsing.validate_event(fields, order=parsing.event_order(line), line=line, raw=raw, **rules)

    rdd = frame.select(*wanted).rdd.zipWithIndex().map(parse)
    return spark.createDataFrame(rdd.map(_as_tuple), RECORD_DDL, verifySchema=False)


def _is_recbole_catalog(source: CatalogSource, path: str) -> bool:
    return source.format == "recbole" or (source.format == "auto" and text_lines.inner_name(path).endswith(".item"))


def catalog_header(source: CatalogSource, path: str) -> list[str] | None:
    """The header of a RecBole .item catalog (read on the driver); None for JSONL or an empty file."""
    return _header(path, "\t", recbole=True) if _is_recbole_catalog(source, path) else None


def parse_catalog_file(
    source: CatalogSource, path: str, max_text_chars: int, header: list[str] | None
) -> Iterator[dict]:
    """Every line of a catalog file -> catalog rows or rejects (pure Python, one Spark task per file)."""
    recbole = _is_recbole_catalog(source, path)
    if recbole and header is None:  # empty file
        return
    # A RecBole .item line is tab separated but not CSV-quoted (RecBole splits on tabs): records are lines.
    for raw, line in _file_records(path, skip_header=recbole):
        yield parsing.parse_catalog_line(raw, line, dict(source.columns), max_text_chars, header)


def read_catalog(spark, source: CatalogSource, path: str, max_text_chars: int):
    """A catalog file -> DataFrame[CATALOG_DDL] (kind "item" or "reject"). An empty file gives no rows."""
    unknown = set(source.columns) - set(parsing.CATALOG_FIELDS)
    if unknown:
        raise ValueError(f"catalog.columns: unknown fields {sorted(unknown)}; known: {parsing.CATALOG_FIELDS}")
    if text_lines.is_empty(path):
        return spark.createDataFrame([], CATALOG_DDL)
    header = catalog_header(source, path)
    rdd = spark.sparkContext.parallelize([path], 1).flatMap(
        lambda file_path: parse_catalog_file(source, file_path, max_text_chars, header)
    )
    return spark.createDataFrame(rdd.map(_catalog_tuple), CATALOG_DDL, verifySchema=False)


_RECORD_FIELDS = [f.split()[0] for f in RECORD_DDL.split(", ")]
_CATALOG_FIELDS = [f.split()[0] for f in CATALOG_DDL.split(", ")]


def _as_tuple(rec: dict) -> tuple:
    return tuple(rec.get(f) for f in _RECORD_FIELDS)


def _catalog_tuple(rec: dict) -> tuple:
    return tuple(rec.get(f) for f in _CATALOG_FIELDS)
