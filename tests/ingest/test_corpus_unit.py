"""The bad-input corpus through the pure parsers (no Spark): every record's outcome, case by case.

readers.parse_text_events / parse_catalog_file are the very functions a Spark task runs on a file;
Parquet rows are given as pyarrow reads them (Spark hands the same Python types to the parser).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from momorec.ingest import lines, parsing, readers
from momorec.ingest.config import CatalogSource, EventSource
from tests.ingest import corpus_cases

CORPUS = corpus_cases.CORPUS
MANIFEST = yaml.safe_load((CORPUS / "manifest.yaml").read_text())
CASES = MANIFEST["cases"]
PARSED = [c for c in CASES if "error" not in c]


def parse_case(case: dict[str, Any], folder: Path = CORPUS) -> list[dict[str, Any]]:
    """Every output record of a corpus file, as ingest makes them."""
    path = str(folder / case["file"])
    options = case.get("source", {})
    if case["input"] == "catalog":
        source = CatalogSource(path=path, **options)
        return list(readers.parse_catalog_file(source, path, 2000, readers.catalog_header(source, path)))
    source = EventSource(path=path, kind=case["input"], **options)
    fmt = readers.detect_format(path, source.format)
    if source.kind == "events" and fmt == "parquet":
        if lines.is_empty(path):
            return []
        rules = readers.event_rules(source)
        rows = pq.read_table(path).to_pylist()
        return [
            parsing.validate_event(row, order=parsing.event_order(n), line=n, raw=str(row), **rules)
            for n, row in enumerate(rows)
        ]
    columns = readers.event_columns(source, path) if source.kind == "events" and fmt != "jsonl" else None
    return list(readers.parse_text_events(source, path, None, columns))


def outcome(record: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    """The record in the manifest's terms, holding only the fields the expectation names."""
    if record["kind"] == "reject":
        return {"line": record["line"], "reason": record["reason"]}
    if record["kind"] == "item":
        return {"line": record["line"], "item": {k: record[k] for k in expected.get("item", {})}}
    fields = expected.get("accepted", {"user": None, "item": None})
    return {"line": record["line"], "accepted": {k: record[k] for k in fields}}


def test_the_corpus_is_versioned_and_is_what_the_case_table_writes():
    assert MANIFEST["version"] == corpus_cases.CORPUS_VERSION == 2
    assert MANIFEST == corpus_cases.manifest()
    for case in corpus_cases.CASES:
        path = CORPUS / case.file
        if case.write is None:
            assert path.read_bytes() == case.data, case.file
        else:
            expected = pa.table(corpus_cases._parquet_types() if "ids" in case.file else corpus_cases._parquet_values())
            assert repr(pq.read_table(path).to_pydict()) == repr(expected.to_pydict()), case.file  # NaN == NaN


def test_the_corpus_covers_every_defect_and_format():
    names = {c["name"] for c in CASES}
    files = [c["file"] for c in CASES]
    reasons = {e.get("reason") for c in PARSED for e in c["expect"]}
    assert len(CASES) >= 30 and len(names) == len(CASES)
    for ending in (".gz", ".bz2", ".xz", ".parquet", ".tsv", ".csv", ".jsonl", ".txt"):
        assert any(f.endswith(ending) for f in files), ending
    for reason in (
        "bad_id:type",
        "bad_id:characters",
        "bad_id:empty",
        "bad_id:too_long",
        "bad_timestamp",
        "bad_timestamp:range",
        "invalid_utf8",
        "malformed_line:unterminated_quote",
        "malformed_line:too_long",
        "malformed_line:json",
        "empty_line",
    ):
        assert reason in reasons, reason


@pytest.mark.parametrize("case", PARSED, ids=[c["name"] for c in PARSED])
def test_each_corpus_record_has_its_expected_outcome(case):
    records = parse_case(case)
    got = [outcome(r, e) for r, e in zip(records, case["expect"], strict=False)]
    assert len(records) == len(case["expect"]), [r.get("reason") or r.get("item") for r in records]
    for seen, expected in zip(got, case["expect"], strict=True):
        if "accepted" in expected and "timestamp" in expected["accepted"]:
            assert math.isclose(seen["accepted"].pop("timestamp"), expected["accepted"]["timestamp"])
            expected = {**expected, "accepted": {k: v for k, v in expected["accepted"].items() if k != "timestamp"}}
        assert seen == expected


@pytest.mark.parametrize("case", PARSED, ids=[c["name"] for c in PARSED])
def test_each_corpus_file_conserves_rows_and_every_reject_has_a_reason(case):
    records = parse_case(case)
    accepted = [r for r in records if r["kind"] in ("event", "item")]
    rejected = [r for r in records if r["kind"] == "reject"]
    assert len(records) == len(accepted) + len(rejected)
    assert all(isinstance(r["reason"], str) and r["reason"] for r in rejected)
    assert all(len(r["raw"] or "") <= parsing.MAX_RAW_CHARS + 1 for r in rejected)
    for r in records:  # everything must be encodable for Arrow and Spark
        for value in r.values():
            if isinstance(value, str):
                value.encode("utf-8")


@pytest.mark.parametrize("case", [c for c in CASES if "error" in c], ids=lambda c: c["name"])
def test_error_cases_are_one_clear_error_naming_the_file(case):
    with pytest.raises(ValueError, match=case["error"]):
        parse_case(case)


def test_the_share_of_corpus_records_rejected_with_a_reason():
    expected = [e for c in PARSED for e in c["expect"]]
    rejected = [e for e in expected if "reason" in e]
    share = len(rejected) / len(expected)
    assert all(re.fullmatch(r"[a-z_0-9]+(:[a-z_0-9]+)*", e["reason"]) for e in rejected)
    assert 0.4 < share < 0.8, share  # a bad-input corpus: most cases are bad, every case has good rows too
