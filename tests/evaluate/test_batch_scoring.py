"""core.batch_scoring: the users of a Delta `sequences` table scored in batches (locally and on Ray actors)
give exactly the ranks and top-K that scoring the whole table at once gives, and memory follows the batch."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from momorec.core.batch_scoring import RankTotals, ScoringTask, score_users, table_files
from momorec.core.checkpoint import TrainState, load_checkpoint, model_from_checkpoint, save_checkpoint
from momorec.core.config import ScoringConfig
from momorec.core.metrics import summarize
from momorec.core.ranking import rank_users
from momorec.core.scoring import top_k
from momorec.core.sequences import load_sequences
from momorec.models import ModelConfig, build_model
from momorec.storage import delta, schemas

NUM_ITEMS = 60


def _tables(root, users: int, seed: int = 0) -> tuple[str, str]:
    rng = np.random.default_rng(seed)
    rows = []
    for user in rng.permutation(np.arange(1, users + 1)):  # files hold users in no particular order
        items = rng.integers(1, NUM_ITEMS + 1, size=int(rng.integers(3, 14))).tolist()
        rows.append(
            {
                "user_id": int(user),
                "items": items,
                "train_items": items[:-2],
                "valid_item": items[-2],
                "test_item": items[-1],
                "length": len(items),
            }
        )
    sequences, item_ids = str(root / "sequences"), str(root / "item_ids")
    table = pa.Table.from_pylist(rows, schema=schemas.SEQUENCES)
    for start in range(0, table.num_rows, 70):  # several data files
        delta.write(sequences, table.slice(start, 70), mode="append" if start else "overwrite")
    ids = pa.table({"item": [str(i) for i in range(1, NUM_ITEMS + 1)], "item_id": list(range(1, NUM_ITEMS + 1))})
    delta.write(item_ids, ids)
    return sequences, item_ids


def _payload(tmp_path) -> dict:
    cfg = ModelConfig(hidden_size=8, inner_size=16, num_layers=1, num_heads=1, max_len=6)
    model = build_model(cfg, num_items=NUM_ITEMS, seed=3)
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    state = TrainState(epoch=1, best_epoch=0, best_metric=0.1, best_state=weights)
    return load_checkpoint(save_checkpoint(str(tmp_path / "ckpt"), model, None, state, 0, None, None))


def _by_user(batches, value: str) -> dict:
    table = pa.Table.from_batches(list(batches))
    return {
        (u, p): r
        for u, p, r in zip(*(table.column(c).to_pylist() for c in ("user_id", "protocol", value)), strict=True)
    }


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    root = tmp_path_factory.mktemp("scoring")
    sequences, item_ids = _tables(root, users=250)
    payload = _payload(root)
    whole = load_sequences(sequences, item_ids)
    return sequences, payload, whole


def test_local_batches_rank_every_user_as_one_pass_does(scored):
    sequences, payload, whole = scored
    model = model_from_checkpoint(payload)
    task = ScoringTask(kind="ranks", split="test", protocols=["full", "sampled"], num_negatives=20, negative_seed=5)
    totals = RankTotals([5, 10])
    got = _by_user(
        totals.passing(score_users(table_files(sequences), payload, task, NUM_ITEMS, 32, ScoringConfig())), "rank"
    )
    for protocol, label in (("full", "full"), ("sampled", "sampled20")):
        users, ranks = rank_users(model, whole, "test", protocol, 6, num_negatives=20, negative_seed=5)
        assert {u: got[(u, label)] for u in users.tolist()} == dict(zip(users.tolist(), ranks.tolist(), strict=True))
        expected = summarize(ranks, [5, 10])
        assert totals.metrics()[label] == pytest.approx(expected)
    assert len(got) == 2 * whole.num_users


def test_local_top_k_matches_scoring_the_whole_table(scored):
    sequences, payload, whole = scored
    model = model_from_checkpoint(payload)
    task = ScoringTask(kind="top_k", k=7)
    table = pa.Table.from_batches(
        list(score_users(table_files(sequences), payload, task, NUM_ITEMS, 50, ScoringConfig()))
    )
    histories = [whole.items[whole.offsets[r] : whole.offsets[r + 1]] for r in range(whole.num_users)]
    items, _ = top_k(model, whole.user_ids, histories, 7, True, catalog_size=NUM_ITEMS)
    expected = dict(zip(whole.user_ids.tolist(), items.tolist(), strict=True))
    assert dict(zip(table.column("user_id").to_pylist(), table.column("items").to_pylist(), strict=True)) == expected


@pytest.mark.ray
def test_ray_actors_give_the_same_ranks(scored):
    sequences, payload, whole = scored
    model = model_from_checkpoint(payload)
    task = ScoringTask(kind="ranks", split="valid", protocols=["full"])
    from momorec.config import RayConfig

    cfg = ScoringConfig(engine="ray", num_actors=2, cpus_per_actor=1)
    got = _by_user(
        score_users(table_files(sequences), payload, task, NUM_ITEMS, 40, cfg, RayConfig(num_cpus=4)), "rank"
    )
    users, ranks = rank_users(model, whole, "valid", "full", 6)
    assert {u: got[(u, "full")] for u in users.tolist()} == dict(zip(users.tolist(), ranks.tolist(), strict=True))


def test_a_batch_is_checked_like_a_whole_table(tmp_path, scored):
    _, payload, _ = scored
    bad = [{"user_id": 1, "items": [1, 2, 999], "train_items": [1], "valid_item": 2, "test_item": 999, "length": 3}]
    delta.write(str(tmp_path / "bad"), pa.Table.from_pylist(bad, schema=schemas.SEQUENCES))
    task = ScoringTask(kind="ranks", split="test")
    with pytest.raises(ValueError, match="outside the embedding range"):
        list(score_users(table_files(str(tmp_path / "bad")), payload, task, NUM_ITEMS, 8, ScoringConfig()))
    assert table_files(str(tmp_path / "bad")).rows == 1
