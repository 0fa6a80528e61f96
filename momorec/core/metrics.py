"""Ranking metrics for leave-one-out evaluation: pure numpy/torch, no Spark, no Ray.

Each user has exactly one held-out item (the validation or the test item), so a user's result is one
0-based rank: the number of competing items scored above the target. From the rank,

    HR@K   = 1                      if rank < K else 0
    NDCG@K = 1 / log2(rank + 2)     if rank < K else 0        (the ideal DCG of one relevant item is 1)

which is the definition of RecBole, SASRec (Kang & McAuley, ICDM 2018) and S3-Rec.

Two protocols (always labelled in metric names, e.g. `test.full.ndcg_10`):
- `full`: the target competes with every item 1..N. Items of the user's history are excluded (scored
  -inf) unless the item is the target itself; padding (column 0) is always excluded.
- `sampled`: the target competes with `num_negatives` items drawn uniformly, without replacement,
  from the items the user never interacted with, by a generator seeded per (seed, user_id), so two
  runs see the very same candidates (Krichene & Rendle, KDD 2020, explain why this protocol is
  optimistic; it is offered for comparison with older papers only).

Ties are counted against the target (pessimistic): a model that scores everything equal gets the
worst rank, never a lucky one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch

DEFAULT_KS: tuple[int, ...] = (5, 10, 20)


def mask_history_(scores: torch.Tensor, history: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Exclude history items and padding from full ranking, in place.

    scores: (B, N+1) float, column i = item id i (column 0 = padding).
    history: (B, H) int64, item ids the user interacted with before the target; 0 = padding.
    targets: (B,) int64, the held-out item; it keeps its score even if it also appears in history.
    Returns `scores` (modified).
    """
    target_scores = scores.gather(1, targets[:, None])  # (B, 1)
    rows = torch.arange(scores.shape[0], device=scores.device)[:, None].expand_as(history)  # (B, H)
    scores[rows, history] = float("-inf")  # padding 0 is included here: column 0 drops out too
    scores[:, 0] = float("-inf")
    scores.scatter_(1, targets[:, None], target_scores)
    return scores


def ranks_from_scores(scores: torch.Tensor, target_index: torch.Tensor) -> torch.Tensor:
    """0-based rank of each row's target among that row's finite-or-not candidates, ties pessimistic.

    scores: (B, C) float; target_index: (B,) int64 column of the target in each row.
    rank = #(other candidates with score >= target score). Returns (B,) int64.
    """
    target = scores.gather(1, target_index[:, None])  # (B, 1)
    return count_at_least(scores, target) - 1  # the count includes the target itself once


