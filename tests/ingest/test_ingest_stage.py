"""The ingest stage end to end: real local Spark, real Delta tables, real MLflow (sqlite)."""

from __future__ import annotations

import json

import pytest

import mlflow
from momorec.config import load_config
from momorec.ingest.config import EventSource
from momorec.ingest.stage import run_ingest
from momorec.storage import delta
from tests.conftest import REPO

pytestmark = [pytest.mark.spark]


def table(cfg, name):
    return delta.read(cfg.table_path(name)).to_pandas()


def test_demo_ingest_counts_split_ids_and_mlflow(spark, demo_cfg):
    result = run_ingest(demo_cfg, show_progress=False)

    lines = [line.split() for line in (REPO / "data/demo/sequences.txt").read_text().splitlines()]
    assert (result.users, result.interactions) == (len(lines), sum(len(line) - 1 for line in lines))
    assert result.items == len({i for line in lines for i in line[1:]}) == 187
    assert result.rows_read == result.rows_accepted + result.rows_rejected
    assert result.conservation_ok and result.rows_rejected == 0

    # The split is the file's order: last item test, the one before validation.
    item_ids = dict(table(demo_cfg, "item_ids")[["item", "item_id"]].itertuples(index=False))
    user_ids = dict(table(demo_cfg, "user_ids")[["user", "user_id"]].itertuples(index=False))
    seqs = table(demo_cfg, "sequences").set_index("user_id")
    for user, *items in lines:
        row = seqs.loc[user_ids[user]]
        expected = [item_ids[i] for i in items]
        assert list(row["items"]) == expected
        assert list(row["train_items"]) == expected[:-2]
        assert (row["valid_item"], row["test_item"], row["length"]) == (expected[-2], expected[-1], len(expected))
    assert min(item_ids.values()) == 1 and max(item_ids.values()) == len(item_ids)  # 0 stays padding

    items = table(demo_cfg, "items")
    assert items["has_catalog"].all() and items["title"].notna().all()

    run = mlflow.get_run(result.mlflow_run_id)
    assert run.data.metrics["users"] == len(lines)
    assert run.data.metrics["rows_read"] == result.rows_read
    assert "delta.written.sequences" in run.data.params


def test_rerun_on_the_same_input_changes_nothing(spark, demo_cfg):
    first = run_ingest(demo_cfg, show_progress=False)
    second = run_ingest(demo_cfg, show_progress=False)
    assert second.unchanged
    assert {n: t["version"] for n, t in second.tables.items()} == {n: t["version"] for n, t in first.tables.items()}
    assert (second.users, second.items, second.interactions) == (first.users, first.items, first.interactions)


BAD_LINES = [
    # (line, expected reason or None when accepted)
    *[(f"u{u},i{u + k},{1000 + 10 * k + u},5", None) for u in range(1, 5) for k in range(5)],
    ("u1,i1,1001,5", "duplicate_event"),  # same user, item and time as u1's first event
    ("u1,i1,1001,5", "duplicate_event"),
    ("", "empty_line"),
    ("u5,,1005,3", "missing_or_bad_field:item"),
    (",i2,1005,3", "missing_or_bad_field:user"),
    ("u6,i2,notatime,3", "bad_timestamp"),
    ("u7,i3,1007", "malformed_line:column_count"),
    ("u8,i4,1008,5", "user_too_short"),  # a valid event, but the user has one event only
]


@pytest.fixture()
def bad_input(tmp_path):
    events = tmp_path / "events.csv"
    with open(events, "wb") as fh:
        fh.write(b"user,item,timestamp,rating\n")
        for line, _ in BAD_LINES:
            fh.write(line.encode() + b"\n")
        fh.write(b"u9,i\xff\xfe,1009,5\n")  # not UTF-8
    catalog = tmp_path / "catalog.jsonl"
    rows = [
        json.dumps({"item": f"i{i}", "title": f"Item {i}", "categories": [["Beauty", "Skin"]]}) for i in range(2, 10)
    ]
    rows += [
        json.dumps({"item": "i1", "title": "T" * 100_000}),  # a 100 KB title: kept, truncated
        json.dumps({"item": "i_unknown", "title": "in no log"}),
        json.dumps({"item": "i2", "title": "again"}),
        "{not json",
        json.dumps({"title": "no id"}),
        "",
    ]
    catalog.write_text("\n".join(rows) + "\n")
    return events, catalog


