"""The whole bad-input corpus through the real ingest stage: real local Spark, real Delta, real MLflow.

One run ingests every event and sequence case of tests/ingest/corpus (each event log its own source,
in manifest order; the sequence folder as one source) with the corpus catalog. What the parsers must
make of each record is the manifest; on top of that ingest rejects repeated (user, item, time) events
as duplicate_event (the first wins) and users left with fewer than 3 events as user_too_short. This
test computes both from the manifest and checks the `rejects` table row by row, the counts, and rows
in = accepted + rejected.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pyarrow.compute as pc
import pytest
import yaml

from momorec.config import load_config
from momorec.ingest import readers
from momorec.ingest.config import EventSource
from momorec.ingest.stage import run_ingest
from momorec.storage import delta
from tests.ingest.corpus_cases import CORPUS

pytestmark = [pytest.mark.spark]

MANIFEST = yaml.safe_load((CORPUS / "manifest.yaml").read_text())
EVENT_CASES = [c for c in MANIFEST["cases"] if "error" not in c and c["input"] != "catalog"]
CATALOG_CASE = next(c for c in MANIFEST["cases"] if c["input"] == "catalog")
MIN_USER_EVENTS = 3


def expected_events() -> list[dict[str, Any]]:
    """Every expected output record of the event cases, in ingest order, with its file and sequence position."""
    records = []
    for case in EVENT_CASES:
        position: Counter = Counter()
        for entry in case["expect"]:
            records.append({**entry, "source": str(CORPUS / case["file"]), "pos": position[entry["line"]]})
            position[entry["line"]] += 1
    return records


def after_dedup_and_length(records: list[dict[str, Any]]) -> tuple[list[dict], list[dict], list[dict]]:
    """(kept, duplicates, too short): the first (user, item, time) wins — a sequence event has no time, its
    position stands for it — then users with fewer than MIN_USER_EVENTS events are held back."""
    seen, unique, duplicates = set(), [], []
    for r in records:
        if "accepted" not in r:
            continue
        a = r["accepted"]
        key = (a["user"], a["item"], float(a["timestamp"]) if "timestamp" in a else ("#", r["pos"]))
        (duplicates if key in seen else unique).append(r)
        seen.add(key)
    per_user = Counter(r["accepted"]["user"] for r in unique)
    kept = [r for r in unique if per_user[r["accepted"]["user"]] >= MIN_USER_EVENTS]
    short = [r for r in unique if per_user[r["accepted"]["user"]] < MIN_USER_EVENTS]
    return kept, duplicates, short


def test_the_corpus_ingests_with_every_row_accounted_for(spark, tmp_path, tracking_env, monkeypatch):
    # Plain JSONL and sequence files over RANGE_BYTES are read in parallel byte ranges: make the corpus's
    # larger ones (ids_*.jsonl, nested_values.jsonl) take that path, with several ranges each.
    monkeypatch.setattr(readers, "RANGE_BYTES", 256)
    ranged = str(CORPUS / "events/ids_characters.jsonl")
    assert readers._split_by_range(EventSource(path=ranged), ranged)
    # Event logs one source per file; the sequence files as one folder, as a user points at a folder of logs:
    # its empty file must not abort the folder.
    sources = [
        {"path": str(CORPUS / c["file"]), "kind": "events", **c.get("source", {})}
        for c in EVENT_CASES
        if c["input"] == "events"
    ]
    sources.append({"path": str(CORPUS / "sequences"), "kind": "sequences"})
    assert sorted(p.name for p in (CORPUS / "sequences").iterdir()) == ["bad_tokens.txt", "empty.txt"]
    cfg = load_config(
        None,
        [
            "dataset=corpus",
            f"warehouse={tmp_path / 'wh'}",
            "spark.master=local[2]",
            f"ingest.min_user_events={MIN_USER_EVENTS}",
            f"ingest.sources={json.dumps(sources)}",
            f"ingest.catalog={{path: '{CORPUS / 'catalog'}'}}",
        ],
    )
    result = run_ingest(cfg, show_progress=False)

    records = expected_events()
    kept, duplicates, short = after_dedup_and_length(records)
    parse_rejects = [r for r in records if "reason" in r]
    expected_reasons = Counter(r["reason"] for r in parse_rejects)
    expected_reasons.update({"duplicate_event": len(duplicates), "user_too_short": len(short)})

    # Conservation, and the counts the manifest implies.
    assert result.conservation_ok
    assert result.files_read == len(EVENT_CASES)
    assert result.rows_read == len(records) == result.rows_accepted + result.rows_rejected
    assert result.rows_accepted == result.interactions == len(kept)
    assert result.rejected_by_reason == dict(sorted(expected_reasons.items()))
    assert result.users == len({r["accepted"]["user"] for r in kept})
    empty = sorted(str(CORPUS / c["file"]) for c in EVENT_CASES if not c["expect"])
    assert result.empty_files == empty and len(empty) == 7

    # The rejects table: one row per rejected record, with the file, line and reason the manifest names.
    rejects = delta.read(cfg.table_path("rejects")).to_pylist()
    event_rejects = [r for r in rejects if r["input"] in ("events", "sequences")]
    assert len(event_rejects) == result.rows_rejected and all(r["reason"] for r in rejects)
    parse_rows = Counter(
        (r["source"], r["line"], r["reason"])
        for r in event_rejects
        if r["reason"] not in ("duplicate_event", "user_too_short")
    )
    assert parse_rows == Counter((r["source"], r["line"], r["reason"]) for r in parse_rejects)
    dup_rows = Counter((r["source"], r["line"]) for r in event_rejects if r["reason"] == "duplicate_event")
    assert dup_rows == Counter((r["source"], r["line"]) for r in duplicates)
    assert all(len(r["raw"] or "") <= 1025 for r in rejects)

    # Accepted events keep their normalised ids and converted times.
    interactions = delta.read(cfg.table_path("interactions")).to_pylist()
    got = Counter((r["user"], r["item"], r["timestamp"]) for r in interactions)
    want = Counter((r["accepted"]["user"], r["accepted"]["item"], r["accepted"].get("timestamp")) for r in kept)
    assert got == want
    sources_table = {r["path"]: r["rows_read"] for r in delta.read(cfg.table_path("sources")).to_pylist()}
    for case in EVENT_CASES:
        assert sources_table[str(CORPUS / case["file"])] == len(case["expect"]), case["name"]

    # The catalog: parsed fields on the items table, issues counted, every line accounted for.
    items = {r["item"]: r for r in delta.read(cfg.table_path("items")).to_pylist()}
    assert items["a"]["has_catalog"] and items["a"]["categories"] == ["Skin Care", "Face"]
    assert items["a"]["price"] == pytest.approx(12.99)
    assert items["b"]["title"] == "Big Soap" and items["b"]["categories"] == ["Bath", "Soap"]
    assert items["d"]["price"] is None and items["d"]["categories"] == ["Sun/Tanning"]
    catalog_expect = CATALOG_CASE["expect"]
    issues = Counter(i for e in catalog_expect if "item" in e for i in e["item"]["issues"])
    assert result.catalog_issues == dict(sorted(issues.items()))
    assert result.catalog_rows == len(catalog_expect)
    catalog_items = [e["item"]["item"] for e in catalog_expect if "item" in e]
    unknown = [i for i in catalog_items if i not in items]
    catalog_rejects = Counter(r["reason"] for r in rejects if r["input"] == "catalog")
    assert catalog_rejects == Counter(
        [e["reason"] for e in catalog_expect if "reason" in e] + ["unknown_item"] * len(unknown)
    )
    has_catalog = pc.sum(delta.read(cfg.table_path("items"), columns=["has_catalog"])["has_catalog"]).as_py()
    assert result.catalog_rows == has_catalog + result.catalog_rejected

    # The same corpus again, empty files included, changes nothing.
    again = run_ingest(cfg, show_progress=False)
    assert again.unchanged
