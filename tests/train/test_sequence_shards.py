"""A trainer reads `sequences` a record batch at a time: a Ray worker holds only its own users, the Ray
driver none, and the counts come from a scan of two columns."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from training_toydata import write_sequences

from momorec.core.sequences import ALL_USERS, Shard, load_sequences, scan_sequences
from momorec.storage import delta, schemas
from momorec.train.runner import TrainingInputs


def _sequences(seed: int, users: int) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(1, 40, size=int(rng.integers(3, 12))).tolist() for _ in range(users)]


def test_worker_shards_partition_the_users_and_each_equals_its_rows_of_the_whole(tmp_path):
    root = str(tmp_path)
    write_sequences(root, _sequences(3, 50), num_items=40)
    more = _sequences(4, 25)  # a second data file, as a night's rewrite leaves
    rows = {
        "user_id": list(range(51, 76)),
        "items": more,
        "train_items": [s[:-2] for s in more],
        "valid_item": [s[-2] for s in more],
        "test_item": [s[-1] for s in more],
        "length": [len(s) for s in more],
    }
    delta.write(f"{root}/sequences", pa.Table.from_pydict(rows, schema=schemas.SEQUENCES), mode="append")
    paths = f"{root}/sequences", f"{root}/item_ids"
    whole = load_sequences(*paths, ALL_USERS)
    assert whole.num_users == 75 and len(delta.file_uris(paths[0])) == 2
    seen = []
    for rank in range(3):
        part = load_sequences(*paths, Shard(rank, 3))
        assert set((part.user_ids % 3).tolist()) == {rank}
        expected = whole.subset(np.flatnonzero(whole.user_ids % 3 == rank))
        for name in ("user_ids", "items", "offsets", "train_len", "valid_item", "test_item"):
            assert np.array_equal(getattr(part, name), getattr(expected, name)), name
        assert part.num_items == whole.num_items and part.versions == whole.versions
        seen += part.user_ids.tolist()
    assert sorted(seen) == whole.user_ids.tolist()  # disjoint and complete

    facts = scan_sequences(*paths, min_train_items=5)
    assert (facts.users, facts.num_items, facts.max_user_id) == (75, 40, 75)
    assert facts.trainable_users == int((whole.train_len >= 5).sum()) > 0
    assert facts.versions == whole.versions


def test_the_ray_driver_loads_no_user_but_every_count(toy_cfg):
    driver = TrainingInputs.load(toy_cfg, users=None)
    local = TrainingInputs.load(toy_cfg)
    assert driver.data.num_users == 0 and local.data.num_users > 0
    assert driver.data.num_items == local.data.num_items
    assert driver.facts == local.facts and driver.facts["users"] == local.data.num_users