def test_bad_input_is_rejected_with_reasons_and_nothing_is_lost(spark, bad_input, tmp_path, tracking_env):
    events, catalog = bad_input
    cfg = load_config(
        None,
        [
            "dataset=bad",
            f"warehouse={tmp_path / 'wh'}",
            f"ingest.sources=[{{path: '{events}', kind: events, rating_col: rating}}]",
            f"ingest.catalog={{path: '{catalog}'}}",
            "ingest.max_text_chars=500",
            "ingest.min_timestamp=0",  # the lines above use small made-up times
        ],
    )
    result = run_ingest(cfg, show_progress=False)

    expected_rejects = [r for _, r in BAD_LINES if r] + ["invalid_utf8"]
    assert result.rows_read == len(BAD_LINES) + 1
    assert result.rows_accepted == sum(1 for _, r in BAD_LINES if r is None) == 20
    assert result.rows_read == result.rows_accepted + result.rows_rejected
    assert result.conservation_ok
    expected_by_reason = {}
    for reason in expected_rejects:
        expected_by_reason[reason] = expected_by_reason.get(reason, 0) + 1
    assert result.rejected_by_reason == expected_by_reason

    rejects = table(cfg, "rejects")
    catalog_rejects = sorted(rejects[rejects["input"] == "catalog"]["reason"])
    # i9 is in the catalog but its only event was not UTF-8; i_unknown is in no log at all.
    assert catalog_rejects == sorted(
        [
            "unknown_item",
            "unknown_item",
            "duplicate_catalog_row",
            "malformed_line:json",
            "missing_or_bad_field:item",
            "empty_line",
        ]
    )
    assert (rejects["raw"].str.len() <= 1025).all()
    items = table(cfg, "items").set_index("item")
    assert len(items.loc["i1", "title"]) == 500
    assert result.truncated_texts == 1
    assert result.catalog_rows == items["has_catalog"].sum() + len(catalog_rejects)
    assert (result.users, result.items) == (4, 8)


def test_appending_a_log_adds_only_new_events_and_keeps_ids(spark, tmp_path, tracking_env):
    day1 = tmp_path / "day1.csv"
    day1.write_text(
        "user,item,timestamp\n"
        + "".join(f"a,x{k},{k}\n" for k in range(4))
        + "".join(f"b,x{k},{10 + k}\n" for k in range(3))
        + "c,x0,5\nc,x1,6\n"
    )
    cfg = load_config(
        None,
        [
            "dataset=inc",
            f"warehouse={tmp_path / 'wh'}",
            f"ingest.sources=[{{path: '{day1}'}}]",
            "ingest.min_timestamp=0",
        ],
    )
    first = run_ingest(cfg, show_progress=False)
    assert (first.users, first.interactions) == (2, 7)  # c has 2 events: pending as too short
    ids_before = table(cfg, "user_ids").set_index("user")["user_id"].to_dict()
    items_before = table(cfg, "item_ids").set_index("item")["item_id"].to_dict()

    day2 = tmp_path / "day2.csv"
    # b's last event repeats (a duplicate); c gets a third event and so joins; d is new.
    day2.write_text("user,item,timestamp\nb,x2,12\nc,x9,7\nd,x3,1\nd,x4,2\nd,x5,3\na,x5,99\n")
    second = run_ingest(cfg, show_progress=False, extra_sources=[EventSource(path=str(day2))])

    assert second.files_read == 1 and second.rows_read == 6
    assert second.rejected_by_reason == {"duplicate_event": 1}
    assert (second.users, second.interactions) == (4, 7 + 3 + 3 + 1)  # + c (2 pending + 1), d, a
    user_ids = table(cfg, "user_ids").set_index("user")["user_id"].to_dict()
    item_ids = table(cfg, "item_ids").set_index("item")["item_id"].to_dict()
    assert {u: user_ids[u] for u in ids_before} == ids_before
    assert {i: item_ids[i] for i in items_before} == items_before
    assert set(user_ids.values()) == {1, 2, 3, 4}
    seqs = table(cfg, "sequences").set_index("user_id")
    assert list(seqs.loc[user_ids["a"], "items"])[-1] == item_ids["x5"]  # time order, not file order
    assert list(seqs.loc[user_ids["c"], "items"]) == [item_ids["x0"], item_ids["x1"], item_ids["x9"]]
    assert second.conservation_ok

    third = run_ingest(cfg, show_progress=False, extra_sources=[EventSource(path=str(day2))])
    assert third.unchanged
