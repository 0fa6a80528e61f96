"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018).

A causal Transformer over the item sequence; the state at position t scores item t+1. Trained at
every position at once (each prefix of a sequence is one example, as in the paper), which sees the
same (prefix, next item) pairs as RecBole's prefix augmentation in one pass.
"""

from __future__ import annotations

import torch
from torch import nn

from momorec.models.config import ModelConfig
from momorec.models.losses import Loss
from momorec.models.parts import (
    SequenceEmbedder,
    init_weights,
    next_item_positions,
    score_all,
    score_candidates,
    serving_batch,
    trim_padding,
)
from momorec.models.transformer import TransformerEncoder


class SASRec(nn.Module):
    """Causal self-attention over item (+ semantic-ID, + motivation) tokens; next-item loss."""

    def __init__(self, cfg: ModelConfig, embedder: SequenceEmbedder, loss: Loss):
        super().__init__()
        self.cfg = cfg
        self.num_items = embedder.num_items
        self.embedder = embedder  # items + semantic-ID levels + the user's motivation token
        self.encoder = TransformerEncoder(cfg, causal=True)
        self.loss = loss
        init_weights(self, cfg.init_std)
        self.encoder.reset_positions(cfg.init_std)

    def states(self, items: torch.Tensor, user_id: torch.Tensor) -> torch.Tensor:
        """Left-padded items (B, T) -> one output state per item position (B, T, d)."""
        tokens, valid = self.embedder.tokens(items, user_id)  # (B, T', d), (B, T'); T' = T (+1 prefix)
        hidden = self.encoder(tokens, valid)  # (B, T', d)
        return self.embedder.item_states(hidden, items, user_id)  # (B, T, d)

    # ---- training path ---------------------------------------------------------------------------
    def calculate_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Next-item loss at every position of `seq`."""
        inputs, targets, keep = next_item_positions(batch["seq"])  # (B, T) each
        hidden = self.states(inputs, batch["user_id"])  # (B, T, d)
        return self.loss(hidden[keep], targets[keep], self.embedder.table())  # (P, d), (P,), (N+1, d)

    # ---- scoring path ----------------------------------------------------------------------------
    def sequence_vector(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, d): the state at the newest position of `history`."""
        return self.states(trim_padding(batch["history"]), batch["user_id"])[:, -1]

    def full_sort_predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return score_all(self.sequence_vector(batch), self.embedder)  # (B, N+1)

    def predict(self, batch: dict[str, torch.Tensor], candidates: torch.Tensor) -> torch.Tensor:
        return score_candidates(self.sequence_vector(batch), self.embedder, candidates)  # (B, C)

    def forward(self, request: torch.Tensor) -> torch.Tensor:
        """Serving: (B, 1+T) int64 = [user_id, history...] -> (B, N+1) scores."""
        return self.full_sort_predict(serving_batch(request, self.num_items))
