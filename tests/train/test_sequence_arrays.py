"""Padding, leave-one-out inputs and semantic-code matrices on hand-made arrays."""

from __future__ import annotations

import numpy as np
import pytest

from momorec.core.sequences import (
    SequenceData,
    excluded_items,
    pad_train_items,
    scoring_batch,
    seen_items,
    training_rows,
    validate,
)
from momorec.train.semantic import codes_matrix


def toy() -> SequenceData:
    seqs = [[1, 2, 3, 4, 5], [6, 7, 8], [2, 9, 4, 1]]
    items = np.concatenate([np.array(s) for s in seqs])
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])])
    return SequenceData(
        user_ids=np.array([1, 2, 3]),
        items=items,
        offsets=offsets,
        train_len=np.array([3, 1, 2]),
        valid_item=np.array([4, 7, 4]),
        test_item=np.array([5, 8, 1]),
        num_items=9,
    )


def test_training_and_scoring_arrays_follow_leave_one_out():
    data = toy()
    validate(data)
    train = training_rows(data, max_len=2)  # user 2 has one training item: no (input, next) pair
    assert len(train) == 2 and train.lengths.tolist() == [3, 2]
    padded = train.padded()
    assert padded["user_id"].tolist() == [1, 3]
    assert padded["seq"].tolist() == [[1, 2, 3], [0, 2, 9]]
    assert train.batch(np.array([1]))["seq"].tolist() == [[0, 2, 9]]  # a batch pads only its own rows
    everyone = np.arange(3)
    valid = scoring_batch(data, everyone, "valid", max_len=3)
    assert valid["history"].tolist() == [[1, 2, 3], [0, 0, 6], [0, 2, 9]] and valid["target"].tolist() == [4, 7, 4]
    test = scoring_batch(data, everyone, "test", max_len=3)
    assert test["history"].tolist() == [[2, 3, 4], [0, 6, 7], [2, 9, 4]] and test["target"].tolist() == [5, 8, 1]
    part = scoring_batch(data, np.array([2]), "test", max_len=3)
    assert part["history"].tolist() == [[2, 9, 4]] and part["user_id"].tolist() == [3]
    # the whole history is excluded from ranking, not only the last max_len items
    assert excluded_items(data, np.array([0, 2]), "test").tolist() == [[1, 2, 3, 4], [2, 9, 4, 0]]
    assert [s.tolist() for s in seen_items(data, np.array([1]))] == [[6, 7, 8]]


def test_ray_data_padding_matches_the_local_arrays():
    data = toy()
    batch = {"user_id": np.array([1, 3]), "train_items": [np.array([1, 2, 3]), np.array([2, 9])]}
    padded = pad_train_items(batch, max_len=2)
    np.testing.assert_array_equal(padded["seq"], training_rows(data, max_len=2).padded()["seq"])


def test_split_consistency_and_npz_round_trip(tmp_path):
    data = toy()
    data.test_item[0] = 9
    with pytest.raises(ValueError, match="last two items"):
        validate(data)
    good = toy()
    good.save_npz(str(tmp_path / "d.npz"))
    back = SequenceData.load_npz(str(tmp_path / "d.npz"))
    np.testing.assert_array_equal(back.items, good.items)
    assert back.num_items == 9
    sub = good.subset(np.array([2]))
    assert sub.user_ids.tolist() == [3] and sub.items.tolist() == [2, 9, 4, 1]


def test_codes_matrix_shifts_codes_and_handles_missing_entities():
    ids = np.array([1, 3, 99])
    codes = [[0, 1], [2, 0], [1, 1]]
    out, missing = codes_matrix(
        ids, codes, num_entities=3, wanted=np.array([1, 2, 3]), on_missing="reserved", what="item"
    )
    assert out.tolist() == [[0, 0], [1, 2], [0, 0], [3, 1]]  # id 99 ignored, id 2 reserved
    assert missing == 1
    with pytest.raises(ValueError, match="misses 1 of 3 items"):
        codes_matrix(ids, codes, 3, np.array([1, 2, 3]), "error", "item")
    with pytest.raises(ValueError, match="different numbers of levels"):
        codes_matrix(np.array([1, 2]), [[0, 1], [0]], 3, np.array([1]), "error", "item")


@pytest.mark.parametrize("with_centroids", [True, False])
def test_semantic_inputs_npz_round_trip(tmp_path, with_centroids):
    import torch

    from momorec.models.interface import SemanticInputs

    codes = torch.tensor([[0, 0], [1, 3], [4, 2]])
    centroids = torch.rand(2, 4, 5) if with_centroids else None
    SemanticInputs(codes, 4, centroids, "v7").save_npz(str(tmp_path / "s.npz"))
    back = SemanticInputs.load_npz(str(tmp_path / "s.npz"))
    assert torch.equal(back.codes, codes) and back.num_codes == 4 and back.version == "v7"
    assert (back.centroids is None) if centroids is None else torch.equal(back.centroids, centroids)


def _naive_window(items, start, count, width, left):
    chunk = items[start : start + count][-width:] if count else items[:0]
    row = np.zeros(width, dtype=np.int64)
    if left:
        row[width - chunk.size :] = chunk
    else:
        row[: chunk.size] = chunk
    return row


def test_windows_gathers_what_a_loop_per_user_would():
    from momorec.core.sequences import windows

    rng = np.random.default_rng(3)
    for _ in range(50):
        counts = rng.integers(0, 12, size=rng.integers(1, 30))
        items = rng.integers(1, 100, size=int(counts.sum()) + 5)
        starts = np.cumsum(counts) - counts
        width = int(rng.integers(1, 15))
        for left in (True, False):
            expected = np.stack([_naive_window(items, s, c, width, left) for s, c in zip(starts, counts, strict=True)])
            assert np.array_equal(windows(items, starts, counts, width, left), expected)


def test_top_k_never_returns_a_seen_item_or_padding():
    import torch

    from momorec.core.scoring import top_k

    class Scores:  # item i scores i for every user: what matters here is the exclusion, not a model
        num_items = 40

        class cfg:
            max_len = 6

        class embedder:
            user_semantic = None

            @staticmethod
            def table():
                return torch.arange(41, dtype=torch.float32)[:, None]  # (N+1, 1)

        def sequence_vector(self, batch):
            return torch.ones(batch["history"].shape[0], 1)

    rng = np.random.default_rng(5)
    histories = [rng.integers(1, 41, size=n) for n in (0, 3, 9, 20)] + [np.array([1, 2, 50])]  # 50: unknown
    items, scores = top_k(Scores(), np.arange(1, 6), histories, k=5)
    for row, history in enumerate(histories):
        assert not set(items[row].tolist()) & set(history.tolist()) and 0 not in items[row]
        unseen = sorted(set(range(1, 41)) - set(history.tolist()), reverse=True)[:5]
        assert items[row].tolist() == unseen
        assert scores[row].tolist() == [float(i) for i in unseen]
