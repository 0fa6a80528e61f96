"""recommend.users: changed (the nightly refresh): with the same model, only the users whose rows can differ are
rescored and MERGEd, and the table then equals a full rewrite; anything else rescores every user."""

from __future__ import annotations

import pyarrow as pa

from momorec.recommend.stage import run_recommend
from momorec.storage import delta, schemas
from tests.recommend.test_recommend_batches import USERS, _model_row, _rows, _without_time, build_warehouse


def _set(cfg, **recommend):
    return cfg.model_copy(update={"recommend": cfg.recommend.model_copy(update=recommend)})


def _night(cfg, rows: list[dict], name: str, schema: pa.Schema, keys: list[str]) -> None:
    delta.upsert(cfg.table_path(name), pa.Table.from_pylist(rows, schema=schema), keys)


def test_a_night_rescores_only_the_changed_users_and_ends_where_a_full_rewrite_does(tmp_path, tracking_env):
    cfg, served = build_warehouse(tmp_path, ("recommend.users=changed",))
    first = run_recommend(cfg, show_progress=False)
    assert first.rescored == "all" and first.reason == "no recommendations yet" and first.users == USERS
    before = {r["user_id"]: r for r in _rows(cfg)}

    # the night: user 5 bought again, user 251 is new, user 9's motivation and user 12's semantic ID changed, and
    # the codes of the item recommended to the fewest users (a random model gives one item to half the users) changed
    sequences = {r["user_id"]: r for r in delta.read(cfg.table_path("sequences")).to_pylist()}
    five = sequences[5]
    items = [*five["items"], 1]
    five |= {"items": items, "train_items": items[:-2], "valid_item": items[-2], "test_item": 1, "length": len(items)}
    new = {"user_id": 251, "items": [3, 4, 5], "train_items": [3], "valid_item": 4, "test_item": 5, "length": 3}
    _night(cfg, [five, new], "sequences", schemas.SEQUENCES, ["user_id"])
    motivation = {"user_id": 9, "status": "ok", "failure_reason": "", "motivation_text": "user 9 now wants tea"}
    _night(cfg, [motivation], "user_motivations", schemas.USER_MOTIVATIONS, ["user_id"])
    holding = {}
    for user, row in before.items():
        for recommended in row["items"]:
            holding.setdefault(recommended, set()).add(user)
    item, holders = min(holding.items(), key=lambda pair: (len(pair[1]), pair[0]))
    codes = [
        {"entity_type": "user", "entity_id": 12, "codes": [3, 3]},
        {"entity_type": "item", "entity_id": item, "codes": [7, 7]},
    ]
    _night(cfg, codes, "semantic_ids", schemas.SEMANTIC_IDS, ["entity_type", "entity_id"])
    version = delta.version(cfg.table_path("recommendations"))

    night = run_recommend(cfg, show_progress=False)
    stale = {5, 251, 9, 12} | holders
    assert night.rescored == "changed", (night.reason, night.changed_by, len(holders))
    assert night.users == len(stale) < USERS / 4
    assert night.changed_by == {
        "sequences": 2,
        "user_motivations": 1,
        "user semantic IDs": 1,
        "recommended item semantic IDs": len(holders),
    }
    assert delta.version(cfg.table_path("recommendations")) == version + 1, "one MERGE commit"
    merged = _rows(cfg)
    kept = [r for r in merged if r["user_id"] not in stale]
    assert all(r["created_at"] == before[r["user_id"]]["created_at"] for r in kept), "unchanged rows are not rewritten"
    by_user = {r["user_id"]: r for r in merged}
    assert by_user[9]["motivation_text"] == "user 9 now wants tea" and by_user[12]["user_codes"] == [3, 3]
    assert all(by_user[u]["item_codes"][by_user[u]["items"].index(item)] == [7, 7] for u in holders)

    full = run_recommend(_set(cfg, users="all"), show_progress=False)
    assert full.rescored == "all" and full.users == USERS + 1
    assert _without_time(_rows(cfg)) == _without_time(merged), "the MERGEd table is what a full rewrite writes"

    quiet = run_recommend(cfg, show_progress=False)
    assert quiet.rescored == "changed" and quiet.users == 0 and quiet.changed_by == {}
    assert quiet.tables["recommendations"]["version"] == delta.version(cfg.table_path("recommendations"))

    capped = _set(cfg, max_changed_share=0.001)
    _night(
        cfg,
        [
            five
            | {"items": [*items, 2]}
            | {"valid_item": 1, "test_item": 2, "train_items": items[:-1], "length": len(items) + 1}
        ],
        "sequences",
        schemas.SEQUENCES,
        ["user_id"],
    )
    many = run_recommend(capped, show_progress=False)
    assert many.rescored == "all" and "more than recommend.max_changed_share" in many.reason

    other = _model_row("run-other", served, 3.0)  # the newest run: another model is served
    delta.write(
        cfg.table_path("trained_models"), pa.Table.from_pylist([other], schema=schemas.TRAINED_MODELS), "append"
    )
    switched = run_recommend(cfg, show_progress=False)
    assert switched.rescored == "all" and switched.reason == "another model is served"
    assert {r["train_run_id"] for r in _rows(cfg)} == {"run-other"}
