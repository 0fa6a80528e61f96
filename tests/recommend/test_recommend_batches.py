"""The recommend stage on the shared batch scoring, on a hand-built warehouse (no Spark, no training): the
rows equal scoring the whole table at once with the old dict joins, on either engine, and the user-side
columns come through the bucketed join (several buckets here) for exactly the users that have them."""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pytest

from momorec.config import load_config
from momorec.core.checkpoint import TrainState, load_checkpoint, model_from_checkpoint, save_checkpoint
from momorec.core.scoring import top_k
from momorec.core.sequences import load_sequences
from momorec.models import ModelConfig, build_model
from momorec.recommend.explain import bucket_of, lookup
from momorec.recommend.stage import run_recommend
from momorec.storage import delta, schemas
from tests.conftest import DEMO_CONFIG

NUM_ITEMS = 60  # the catalog (item_ids)
MODEL_ITEMS = 56  # the served model predates the last 4 items (a champion kept by the refresh)
USERS = 250
K = 5
MOTIVATED = {u: f"user {u} wants things of kind {u % 7}" for u in range(1, USERS + 1) if u % 3 == 0}
FAILED = {u for u in range(1, USERS + 1) if u % 3 == 1}  # a failed motivation row: no text served
USER_CODES = {u: [u % 4, u % 5] for u in range(1, USERS + 1) if u % 5 != 0}
ITEM_CODES = {i: [i % 3, i % 8] for i in range(1, NUM_ITEMS + 1) if i % 6 != 0}


def _checkpoint(root, name: str, num_items: int) -> str:
    cfg = ModelConfig(hidden_size=8, inner_size=16, num_layers=1, num_heads=1, max_len=6)
    model = build_model(cfg, num_items=num_items, seed=3)
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    state = TrainState(epoch=1, best_epoch=0, best_metric=0.1, best_state=weights)
    return save_checkpoint(str(root / name), model, None, state, 0, None, None)


def _model_row(run: str, checkpoint: str, created_at: float) -> dict:
    return {
        "train_run_id": run,
        "seed_run_id": f"{run}-seed",
        "seed": 1,
        "architecture": "sasrec",
        "model_config": "{}",
        "checkpoint": checkpoint,
        "best_epoch": 0,
        "epochs_run": 1,
        "valid_ndcg_10": 0.1,
        "model_uri": None,
        "registered_version": None,
        "item_codebook_version": None,
        "user_codebook_version": None,
        "sequences_version": 0,
        "created_at": created_at,
    }


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    return build_warehouse(tmp_path_factory.mktemp("recommend"))


def build_warehouse(root, overrides: tuple[str, ...] = ()):
    """The tables recommend reads, written in several files each with users in no particular order; (cfg, the
    served checkpoint)."""
    cfg = load_config(
        DEMO_CONFIG,
        [
            f"warehouse={root / 'wh'}",
            "recommend.model=latest",
            f"recommend.top_k={K}",
            "recommend.batch_size=16",
            "recommend.join_bucket_users=40",  # 250 users -> 7 buckets
            *overrides,
        ],
    )
    rng = np.random.default_rng(0)
    sequences = []
    for user in rng.permutation(np.arange(1, USERS + 1)):
        items = rng.integers(1, NUM_ITEMS + 1, size=int(rng.integers(3, 14))).tolist()
        row = {"user_id": int(user), "items": items, "train_items": items[:-2], "length": len(items)}
        sequences.append(row | {"valid_item": items[-2], "test_item": items[-1]})

    def write_in_parts(name: str, rows: list[dict], schema: pa.Schema) -> None:
        table = pa.Table.from_pylist(rows, schema=schema)
        for start in range(0, table.num_rows, 90):
            delta.write(cfg.table_path(name), table.slice(start, 90), mode="append" if start else "overwrite")

    write_in_parts("sequences", sequences, schemas.SEQUENCES)
    ids = {"item": [str(i) for i in range(1, NUM_ITEMS + 1)], "item_id": list(range(1, NUM_ITEMS + 1))}
    delta.write(cfg.table_path("item_ids"), pa.table(ids))
    motivations = [
        {"user_id": u, "status": "ok", "failure_reason": "", "motivation_text": text} for u, text in MOTIVATED.items()
    ] + [{"user_id": u, "status": "failed", "failure_reason": "timeout", "motivation_text": "x"} for u in FAILED]
    rng.shuffle(motivations)
    # as motivate writes it: MERGEs, whose files store strings as string_view (pyarrow's kernels refuse those)
    table = pa.Table.from_pylist(motivations, schema=schemas.USER_MOTIVATIONS)
    for start in range(0, table.num_rows, 90):
        delta.upsert(cfg.table_path("user_motivations"), table.slice(start, 90), ["user_id"])
    codes = [{"entity_type": "user", "entity_id": u, "codes": c} for u, c in USER_CODES.items()]
    codes += [{"entity_type": "item", "entity_id": i, "codes": c} for i, c in ITEM_CODES.items()]
    rng.shuffle(codes)
    write_in_parts("semantic_ids", codes, schemas.SEMANTIC_IDS)
    served = _checkpoint(root, "served", MODEL_ITEMS)
    too_big = _checkpoint(root, "too-big", NUM_ITEMS + 3)
    rows = [_model_row("run-served", served, 2.0), _model_row("run-too-big", too_big, 1.0)]
    delta.write(cfg.table_path("trained_models"), pa.Table.from_pylist(rows, schema=schemas.TRAINED_MODELS))
    return cfg, served


