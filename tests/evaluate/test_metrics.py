"""Metric math on hand-computed rank arrays, protocols, and a cross-check against torchmetrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from momorec.core.metrics import (
    full_ranks,
    hit_at_k,
    metric_sums,
    ndcg_at_k,
    ranks_from_scores,
    sample_negatives,
    summarize,
    sums_to_metrics,
)
from momorec.core.significance import align_users, mean_std, paired_test


def test_hr_and_ndcg_on_hand_computed_ranks():
    ranks = np.array([0, 1, 4, 9, 10, 30])
    assert hit_at_k(ranks, 5).tolist() == [1, 1, 1, 0, 0, 0]
    assert hit_at_k(ranks, 10).tolist() == [1, 1, 1, 1, 0, 0]
    expected_ndcg10 = [1.0, 1 / np.log2(3), 1 / np.log2(6), 1 / np.log2(11), 0.0, 0.0]
    np.testing.assert_allclose(ndcg_at_k(ranks, 10), expected_ndcg10)
    summary = summarize(ranks, ks=(5, 10, 20))
    assert summary["hr_10"] == pytest.approx(4 / 6)
    assert summary["hr_20"] == pytest.approx(5 / 6)
    assert summary["ndcg_10"] == pytest.approx(np.mean(expected_ndcg10))
    assert summary["ndcg_20"] == pytest.approx((sum(expected_ndcg10) + 1 / np.log2(12)) / 6)
    assert summary["mrr"] == pytest.approx(np.mean([1, 1 / 2, 1 / 5, 1 / 10, 1 / 11, 1 / 31]))
    assert summary["users"] == 6


def test_full_ranks_exclude_history_and_padding_but_not_the_target():
    # items 1..5; column 0 is padding and would win if it were not excluded
    scores = torch.tensor(
        [
            [9.0, 0.5, 0.9, 0.8, 0.1, 0.7],  # target 1; history {2, 3} excluded -> only item 5 beats it
            [9.0, 0.5, 0.9, 0.8, 0.1, 0.7],  # target 2, which is also in the history: it stays -> rank 0
            [9.0, 0.2, 0.2, 0.2, 0.2, 0.2],  # all tied: pessimistic -> the worst rank (4 others)
        ]
    )
    history = torch.tensor([[0, 2, 3], [2, 3, 0], [0, 0, 0]])
    targets = torch.tensor([1, 2, 3])
    ranks = full_ranks(scores, history, targets)
    assert ranks.tolist() == [1, 0, 4]
    assert scores[0, 2] == 0.9  # the caller's scores are left untouched


def test_ranks_from_scores_on_candidates():
    scores = torch.tensor([[0.3, 0.9, 0.1, 0.4], [0.8, 0.1, 0.2, 0.3]])
    assert ranks_from_scores(scores, torch.tensor([0, 0])).tolist() == [2, 0]


def test_sampled_negatives_are_seeded_unseen_and_distinct():
    seen = [np.array([1, 2, 3]), np.array([4, 5])]
    users = np.array([7, 8])
    a = sample_negatives(users, seen, num_items=50, num_negatives=20, seed=1)
    b = sample_negatives(users[::-1], seen[::-1], num_items=50, num_negatives=20, seed=1)
    np.testing.assert_array_equal(a, b[::-1])  # same user, same seed -> same candidates in any order
    for row, items in zip(a, seen, strict=True):
        assert len(set(row.tolist())) == 20
        assert not set(row.tolist()) & set(items.tolist())
        assert row.min() >= 1 and row.max() <= 50
    c = sample_negatives(users, seen, num_items=50, num_negatives=20, seed=2)
    assert not np.array_equal(a, c)
    with pytest.raises(ValueError, match="cannot draw"):
        sample_negatives(users, seen, num_items=10, num_negatives=9, seed=1)


def test_metric_sums_round_trip_matches_summary():
    ranks = np.array([0, 3, 7, 12, 25, 2])
    sums = metric_sums(torch.tensor(ranks)) + metric_sums(torch.tensor([5]))
    merged = sums_to_metrics(sums)
    direct = summarize(np.append(ranks, 5))
    for key in ("hr_5", "hr_10", "hr_20", "ndcg_5", "ndcg_10", "ndcg_20"):
        assert merged[key] == pytest.approx(direct[key])


def test_cross_check_against_torchmetrics_on_the_same_scores():
    """Our full-ranking HR/NDCG equal torchmetrics' retrieval metrics computed on the same scores."""
    from torchmetrics.retrieval import RetrievalHitRate, RetrievalNormalizedDCG

    gen = torch.Generator().manual_seed(0)
    users, num_items = 64, 40
    scores = torch.rand(users, num_items + 1, generator=gen)
    targets = torch.randint(1, num_items + 1, (users,), generator=gen)
    history = torch.randint(0, num_items + 1, (users, 6), generator=gen)
    ranks = full_ranks(scores, history, targets).numpy()
    ours = summarize(ranks, ks=(5, 10))

    # the reference sees, per user, only the candidates that full ranking keeps
    preds, labels, indexes = [], [], []
    for u in range(users):
        excluded = set(history[u].tolist()) - {int(targets[u])} | {0}
        keep = [i for i in range(num_items + 1) if i not in excluded]
        preds.append(scores[u, keep])
        labels.append(torch.tensor([i == int(targets[u]) for i in keep]))
        indexes.append(torch.full((len(keep),), u))
    preds_t, labels_t, index_t = torch.cat(preds), torch.cat(labels), torch.cat(indexes)
    for k in (5, 10):
        ndcg = RetrievalNormalizedDCG(top_k=k)(preds_t, labels_t, indexes=index_t)
        hit = RetrievalHitRate(top_k=k)(preds_t, labels_t, indexes=index_t)
        assert ours[f"ndcg_{k}"] == pytest.approx(float(ndcg), abs=1e-6)
        assert ours[f"hr_{k}"] == pytest.approx(float(hit), abs=1e-6)
    assert 0 < ours["hr_10"] < 1  # the example is not degenerate


def test_paired_test_detects_a_real_lift_and_not_a_null_one():
    rng = np.random.default_rng(0)
    base = rng.random(500)
    better = base + 0.05 + rng.normal(0, 0.05, 500)
    res = paired_test(base, better)
    assert res["mean_diff"] == pytest.approx(float((better - base).mean()))
    assert res["t_pvalue"] < 1e-6 and res["wilcoxon_pvalue"] < 1e-6
    same = paired_test(base, base.copy())
    assert same["t_pvalue"] == 1.0 and same["wilcoxon_pvalue"] == 1.0
    noise = paired_test(base, base + rng.normal(0, 0.05, 500))
    assert noise["t_pvalue"] > 0.001
    with pytest.raises(ValueError, match="same users"):
        paired_test(base, base[:10])


def test_align_users_and_mean_std():
    users, a, b = align_users(
        np.array([3, 1, 2]), np.array([0.3, 0.1, 0.2]), np.array([2, 3, 1]), np.array([2.0, 3.0, 1.0])
    )
    assert users.tolist() == [1, 2, 3] and a.tolist() == [0.1, 0.2, 0.3] and b.tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="different users"):
        align_users(np.array([1, 2]), np.zeros(2), np.array([1, 3]), np.zeros(2))
    agg = mean_std([{"ndcg_10": 0.1}, {"ndcg_10": 0.3}])
    assert agg["ndcg_10"]["mean"] == pytest.approx(0.2)
    assert agg["ndcg_10"]["std"] == pytest.approx(np.std([0.1, 0.3], ddof=1))
