"""Spark readers: input files -> a DataFrame of parsed records (events and rejects, one schema).

Text inputs are read as raw bytes (`textFile(use_unicode=False)`) so invalid UTF-8 is caught per line
instead of being silently replaced; `zipWithIndex` gives every line its number for the rejects table.
"""

from __future__ import annotations

import glob
import hashlib
import os
from dataclasses import dataclass
from functools import partial

from momorec.ingest import parsing
from momorec.ingest.config import CatalogSource, EventSource

RECORD_DDL = (
    "kind string, user string, item string, timestamp double, event_order long, rating double, "
    "event_type string, line long, reason string, raw string"
)
CATALOG_DDL = (
    "kind string, item string, title string, categories array<string>, brand string, price double, "
    "description string, truncated boolean, line long, reason string, raw string"
)


@dataclass(frozen=True)
class InputFile:
    path: str
    sha256: str
    size: int


def expand(path: str) -> list[str]:
    """A file, a folder (its files, sorted) or a glob -> files; missing input is a clear error."""
    if os.path.isdir(path):
        files = sorted(os.path.join(path, f) for f in os.listdir(path) if not f.startswith((".", "_")))
    elif any(c in path for c in "*?["):
        files = sorted(glob.glob(path))
    else:
        files = [path]
    files = [f for f in files if os.path.isfile(f)]
    if not files:
        raise FileNotFoundError(f"no input file at {path}")
    return files


def fingerprint(path: str) -> InputFile:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return InputFile(path=os.path.abspath(path), sha256=digest.hexdigest(), size=os.path.getsize(path))


def detect_format(path: str, declared: str) -> str:
    if declared != "auto":
        return declared
    ext = os.path.splitext(path)[1].lower()
    return {
        ".csv": "csv",
        ".tsv": "tsv",
        ".parquet": "parquet",
        ".jsonl": "jsonl",
        ".json": "jsonl",
        ".inter": "recbole",
    }.get(ext, "csv")


def _lines(spark, path: str):
    """RDD of (line bytes, line number)."""
    return spark.sparkContext.textFile(path, use_unicode=False).zipWithIndex()


def read_events(spark, source: EventSource, path: str, batch: int):
    """One event-log or sequence file -> DataFrame[RECORD_DDL]."""
    rules = dict(
        user_col=source.user_col,
        item_col=source.item_col,
        timestamp_col=source.timestamp_col,
        rating_col=source.rating_col,
        event_type_col=source.event_type_col,
        min_rating=source.min_rating,
    )
    if source.kind == "sequences":
        rdd = _lines(spark, path).flatMap(lambda pair: parsing.parse_sequence_line(pair[0], pair[1], batch))
        return spark.createDataFrame(rdd.map(_as_tuple), RECORD_DDL, verifySchema=False)

    fmt = detect_format(path, source.format)
    if fmt == "parquet":
        return _read_parquet_events(spark, path, batch, rules)
    lines = _lines(spark, path)
    if fmt == "jsonl":
        rdd = lines.map(lambda pair: parsing.parse_json_line(pair[0], pair[1], batch, **rules))
        return spark.createDataFrame(rdd.map(_as_tuple), RECORD_DDL, verifySchema=False)

    delimiter = "," if fmt == "csv" else "\t"
    header_bytes = lines.filter(lambda pair: pair[1] == 0).map(lambda pair: pair[0]).collect()
    if not header_bytes:
        raise ValueError(f"{path}: empty file, expected a header line")
    header_text, _ = parsing.decode_line(header_bytes[0])
    if header_text is None:
        raise ValueError(f"{path}: the header line is not valid UTF-8")
    columns = parsing.split_header(header_text, delimiter, recbole=(fmt == "recbole"))
    missing = [
        c
        for c in (source.user_col, source.item_col, source.timestamp_col, source.rating_col, source.event_type_col)
        if c is not None and c not in columns
    ]
    if missing:
        raise ValueError(f"{path}: columns {missing} not in the header {columns}; set them in the source config")
    parse = partial(parsing.parse_delimited_line, batch=batch, columns=columns, delimiter=delimiter, **rules)
    rdd = lines.filter(lambda pair: pair[1] > 0).map(lambda pair: parse(pair[0], pair[1]))
    return spark.createDataFrame(rdd.map(_as_tuple), RECORD_DDL, verifySchema=False)


def _read_parquet_events(spark, path: str, batch: int, rules: dict):
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
        fields = row.asDict()
        return parsing.validate_event(
            fields, order=parsing.event_order(batch, line), line=line, raw=str(fields)[: parsing.MAX_RAW_CHARS], **rules
        )

    rdd = frame.select(*wanted).rdd.zipWithIndex().map(parse)
    return spark.createDataFrame(rdd.map(_as_tuple), RECORD_DDL, verifySchema=False)


def read_catalog(spark, source: CatalogSource, path: str, max_text_chars: int):
    """A catalog file -> DataFrame[CATALOG_DDL] (kind "item" or "reject")."""
    fmt = source.format if source.format != "auto" else ("recbole" if path.endswith(".item") else "jsonl")
    unknown = set(source.columns) - set(parsing.CATALOG_FIELDS)
    if unknown:
        raise ValueError(f"catalog.columns: unknown fields {sorted(unknown)}; known: {parsing.CATALOG_FIELDS}")
    lines = _lines(spark, path)
    header = None
    if fmt == "recbole":
        first = lines.filter(lambda pair: pair[1] == 0).map(lambda pair: pair[0]).collect()
        header_text, _ = parsing.decode_line(first[0]) if first else (None, "")
        if header_text is None:
            raise ValueError(f"{path}: missing or undecodable header")
        header = parsing.split_header(header_text, "\t", recbole=True)
        lines = lines.filter(lambda pair: pair[1] > 0)
    columns = dict(source.columns)
    parse = partial(parsing.parse_catalog_line, columns=columns, max_text_chars=max_text_chars, header=header)
    rdd = lines.map(lambda pair: parse(pair[0], pair[1]))
    return spark.createDataFrame(rdd.map(_catalog_tuple), CATALOG_DDL, verifySchema=False)


_RECORD_FIELDS = [f.split()[0] for f in RECORD_DDL.split(", ")]
_CATALOG_FIELDS = [f.split()[0] for f in CATALOG_DDL.split(", ")]


def _as_tuple(rec: dict) -> tuple:
    return tuple(rec.get(f) for f in _RECORD_FIELDS)


def _catalog_tuple(rec: dict) -> tuple:
    return tuple(rec.get(f) for f in _CATALOG_FIELDS)