def _rows(cfg) -> list[dict]:
    return delta.read(cfg.table_path("recommendations")).sort_by("user_id").to_pylist()


def _without_time(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("scores", "created_at")} for r in rows]


def test_rows_equal_scoring_the_whole_table_with_the_old_joins(warehouse, tracking_env, caplog):
    cfg, served = warehouse
    with caplog.at_level(logging.WARNING, logger="momorec.recommend.stage"):
        result = run_recommend(cfg, show_progress=False)
    assert f"knows {MODEL_ITEMS} of {NUM_ITEMS} items" in caplog.text
    # the computation recommend made before batch scoring: every user at once, then dicts of every user
    whole = load_sequences(cfg.table_path("sequences"), cfg.table_path("item_ids"))
    model = model_from_checkpoint(load_checkpoint(served))
    histories = [whole.items[whole.offsets[r] : whole.offsets[r + 1]] for r in range(whole.num_users)]
    items, scores = top_k(model, whole.user_ids, histories, K, True, catalog_size=NUM_ITEMS)
    expected = [
        {
            "user_id": int(user),
            "items": items[i].tolist(),
            "item_codes": [ITEM_CODES.get(int(item)) for item in items[i]],
            "user_codes": USER_CODES.get(int(user)),
            "motivation_text": MOTIVATED.get(int(user)),
            "train_run_id": "run-served",
            "seed": 1,
        }
        for i, user in enumerate(whole.user_ids)
    ]
    got = _rows(cfg)
    assert [r["user_id"] for r in got] == list(range(1, USERS + 1)), "one row per user"
    assert _without_time(got) == expected
    np.testing.assert_allclose(np.array([r["scores"] for r in got]), scores, rtol=1e-5, atol=1e-6)
    assert max(max(r["items"]) for r in got) <= MODEL_ITEMS, "items the model never saw are not recommended"
    assert result.users == USERS and result.top_k == K
    assert result.with_motivation == len(MOTIVATED)
    assert result.train_run_id == "run-served" and result.model_seed == 1


def test_a_user_gets_the_texts_and_codes_they_have_and_nulls_otherwise(warehouse, tracking_env):
    cfg, _ = warehouse
    run_recommend(cfg, show_progress=False)
    by_user = {r["user_id"]: r for r in _rows(cfg)}
    both = by_user[6]  # motivated (6 % 3 == 0) and coded (6 % 5 != 0)
    assert both["motivation_text"] == MOTIVATED[6] and both["user_codes"] == [2, 1]
    neither = by_user[10]  # a failed motivation (10 % 3 == 1) and no codes (10 % 5 == 0)
    assert neither["motivation_text"] is None and neither["user_codes"] is None
    codes_only = by_user[2]  # no motivation row at all
    assert codes_only["motivation_text"] is None and codes_only["user_codes"] == [2, 2]
    for row in by_user.values():
        assert row["item_codes"] == [ITEM_CODES.get(i) for i in row["items"]]


@pytest.mark.ray
def test_ray_actors_write_the_same_table_as_the_local_engine(warehouse, tracking_env, ray_local):
    cfg, _ = warehouse
    run_recommend(cfg, show_progress=False)
    local = _rows(cfg)
    on_ray = cfg.model_copy(
        update={"scoring": cfg.scoring.model_copy(update={"engine": "ray", "num_actors": 2, "cpus_per_actor": 1})}
    )
    result = run_recommend(on_ray, show_progress=False)
    ray_rows = _rows(cfg)
    assert _without_time(ray_rows) == _without_time(local)
    np.testing.assert_allclose([r["scores"] for r in ray_rows], [r["scores"] for r in local], rtol=1e-6)
    assert result.users == USERS and result.with_motivation == len(MOTIVATED)


@pytest.mark.ray
def test_an_actor_pool_taking_every_cpu_of_a_local_ray_is_refused_not_left_waiting(warehouse, tracking_env, ray_local):
    cfg, _ = warehouse
    cpus = int(ray_local.cluster_resources()["CPU"])
    greedy = cfg.model_copy(
        update={"scoring": cfg.scoring.model_copy(update={"engine": "ray", "num_actors": cpus, "cpus_per_actor": 1})}
    )
    with pytest.raises(ValueError, match="leaving Ray Data's readers none"):
        run_recommend(greedy, show_progress=False)


def test_a_model_knowing_more_items_than_the_catalog_is_refused(warehouse, tracking_env):
    cfg, _ = warehouse
    wrong = cfg.model_copy(update={"recommend": cfg.recommend.model_copy(update={"train_run_id": "run-too-big"})})
    with pytest.raises(ValueError, match="wrong dataset"):
        run_recommend(wrong, show_progress=False)


def test_lookup_keeps_the_last_row_of_a_key_and_gives_null_for_a_missing_one():
    table = pa.table({"user_id": [3, 1, 3], "text": ["old", "a", "new"]})
    assert lookup(np.array([3, 2, 1]), table, "user_id", "text").to_pylist() == ["new", None, "a"]
    assert lookup(np.array([1]), table.slice(0, 0), "user_id", "text").to_pylist() == [None]


def test_buckets_split_users_evenly():
    buckets = bucket_of(np.arange(1, 101), buckets=7)
    assert buckets.min() == 0 and buckets.max() == 6
    assert np.bincount(buckets).max() - np.bincount(buckets).min() <= 1
