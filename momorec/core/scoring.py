"""Top-K items for a batch of users from their item histories: what serving computes.

Pure torch/numpy, shared by the recommend stage (every user of the tables) and the MLflow model
(`momorec.core.logged_model`: whatever histories a caller sends).
"""

from __future__ import annotations

import numpy as np
import torch

from momorec.core.item_scores import ItemScorer, best_k
from momorec.core.sequences import windows


def _flat(histories: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """B histories as (all items, start of each, length of each)."""
    counts = np.array([len(h) for h in histories], dtype=np.int64)
    items = (
        np.concatenate([np.asarray(h, dtype=np.int64) for h in histories]) if counts.sum() else np.zeros(0, np.int64)
    )
    return items, np.cumsum(counts) - counts, counts


def top_k(
    model,
    user_ids: np.ndarray,
    histories: list[np.ndarray],
    k: int,
    exclude_seen: bool = True,
    catalog_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(items (B, k) int64, scores (B, k) float32), best first, for one batch of users.

    user_ids: (B,) int64; histories: B arrays of item ids, oldest first (the whole history: the
    model reads its newest max_len items, `exclude_seen` drops every one of them from the ranking).
    catalog_size: items in today's catalog (default: the model's); items the model does not know
    are never recommended, and users beyond the model's user codes get the reserved code 0.
    Padding (id 0) never appears; k is capped at the catalog size.
    """
    items, starts, counts = _flat(histories)
    return top_k_flat(ItemScorer(model), user_ids, items, starts, counts, k, exclude_seen, catalog_size)


def top_k_flat(
    scorer: ItemScorer,
    user_ids: np.ndarray,
    items: np.ndarray,
    starts: np.ndarray,
    counts: np.ndarray,
    k: int,
    exclude_seen: bool = True,
    catalog_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`top_k` for histories given flat (user r's items are items[starts[r] : starts[r] + counts[r]]), scored by
    a reused `scorer`: what a scoring actor runs per batch, with no loop over users."""
    model = scorer.model
    catalog = model.num_items if catalog_size is None else catalog_size
    history = windows(items, starts, counts, model.cfg.max_len)
    history[history > model.num_items] = 0  # items the model never saw (the catalog grew since): padding
    users = np.asarray(user_ids, dtype=np.int64).copy()
    user_semantic = getattr(getattr(model, "embedder", model), "user_semantic", None)
    if user_semantic is not None:
        users[(users >= user_semantic.codes.shape[0]) | (users < 0)] = 0
    logits = scorer.scores(torch.from_numpy(history), torch.from_numpy(users))  # (B, W), -inf beyond N_model
    if catalog + 1 < scorer.num_columns:
        logits[:, catalog + 1 :] = -torch.inf  # items today's catalog no longer holds
    if exclude_seen:
        seen = windows(items, starts, counts, max(int(counts.max()) if counts.size else 0, 1), left=False)
        seen[(seen < 0) | (seen > min(catalog, model.num_items))] = 0  # column 0 is padding: already -inf
        rows = np.broadcast_to(np.arange(len(users))[:, None], seen.shape)
        logits[torch.from_numpy(rows.copy()), torch.from_numpy(seen)] = -torch.inf
    best_items, best_scores = best_k(logits, min(k, catalog))
    return best_items.numpy().astype(np.int64), best_scores.numpy().astype(np.float32)
