"""Training losses of P output states (P, d) against their target items (P,), scored on the item table.

A backbone decides which positions are trained (every next item for SASRec and GRU4Rec, the masked
items for BERT4Rec) and passes those states here; the loss is chosen by `ModelConfig.loss`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from momorec.models.config import ModelConfig

Loss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _check(targets: torch.Tensor) -> None:
    if targets.numel() == 0:
        raise ValueError("training batch has no target position (every sequence is shorter than 2 items)")


def full_softmax_ce(hidden: torch.Tensor, targets: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over all N items (RecBole's SASRec setting); padding is never a class."""
    _check(targets)
    logits = hidden @ table.T  # (P, N+1)
    logits[:, 0] = float("-inf")
    return F.cross_entropy(logits, targets)


def sampled_bce(num_negatives: int) -> Loss:
    """Binary CE of each target against `num_negatives` uniform negatives (the original SASRec)."""

    def loss(hidden: torch.Tensor, targets: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        _check(targets)
        negatives = torch.randint(1, table.shape[0], (targets.numel(), num_negatives), device=targets.device)
        pos = (hidden * table[targets]).sum(-1)  # (P,)
        neg = torch.einsum("pd,pnd->pn", hidden, table[negatives])  # (P, n)
        positive = F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos))
        return positive + F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg)) * num_negatives

    return loss


def build_loss(cfg: ModelConfig) -> Loss:
    return full_softmax_ce if cfg.loss == "ce" else sampled_bce(cfg.num_negatives)
