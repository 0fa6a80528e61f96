"""Top-K items for a batch of users from their item histories: what serving computes.

Pure torch/numpy, shared by the recommend stage (every user of the tables) and the MLflow model
(`momorec.core.logged_model`: whatever histories a caller sends).
"""

from __future__ import annotations

import numpy as np
import torch

from momorec.core.sequences import windows


def padded_histories(histories: list[np.ndarray], width: int, num_items: int) -> np.ndarray:
    """(B, width) int64: each history's newest `width` items, left-padded with 0.

    Items the model never saw (ids above `num_items`: the catalog grew since it was trained) are
    blanked to padding, so an older model still serves.
    """
    items, starts, counts = _flat(histories)
    out = windows(items, starts, counts, width)
    out[out > num_items] = 0
    return out


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
    catalog = model.num_items if catalog_size is None else catalog_size
    history = padded_histories(histories, model.cfg.max_len, model.num_items)
    users = np.asarray(user_ids, dtype=np.int64).copy()
    user_semantic = getattr(getattr(model, "embedder", model), "user_semantic", None)
    if user_semantic is not None:
        users[(users >= user_semantic.codes.shape[0]) | (users < 0)] = 0
    batch = {"user_id": torch.from_numpy(users), "history": torch.from_numpy(history)}
    with torch.no_grad():
        logits = model.full_sort_predict(batch)  # (B, N_model+1)
    if logits.shape[1] < catalog + 1:
        logits = torch.nn.functional.pad(logits, (0, catalog + 1 - logits.shape[1]), value=-torch.inf)
    logits = logits[:, : catalog + 1]
    logits[:, 0] = -torch.inf
    if exclude_seen:
        items, starts, counts = _flat(histories)
        seen = windows(items, starts, counts, max(int(counts.max()) if counts.size else 0, 1), left=False)
        seen[(seen < 0) | (seen > catalog)] = 0  # column 0 is padding: already -inf
        rows = np.broadcast_to(np.arange(len(histories))[:, None], seen.shape)
        logits[torch.from_numpy(rows.copy()), torch.from_numpy(seen)] = -torch.inf
    best = torch.topk(logits, min(k, catalog), dim=1)
    return best.indices.numpy().astype(np.int64), best.values.numpy().astype(np.float32)
