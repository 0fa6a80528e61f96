"""The user selections that make the nightly refresh cost what changed: a stable seeded sample of users, decided
per id (pure numpy), and the users whose `sequences` row changed between two versions of a real Delta table."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from momorec.core.batch_scoring import BatchScorer, ScoringTask
from momorec.core.sequences import changed_users, load_sequences
from momorec.core.user_selection import EVERYONE, UserSelection, in_sample, sample_share
from momorec.storage import delta, schemas


def test_the_sample_is_stable_nested_and_close_to_its_share():
    ids = np.arange(1, 200_001, dtype=np.int64)
    small, large = in_sample(ids, 0.02, seed=5), in_sample(ids, 0.1, seed=5)
    assert abs(small.mean() - 0.02) < 0.002 and abs(large.mean() - 0.1) < 0.004
    assert not (small & ~large).any(), "a smaller share's sample is inside a larger one's"
    # decided per id: a batch, shuffled or cut anywhere, gets the same answer for each user
    order = np.random.default_rng(0).permutation(ids.size)
    assert np.array_equal(in_sample(ids[order], 0.02, seed=5), small[order])
    assert not np.array_equal(in_sample(ids, 0.02, seed=6), small), "another seed, another sample"
    assert in_sample(ids, 1.0, seed=5).all()


def test_listed_users_are_kept_whatever_their_hash():
    ids = np.arange(1, 10_001, dtype=np.int64)
    listed = np.array([3, 77, 9_999])
    chosen = UserSelection(share=0.01, seed=1, listed=listed)
    mask = chosen.keep(ids)
    assert mask[listed - 1].all() and mask.sum() <= in_sample(ids, 0.01, 1).sum() + 3
    assert chosen.label() == "share=0.01,seed=1,listed=3" and EVERYONE.label() == "all"
    assert chosen.keep(pa.chunked_array([pa.array([3, 4], pa.int64())])).tolist()[0]


@pytest.mark.parametrize(("wanted", "users", "share"), [(None, 10, 1.0), (50, 10, 1.0), (10, 50, 0.2), (0, 5, 0.0)])
def test_sample_share(wanted, users, share):
    assert sample_share(wanted, users) == share


def _rows(histories: dict[int, list[int]]) -> pa.Table:
    rows = [
        {
            "user_id": u,
            "items": items,
            "train_items": items[:-2],
            "valid_item": items[-2],
            "test_item": items[-1],
            "length": len(items),
        }
        for u, items in histories.items()
    ]
    return pa.Table.from_pylist(rows, schema=schemas.SEQUENCES)


def test_changed_users_compares_the_rows_of_the_files_two_versions_do_not_share(tmp_path):
    path = str(tmp_path / "sequences")
    first = {u: [u % 7 + 1, u % 5 + 1, 9, 3] for u in range(1, 41)}
    delta.write(path, _rows({u: h for u, h in first.items() if u <= 20}), mode="overwrite")
    delta.write(path, _rows({u: h for u, h in first.items() if u > 20}), mode="append")
    since = delta.version(path)
    # a night: users 4 and 25 bought again, user 41 is new, user 6's file is rewritten with the same history,
    # user 8's history is reordered (same items, another order)
    night = {u: first[u] for u in range(1, 21)}
    night[4] = [*first[4], 2]
    night[8] = [first[8][1], first[8][0], 9, 3]
    delta.write(path, _rows(night), mode="overwrite", replace_where="user_id <= 20")
    delta.write(
        path, _rows({25: [*first[25], 6], 41: [1, 2, 3]}), mode="overwrite", replace_where="user_id IN (25, 41)"
    )
    assert changed_users(path, since).tolist() == [4, 8, 25, 41]
    assert changed_users(path, delta.version(path)).tolist() == []
    assert changed_users(path, 99) is None, "a version that cannot be read: every user counts as changed"


def test_sequences_and_scoring_read_only_the_selected_users(tmp_path):
    path, item_ids = str(tmp_path / "sequences"), str(tmp_path / "item_ids")
    delta.write(path, _rows({u: [u % 7 + 1, u % 5 + 1, 9, 3] for u in range(1, 2001)}), mode="overwrite")
    delta.write(item_ids, pa.table({"item": [str(i) for i in range(1, 10)], "item_id": list(range(1, 10))}))
    sample = UserSelection(share=0.1, seed=3, listed=np.array([1, 2]))
    data = load_sequences(path, item_ids, selection=sample)
    expected = np.flatnonzero(sample.keep(np.arange(1, 2001))) + 1
    assert np.array_equal(data.user_ids, expected) and 150 < data.num_users < 260

    from momorec.core.checkpoint import TrainState, load_checkpoint, save_checkpoint
    from momorec.models import build_model
    from momorec.models.config import ModelConfig

    model = build_model(ModelConfig(hidden_size=8, inner_size=16, num_layers=1, num_heads=1, max_len=5), 9, seed=0)
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    state = TrainState(epoch=1, best_epoch=0, best_metric=0.1, best_state=weights)
    payload = load_checkpoint(save_checkpoint(str(tmp_path / "ckpt"), model, None, state, 0, None, None))
    table = delta.read(path)
    every = BatchScorer(payload, ScoringTask(kind="ranks", split="valid").model_dump_json(), 9)(table)
    task = ScoringTask(kind="ranks", split="valid", users_share=0.1, users_seed=3)
    sampled = BatchScorer(payload, task.model_dump_json(), 9)(table)
    kept = set(np.flatnonzero(in_sample(np.arange(1, 2001), 0.1, 3)) + 1)
    assert set(sampled.column("user_id").to_pylist()) == kept
    ranks = dict(zip(every.column("user_id").to_pylist(), every.column("rank").to_pylist(), strict=True))
    assert all(ranks[u] == r for u, r in zip(sampled["user_id"].to_pylist(), sampled["rank"].to_pylist(), strict=True))


def test_ray_training_rows_are_the_selected_users_with_enough_items():
    from momorec.train.distributed import _trainable

    table = _rows({u: [1, 2, 3, 4][: 3 + u % 2] for u in range(1, 1001)})  # odd users: 2 training items
    chosen = UserSelection(share=0.2, seed=4, listed=np.array([2, 3]))
    kept = _trainable(table, 2, chosen).column("user_id").to_pylist()
    expected = [u for u in range(1, 1001) if u % 2 and chosen.keep(np.array([u]))[0]]
    assert kept == expected and 3 in kept and 2 not in kept, "user 2 has one training item: never trained on"


def test_a_scoring_task_keeps_its_listed_users_and_its_sample():
    ids = np.arange(1, 2001, dtype=np.int64)
    assert ScoringTask(kind="top_k").selection() is None, "no selection: every user, without a mask"
    listed = ScoringTask(kind="top_k", users_listed=[5, 77, 1999, 5000])
    assert ids[listed.selection().keep(ids)].tolist() == [5, 77, 1999]
    both = ScoringTask(kind="ranks", users_share=0.1, users_seed=3, users_listed=[5])
    expected = in_sample(ids, 0.1, 3) | np.isin(ids, [5])
    assert np.array_equal(both.selection().keep(ids), expected) and both.selection().keep(ids)[4]
    back = ScoringTask.model_validate_json(listed.model_dump_json())  # what a Ray actor receives
    assert np.array_equal(back.selection().keep(ids), listed.selection().keep(ids))
