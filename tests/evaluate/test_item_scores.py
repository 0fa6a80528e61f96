"""ItemScorer and best_k: the fast scoring path gives what full_sort_predict and torch.topk give."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from momorec.core.item_scores import BLOCK, ItemScorer, best_k
from momorec.core.metrics import count_at_least, full_ranks
from momorec.models import ModelConfig, SemanticInputs, build_model

NUM_ITEMS, NUM_USERS, MAX_LEN = 300, 40, 12


def model(arch: str):
    gen = torch.Generator().manual_seed(3)

    def semantic(entities: int) -> SemanticInputs:
        codes = torch.randint(1, 9, (entities + 1, 2), generator=gen)
        return SemanticInputs(codes, 8, torch.randn(2, 8, 24, generator=gen), "v")

    cfg = ModelConfig(
        architecture=arch,
        hidden_size=16,
        num_heads=2,
        inner_size=32,
        max_len=MAX_LEN,
        item_semantic={"mode": "frozen"},
        user_semantic={"mode": "trainable"},
    )
    return build_model(cfg, NUM_ITEMS, semantic(NUM_ITEMS), semantic(NUM_USERS), seed=1).eval()


def histories(rows: int, seed: int) -> torch.Tensor:
    """Left-padded histories of very different lengths (1..MAX_LEN), in random order."""
    rng = np.random.default_rng(seed)
    out = np.zeros((rows, MAX_LEN), dtype=np.int64)
    for row, length in enumerate(rng.integers(1, MAX_LEN + 1, size=rows)):
        out[row, MAX_LEN - length :] = rng.integers(1, NUM_ITEMS + 1, size=length)
    return torch.from_numpy(out)


@pytest.mark.parametrize("arch", ["sasrec", "gru4rec", "bert4rec"])
def test_item_scorer_equals_full_sort_predict(arch):
    recommender = model(arch)
    scorer = ItemScorer(recommender, chunk_rows=7)  # chunks of rows sorted by length, each trimmed on its own
    for seed, rows in ((0, 50), (1, 13)):  # the second call reuses (a slice of) the first call's buffer
        history, users = histories(rows, seed), torch.randint(1, NUM_USERS + 1, (rows,))
        with torch.no_grad():
            expected = recommender.full_sort_predict({"history": history, "user_id": users})
        scores = scorer.scores(history, users)
        assert scores.shape == (rows, -(-(NUM_ITEMS + 1) // BLOCK) * BLOCK)
        torch.testing.assert_close(scores[:, 1 : NUM_ITEMS + 1], expected[:, 1:], rtol=1e-5, atol=1e-5)
        assert torch.isneginf(scores[:, 0]).all() and torch.isneginf(scores[:, NUM_ITEMS + 1 :]).all()


def test_best_k_is_topk():
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(64, 40 * BLOCK, generator=gen)
    scores[3] = -torch.inf  # a user who has seen everything
    scores[5, : 30 * BLOCK] = -torch.inf  # the best items all in the last blocks
    scores[7, ::BLOCK] = 50.0 + torch.arange(40, dtype=torch.float32)  # every block's maximum in its first column
    for k in (1, 5, 10):
        indices, values = best_k(scores, k)
        expected = torch.topk(scores, k, dim=1)
        assert torch.equal(values, expected.values)
        finite = torch.isfinite(expected.values).all(dim=1)
        assert torch.equal(indices[finite], expected.indices[finite])
        assert torch.equal(scores.gather(1, indices), values)  # -inf rows: some columns, all -inf
    narrow = torch.randn(4, 100, generator=gen)  # not a multiple of BLOCK: torch.topk itself
    assert torch.equal(best_k(narrow, 3)[0], torch.topk(narrow, 3, dim=1).indices)


def test_count_at_least_and_in_place_ranks_agree_with_torch():
    gen = torch.Generator().manual_seed(1)
    scores = torch.randn(20, 500, generator=gen)
    scores[:, 7] = scores[:, 9]  # ties count against the target
    threshold = scores[:, 9:10]
    assert torch.equal(count_at_least(scores, threshold), (scores >= threshold).sum(dim=1))
    history = torch.randint(0, 500, (20, 6), generator=gen)
    targets = torch.randint(1, 500, (20,), generator=gen)
    copied = full_ranks(scores, history, targets)
    assert torch.equal(full_ranks(scores.clone(), history, targets, in_place=True), copied)
