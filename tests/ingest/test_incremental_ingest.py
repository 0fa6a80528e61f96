"""Incremental ingest: a night computed from what it changed gives the same tables as a rebuild from the whole
history, commits nothing to a table it does not change, and repairs a run that stopped between its commits.

Real local Spark, real Delta tables, real MLflow (sqlite). The nights are seeded random logs small enough to
pass through every path: events held by the k-core or the length filter and lifted by a later night,
duplicates within a night and of earlier nights, new items with and without catalog rows, catalog rows for
items no log names yet, and a changed catalog.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from momorec.config import load_config
from momorec.ingest import stage
from momorec.ingest.config import EventSource
from momorec.ingest.stage import TABLES, run_ingest
from momorec.storage import delta

pytestmark = [pytest.mark.spark]

NIGHTS = 4


def write_nights(folder, seed: int) -> list:
    """Night files: ~80 events each over 40 users and 30 items, popular items skewed, some rows repeated."""
    rng = np.random.default_rng(seed)
    paths = []
    for night in range(NIGHTS):
        users = rng.integers(0, 40, size=80)
        items = np.minimum(rng.zipf(1.6, size=80) - 1 + 3 * night, 29)  # later nights reach new items
        times = 1_600_000_000 + night * 86_400 + rng.integers(0, 86_400, size=80)
        lines = [f"u{u},i{i},{t}" for u, i, t in zip(users, items, times, strict=True)]
        lines += lines[:3]  # duplicates within the night
        if paths:
            lines += [paths[-1][1][0]]  # a duplicate of the night before
        path = folder / f"night{night}.csv"
        path.write_text("user,item,timestamp\n" + "\n".join(lines) + "\n")
        paths.append((path, lines))
    return [p for p, _ in paths]


def write_catalog(path, items: range, title: str) -> None:
    rows = [json.dumps({"item": f"i{i}", "title": f"{title} {i}", "categories": [["A", f"C{i % 3}"]]}) for i in items]
    path.write_text("\n".join(rows) + "\n")


def config(root, warehouse, catalog):
    return load_config(
        None,
        [
            "dataset=nights",
            f"warehouse={warehouse}",
            f"ingest.sources=[{{path: '{root / 'base.csv'}'}}]",
            f"ingest.catalog={{path: '{catalog}'}}",
            "ingest.min_timestamp=0",
            "ingest.kcore=3",
            "ingest.min_user_events=4",
            "spark.master=local[2]",
            "spark.shuffle_partitions=2",
        ],
    )


def rows(cfg, name: str) -> list[tuple]:
    table = delta.read(cfg.table_path(name))
    return sorted(tuple(json.dumps(v, sort_keys=True) for v in row.values()) for row in table.to_pylist())


def test_nights_ingested_incrementally_equal_a_rebuild_of_each_night(spark, tmp_path, tracking_env, monkeypatch):
    nights = write_nights(tmp_path, seed=11)
    (tmp_path / "base.csv").write_text(nights[0].read_text())
    catalog = tmp_path / "items.jsonl"
    worlds = {}
    for world in ("incremental", "rebuilt"):
        write_catalog(catalog, range(0, 20), "Item")  # i20.. arrive in the logs before the catalog knows them
        cfg = config(tmp_path, tmp_path / world, catalog)
        if world == "rebuilt":
            monkeypatch.setattr(stage, "full_rebuild_reason", lambda *a, **k: "forced by the test")
        results = [run_ingest(cfg, show_progress=False)]
        versions = [{n: delta.version(cfg.table_path(n)) for n in TABLES}]
        for night in range(1, NIGHTS):
            if night == 3:
                write_catalog(catalog, range(0, 32), "Renamed")  # a changed catalog
            results.append(run_ingest(cfg, show_progress=False, extra_sources=[EventSource(path=str(nights[night]))]))
            versions.append({n: delta.version(cfg.table_path(n)) for n in TABLES})
        monkeypatch.undo()
        worlds[world] = (cfg, results, versions)

    inc_cfg, inc, inc_versions = worlds["incremental"]
    reb_cfg, reb, _ = worlds["rebuilt"]
    assert [r.mode for r in inc] == ["full", "incremental", "incremental", "incremental"]
    assert {r.mode for r in reb} == {"full"}
    for name in TABLES:
        if name != "sources":
            assert rows(inc_cfg, name) == rows(reb_cfg, name), name
    for a, b in zip(inc, reb, strict=True):
        assert a.conservation_ok and b.conservation_ok
        keys = ("rows_read", "rows_accepted", "rows_rejected", "rejected_by_reason", "users", "items", "interactions")
        assert {k: getattr(a, k) for k in keys} == {k: getattr(b, k) for k in keys}
        assert (a.catalog_rows, a.catalog_rejected) == (b.catalog_rows, b.catalog_rejected)

    # The scenario passed through what it is meant to: pending events lifted, duplicates, unknown catalog rows.
    reasons = [r.rejected_by_reason for r in inc]
    assert any(r.get("duplicate_event") for r in reasons[1:])
    assert inc[-1].interactions > inc[0].interactions and inc[-1].catalog_rejected > 0
    lifted = set(delta.read(inc_cfg.table_path("interactions"), columns=["source"])["source"].to_pylist())
    assert str(tmp_path / "base.csv") in lifted

    # items is only rewritten when the catalog changes or new items come; sources moves every night.
    for night in range(1, NIGHTS):
        before, after = inc_versions[night - 1], inc_versions[night]
        assert after["sources"] == before["sources"] + 1
        grew = inc[night].items != inc[night - 1].items
        assert (after["items"] != before["items"]) == (grew or night == 3), night  # night 3: the catalog changed
        assert (after["item_ids"] != before["item_ids"]) == grew, night


def test_a_night_that_changes_nothing_keeps_every_version_and_a_stopped_run_is_rebuilt(spark, tmp_path, tracking_env):
    nights = write_nights(tmp_path, seed=5)
    (tmp_path / "base.csv").write_text(nights[0].read_text())
    catalog = tmp_path / "items.jsonl"
    write_catalog(catalog, range(0, 30), "Item")
    cfg = config(tmp_path, tmp_path / "wh", catalog)
    run_ingest(cfg, show_progress=False)
    run_ingest(cfg, show_progress=False, extra_sources=[EventSource(path=str(nights[1]))])
    before = {n: delta.version(cfg.table_path(n)) for n in TABLES}

    # A night whose every event was seen already: each a duplicate; only rejects and sources move.
    seen = tmp_path / "seen.csv"
    seen.write_text("user,item,timestamp\n" + "\n".join(nights[1].read_text().splitlines()[1:6]) + "\n")
    result = run_ingest(cfg, show_progress=False, extra_sources=[EventSource(path=str(seen))])
    after = {n: delta.version(cfg.table_path(n)) for n in TABLES}
    assert result.mode == "incremental" and result.rejected_by_reason == {"duplicate_event": 5}
    moved = sorted(n for n in TABLES if after[n] != before[n])
    assert moved == ["rejects", "sources"]

    # A run that committed some tables and then died: the next run sees the moved versions and rebuilds.
    stray = delta.read(cfg.table_path("user_ids")).slice(0, 0)
    delta.write(cfg.table_path("user_ids"), pa.concat_tables([stray]), mode="append")  # a commit after `sources`
    night = run_ingest(cfg, show_progress=False, extra_sources=[EventSource(path=str(nights[2]))])
    assert night.mode == "full" and "stopped between its commits" in night.rebuild_reason
    assert night.conservation_ok
    again = run_ingest(cfg, show_progress=False, extra_sources=[EventSource(path=str(nights[3]))])
    assert again.mode == "incremental"


def _packed(table: pa.Table) -> pa.Table:
    """A table in the layout written before the `batch` column: batch << 50 | event_order, no batch column."""
    batch = table["batch"].to_pylist()
    order = table["event_order"].to_pylist()
    packed = [None if o is None else (b << 50) | o for b, o in zip(batch, order, strict=True)]
    table = table.set_column(table.schema.get_field_index("event_order"), "event_order", pa.array(packed, pa.int64()))
    return table.drop_columns(["batch"])


def test_a_warehouse_in_the_packed_order_layout_is_migrated_to_the_tables_of_today(spark, tmp_path, tracking_env):
    nights = write_nights(tmp_path, seed=7)
    (tmp_path / "base.csv").write_text(nights[0].read_text())
    catalog = tmp_path / "items.jsonl"
    write_catalog(catalog, range(0, 30), "Item")
    worlds = {}
    for world in ("today", "old"):
        cfg = config(tmp_path, tmp_path / world, catalog)
        run_ingest(cfg, show_progress=False)
        run_ingest(cfg, show_progress=False, extra_sources=[EventSource(path=str(nights[1]))])
        if world == "old":
            for name in stage._PACKED_ORDER:
                delta.write(cfg.table_path(name), _packed(delta.read(cfg.table_path(name))), mode="overwrite")
            assert "batch" not in delta.column_names(cfg.table_path("interactions"))
        worlds[world] = (cfg, run_ingest(cfg, show_progress=False, extra_sources=[EventSource(path=str(nights[2]))]))

    (today_cfg, today), (old_cfg, migrated) = worlds["today"], worlds["old"]
    assert today.mode == "incremental"
    assert migrated.mode == "full" and "predate the batch column" in migrated.rebuild_reason
    assert migrated.conservation_ok
    for name in TABLES:
        if name != "sources":
            assert rows(old_cfg, name) == rows(today_cfg, name), name
    assert "batch" in delta.column_names(old_cfg.table_path("rejects"))
    after = run_ingest(old_cfg, show_progress=False, extra_sources=[EventSource(path=str(nights[3]))])
    assert after.mode == "incremental"


def test_the_ingest_order_has_no_bound_on_the_number_of_files(spark):
    """Batches past 8,191 (the old packed key's last) order events by file first, then by line and position."""
    from momorec.ingest import transforms

    columns = "user string, item string, timestamp double, batch long, event_order long, rating double, "
    columns += "event_type string, source string, line long, user_id long, item_id long"
    same_time = 100.0
    events = [  # one user, four events at the same second from four files, listed out of order
        ("u", "d", same_time, 2**40, 0, None, None, "f", 0, 1, 4),
        ("u", "a", same_time, 8191, 2**30 << 20, None, None, "f", 2**30, 1, 1),
        ("u", "c", same_time, 8193, 0, None, None, "f", 0, 1, 3),
        ("u", "b", same_time, 8192, 5, None, None, "f", 0, 1, 2),
    ]
    frame = spark.createDataFrame(events, columns)
    sequences = transforms.build_sequences(frame).collect()
    assert [row["items"] for row in sequences] == [[1, 2, 3, 4]]
    first = transforms.first_appearance(frame, "user").collect()[0]["first_order"]
    assert (first["batch"], first["event_order"]) == (8191, 2**50)
    repeat = spark.createDataFrame([("u", "a", same_time, 9000, 0, None, None, "g", 0, 1, 1)], columns)
    night = repeat.unionByName(frame).drop("user_id", "item_id")
    unique, duplicates = transforms.drop_duplicates(night, frame.limit(0))
    kept = {(r["item"], r["batch"]) for r in unique.collect()}
    assert ("a", 8191) in kept and ("a", 9000) not in kept  # the first file's event wins
    assert [r["batch"] for r in duplicates.collect()] == [9000]
