"""Score a model on one split under one protocol and return every user's rank.

The model is only called through `sequence_vector` / `predict` and its item table (the shared interface;
`ItemScorer` for the full protocol), so this code never branches on the backbone. Data-parallel workers
rank their own users and all-reduce the metric sums (`metric_sums`), so one function serves a unit test
and Ray Train.
"""

from __future__ import annotations

import numpy as np
import torch

from momorec.core.item_scores import ItemScorer
from momorec.core.metrics import full_ranks, ranks_from_scores, sample_negatives
from momorec.core.sequences import SequenceData, excluded_items, scoring_batch, seen_items


@torch.no_grad()
def rank_users(
    model,
    data: SequenceData,
    split: str,
    protocol: str,
    max_len: int,
    batch_size: int = 1024,
    num_negatives: int = 100,
    negative_seed: int = 0,
    device: torch.device | str = "cpu",
    scorer: ItemScorer | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(user_ids (U,), ranks (U,) int64) of every user in `data` for `split` ("valid" | "test").

    protocol "full": the target against all items, history excluded; "sampled": the target against
    `num_negatives` unseen items drawn with `negative_seed` (labelled sampled-<n> in metric names).
    `scorer`: an ItemScorer of this model to reuse across calls (a scoring actor keeps one).
    """
    if protocol not in ("full", "sampled"):
        raise ValueError(f"unknown protocol {protocol!r} (full | sampled)")
    was_training = model.training
    model.eval()
    ranks = np.empty(data.num_users, dtype=np.int64)
    if protocol == "full" and scorer is None:
        scorer = ItemScorer(model)
    for start in range(0, data.num_users, batch_size):
        rows = np.arange(start, min(start + batch_size, data.num_users))
        arrays = scoring_batch(data, rows, split, max_len)
        batch = {
            "history": torch.from_numpy(arrays["history"]).to(device),
            "user_id": torch.from_numpy(arrays["user_id"]).to(device),
        }
        targets = torch.from_numpy(arrays["target"]).to(device)
        if protocol == "full":
            scores = scorer.scores(batch["history"], batch["user_id"])  # (b, W >= N+1), a scratch buffer
            history = torch.from_numpy(excluded_items(data, rows, split)).to(device)
            ranks[rows] = full_ranks(scores, history, targets, in_place=True).cpu().numpy()
        else:
            negatives = sample_negatives(
                arrays["user_id"], seen_items(data, rows), data.num_items, num_negatives, negative_seed
            )
            candidates = torch.cat([targets[:, None], torch.from_numpy(negatives).to(device)], dim=1)  # (b, 1+n)
            scores = model.predict(batch, candidates)
            ranks[rows] = ranks_from_scores(scores, torch.zeros_like(targets)).cpu().numpy()
    model.train(was_training)
    return data.user_ids.copy(), ranks


def protocol_label(protocol: str, num_negatives: int) -> str:
    """Metric-name label: "full" or "sampled100"."""
    return "full" if protocol == "full" else f"sampled{num_negatives}"