def count_at_least(scores: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """(B,) int64: per row, how many scores are >= that row's threshold (B, 1).

    On CPU through numpy, whose compare-and-count is about 6x faster than torch's bool sum on a wide matrix
    (0.14 s against 0.95 s at 1,024 x 200k, 2 threads).
    """
    if scores.device.type != "cpu" or scores.requires_grad:
        return (scores >= threshold).sum(dim=1).to(torch.int64)
    counts = np.count_nonzero(scores.numpy() >= threshold.numpy(), axis=1)
    return torch.from_numpy(counts.astype(np.int64))


def full_ranks(
    scores: torch.Tensor, history: torch.Tensor, targets: torch.Tensor, in_place: bool = False
) -> torch.Tensor:
    """Full-ranking protocol: (B, N+1) scores -> (B,) 0-based ranks of `targets` (history excluded).
    `in_place` masks `scores` itself (a scratch buffer) instead of a copy of it."""
    masked = mask_history_(scores if in_place else scores.clone(), history, targets)
    return ranks_from_scores(masked, targets)


def sample_negatives(
    user_ids: np.ndarray, seen: Sequence[np.ndarray], num_items: int, num_negatives: int, seed: int
) -> np.ndarray:
    """Uniform negatives per user, without replacement, never an item the user interacted with.

    user_ids: (B,) int64; seen[b]: the item ids user b ever interacted with (targets included).
    Draws from items 1..num_items; each user's generator is seeded by (seed, user_id), so the
    candidates depend on neither batch order nor the number of workers. Returns (B, num_negatives) int64.
    """
    out = np.empty((len(user_ids), num_negatives), dtype=np.int64)
    for row, (user, items) in enumerate(zip(user_ids, seen, strict=True)):
        rng = np.random.default_rng([seed, int(user)])
        excluded = np.unique(items)
        available = num_items - len(excluded[(excluded >= 1) & (excluded <= num_items)])
        if available < num_negatives:
            raise ValueError(f"user {user}: only {available} unseen items, cannot draw {num_negatives} negatives")
        picked: np.ndarray = np.empty(0, dtype=np.int64)
        while len(picked) < num_negatives:  # rejection sampling: histories are tiny next to the catalog
            draw = rng.integers(1, num_items + 1, size=2 * num_negatives)
            draw = draw[~np.isin(draw, excluded)]
            picked = np.concatenate([picked, draw])
            _, first = np.unique(picked, return_index=True)
            picked = picked[np.sort(first)]
        out[row] = picked[:num_negatives]
    return out


def hit_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    """(U,) ranks -> (U,) float64 HR@k per user."""
    return (np.asarray(ranks) < k).astype(np.float64)


def ndcg_at_k(ranks: np.ndarray, k: int) -> np.ndarray:
    """(U,) ranks -> (U,) float64 NDCG@k per user (one relevant item: 1/log2(rank+2))."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)


def per_user_metrics(ranks: np.ndarray, ks: Iterable[int] = DEFAULT_KS) -> dict[str, np.ndarray]:
    """(U,) ranks -> {"hr_5": (U,), "ndcg_5": (U,), ...} per-user values (for significance tests)."""
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"hr_{k}"] = hit_at_k(ranks, k)
        out[f"ndcg_{k}"] = ndcg_at_k(ranks, k)
    return out


def summarize(ranks: np.ndarray, ks: Iterable[int] = DEFAULT_KS) -> dict[str, float]:
    """(U,) ranks -> {"hr_10": mean, "ndcg_10": mean, ..., "mrr": mean, "users": U}."""
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        raise ValueError("no users to evaluate")
    out = {name: float(values.mean()) for name, values in per_user_metrics(ranks, ks).items()}
    out["mrr"] = float((1.0 / (ranks + 1.0)).mean())
    out["users"] = float(ranks.size)
    return out


def metric_sums(ranks: torch.Tensor, ks: Iterable[int] = DEFAULT_KS) -> torch.Tensor:
    """(B,) ranks -> (2*len(ks) + 1,) float64 sums [hr_k..., ndcg_k..., count] for an all-reduce.

    Data-parallel validation sums these over workers, then `sums_to_metrics` divides.
    """
    ks = list(ks)
    r = ranks.to(torch.float64)
    hits = [(r < k).sum() for k in ks]
    gains = [torch.where(r < k, 1.0 / torch.log2(r + 2.0), torch.zeros_like(r)).sum() for k in ks]
    return torch.stack([*hits, *gains, torch.tensor(float(r.numel()), dtype=torch.float64)])


def sums_to_metrics(sums: torch.Tensor, ks: Iterable[int] = DEFAULT_KS) -> dict[str, float]:
    """Inverse of `metric_sums` after reduction: {"hr_k": ..., "ndcg_k": ..., "users": n}."""
    ks = list(ks)
    count = float(sums[-1])
    if count == 0:
        raise ValueError("no users were evaluated")
    out = {f"hr_{k}": float(sums[i]) / count for i, k in enumerate(ks)}
    out.update({f"ndcg_{k}": float(sums[len(ks) + i]) / count for i, k in enumerate(ks)})
    out["users"] = count
    return out
