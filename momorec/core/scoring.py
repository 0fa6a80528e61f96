"""Top-K items for a batch of users from their item histories: what serving computes.

Pure torch/numpy, shared by the recommend stage (every user of the tables) and the MLflow model
(`momorec.core.logged_model`: whatever histories a caller sends).
"""

from __future__ import annotations

import numpy as np
import torch


def padded_histories(histories: list[np.ndarray], width: int, num_items: int) -> np.ndarray:
    """(B, width) int64: each history's newest `width` items, left-padded with 0.

    Items the model never saw (ids above `num_items`: the catalog grew since it was trained) are
    blanked to padding, so an older model still serves.
    """
    out = np.zeros((len(histories), width), dtype=np.int64)
    for row, items in enumerate(histories):
        chunk = np.asarray(items, dtype=np.int64)[-width:]
        out[row, width - chunk.size :] = chunk
    out[out > num_items] = 0
    return out


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
        for row, items in enumerate(histories):
            seen = torch.as_tensor(np.asarray(items, dtype=np.int64))
            logits[row, seen[(seen > 0) & (seen <= catalog)]] = -torch.inf
    best = torch.topk(logits, min(k, catalog), dim=1)
    return best.indices.numpy().astype(np.int64), best.values.numpy().astype(np.float32)
