"""`momorec texts export|import`: generated texts leave a warehouse without embeddings and come back
re-embedded by another embedder, with no LLM work, and only where they provably belong."""

from __future__ import annotations

import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from momorec.motivate.texts import _matched, export_texts, generation_differences, import_texts, read_manifest
from momorec.storage import delta

# the real agents on a 3-user slice (item analyst, LLM embeddings), no reviewer: what matters here is the round trip
SLICE = ("motivate.execution.limit_users=3", "motivate.agents.max_review_rounds=0")


def test_matched_counts_every_row_once():
    ids = pa.table({"item": ["a", "b", "c"], "item_id": [1, 2, 3]})
    exported = pa.table({"item": ["a", "b", "c", "zz"], "content_hash": ["h1", "old", "h3", "h9"]})
    expected = {1: "h1", 2: "h2", 3: "h3"}
    now = {1: "n1", 2: "n2", 3: "n3"}
    rows, counts = _matched(exported, "item", ids, expected, now, present={(3, "n3")})
    assert [(r["item_id"], r["content_hash"]) for r in rows] == [(1, "n1")]
    assert counts == {"read": 4, "imported": 1, "present": 1, "stale": 1, "unknown": 1}
    assert counts["read"] == sum(v for k, v in counts.items() if k != "read")


def test_only_the_embedder_and_dtype_may_differ():
    base = {"prompts": "p", "model": "m", "dtype": "float32", "embed": ["llm"], "agents": [5]}
    assert generation_differences(base, {**base, "embed": ["sentence"], "dtype": "bfloat16"}) == []
    assert generation_differences(base, {**base, "agents": [3], "model": "x"}) == ["agents", "model"]


@pytest.mark.llm
@pytest.mark.spark
@pytest.mark.ray
@pytest.mark.slow
def test_texts_round_trip_into_a_fresh_warehouse_with_another_embedder(tmp_path, motivate_cfg, demo_ingest):
    from momorec.config import load_config
    from momorec.motivate.stage import run_motivate
    from tests.motivate.conftest import DEMO_CONFIG, FAST_MOTIVATE

    source = motivate_cfg(*SLICE)
    generated = run_motivate(source, show_progress=False)
    assert generated.users_processed == 3 and generated.items_processed > 0
    folder = str(tmp_path / "texts")
    exported = export_texts(source, folder)
    manifest = read_manifest(folder)
    assert exported.users == manifest["files"]["users"]["rows"] == 3
    assert exported.items == manifest["files"]["items"]["rows"] == generated.items_processed

    # the export speaks the dataset's own ids: history and evidence are raw item ids, as in item_ids
    users = pq.read_table(f"{folder}/users.parquet").to_pylist()
    item_ids = delta.read(source.table_path("item_ids")).to_pylist()
    raw_of = {r["item_id"]: r["item"] for r in item_ids}
    stored = {r["user_id"]: r for r in delta.read(source.table_path("user_motivations")).to_pylist()}
    user_ids = {r["user_id"]: r["user"] for r in delta.read(source.table_path("user_ids")).to_pylist()}
    for dense, row in stored.items():
        mine = next(u for u in users if u["user"] == user_ids[dense])
        assert mine["history_items"] == [raw_of[i] for i in row["history_item_ids"]]
        assert mine["motivation_text"] == row["motivation_text"]
        if row["status"] == "ok":
            cited = [e for m in json.loads(mine["motivations_json"]) for e in m["evidence_item_ids"]]
            assert set(cited) <= set(mine["history_items"])

    # a second warehouse from the same ingest, embedded by the bundled sentence model instead of the LLM
    warehouse = tmp_path / "other"
    shutil.copytree(demo_ingest, warehouse)
    target = load_config(
        DEMO_CONFIG, [f"warehouse={warehouse}", *FAST_MOTIVATE, *SLICE, "motivate.embedder.kind=sentence"]
    )
    imported = import_texts(target, folder)
    assert imported.counts["users"] == {"read": 3, "imported": 3, "present": 0, "stale": 0, "unknown": 0}
    assert imported.counts["items"]["imported"] == exported.items
    again = {r["user_id"]: r for r in delta.read(target.table_path("user_motivations")).to_pylist()}
    assert {k: r["motivation_text"] for k, r in again.items()} == {k: r["motivation_text"] for k, r in stored.items()}
    assert {k: r["motivations_json"] for k, r in again.items()} == {k: r["motivations_json"] for k, r in stored.items()}
    assert all(len(r["embedding"]) == 384 for r in again.values() if r["status"] == "ok")

    # motivate now finds nothing to generate: the imported rows carry this config's hashes
    rerun = run_motivate(target, show_progress=False)
    assert rerun.items_processed == 0 and rerun.users_processed == 0
    # and a second import finds them present
    assert import_texts(target, folder).counts["users"]["present"] == 3

    # texts generated under other agent settings are refused, not written under a hash they do not match
    with pytest.raises(ValueError, match="differ: agents"):
        import_texts(
            load_config(
                DEMO_CONFIG, [f"warehouse={warehouse}", *FAST_MOTIVATE, *SLICE, "motivate.agents.history_items=4"]
            ),
            folder,
        )
    # an export changed after the fact is refused
    (tmp_path / "texts" / "users.parquet").write_bytes(b"PAR1" + b"\0" * 16)
    with pytest.raises(ValueError, match="sha256"):
        import_texts(target, folder)
