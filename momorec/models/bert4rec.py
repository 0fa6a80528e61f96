"""BERT4Rec: sequential recommendation with a bidirectional Transformer (Sun et al., CIKM 2019).

Cloze training: a share `mask_prob` of a sequence's items is replaced by the [mask] token (id N+1)
and predicted from both sides (at least one item per sequence is masked). Scoring appends [mask]
after the history and reads its state. Output head as in the paper: dense + GELU + LayerNorm, then
the dot product with the (tied) item table.
"""

from __future__ import annotations

import torch
from torch import nn

from momorec.models.config import ModelConfig
from momorec.models.losses import Loss
from momorec.models.parts import (
    SequenceEmbedder,
    init_weights,
    score_all,
    score_candidates,
    serving_batch,
    trim_padding,
)
from momorec.models.transformer import TransformerEncoder

EXTRA_TOKENS = 1  # [mask] = N + 1: the embedder reserves one id after the items


class BERT4Rec(nn.Module):
    """Bidirectional self-attention over item (+ semantic-ID, + motivation) tokens; masked-item loss."""

    def __init__(self, cfg: ModelConfig, embedder: SequenceEmbedder, loss: Loss):
        super().__init__()
        if embedder.extra_tokens != EXTRA_TOKENS:
            raise ValueError("BERT4Rec needs an embedder with one extra token ([mask])")
        self.cfg = cfg
        self.num_items = embedder.num_items
        self.mask_token = embedder.num_items + 1
        self.embedder = embedder  # items + semantic-ID levels + the user's motivation token; + [mask]
        self.encoder = TransformerEncoder(cfg, causal=False)
        self.head = nn.Sequential(
            nn.Linear(cfg.hidden_size, cfg.hidden_size), nn.GELU(), nn.LayerNorm(cfg.hidden_size, eps=1e-12)
        )
        self.loss = loss
        init_weights(self, cfg.init_std)
        self.encoder.reset_positions(cfg.init_std)

    def states(self, items: torch.Tensor, user_id: torch.Tensor) -> torch.Tensor:
        """Left-padded items and [mask]s (B, T) -> one output state per position (B, T, d)."""
        tokens, valid = self.embedder.tokens(items, user_id)  # (B, T', d), (B, T'); T' = T (+1 prefix)
        hidden = self.head(self.encoder(tokens, valid)) * valid.unsqueeze(-1)  # (B, T', d)
        return self.embedder.item_states(hidden, items, user_id)  # (B, T, d)

    # ---- training path ---------------------------------------------------------------------------
    def calculate_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Masked-item loss: predict each masked item from both sides."""
        items = trim_padding(batch["seq"][:, 1:])  # (B, T): the newest T items of the training sequence
        real = items > 0  # (B, T)
        masked = (torch.rand(items.shape, device=items.device) < self.cfg.mask_prob) & real  # (B, T)
        # a sequence with nothing masked teaches nothing: mask its newest item (as at scoring time)
        none = ~masked.any(dim=1) & real[:, -1]
        masked[none, -1] = True
        inputs = torch.where(masked, torch.full_like(items, self.mask_token), items)  # (B, T)
        hidden = self.states(inputs, batch["user_id"])  # (B, T, d)
        return self.loss(hidden[masked], items[masked], self.embedder.table())  # (P, d), (P,), (N+1, d)

    # ---- scoring path ----------------------------------------------------------------------------
    def sequence_vector(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, d): the state of a [mask] appended after `history` (a full window's oldest item makes room).

        Only a row already at max_len drops an item: dropping the trimmed batch's first column instead would make a
        user's vector depend on the longest history it happens to be batched with."""
        history = trim_padding(batch["history"])  # (B, T)
        mask_column = torch.full_like(history[:, :1], self.mask_token)  # (B, 1)
        inputs = torch.cat([history, mask_column], dim=1)[:, -self.cfg.max_len :]  # (B, min(T+1, max_len))
        return self.states(inputs, batch["user_id"])[:, -1]  # (B, d)

    def full_sort_predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return score_all(self.sequence_vector(batch), self.embedder)  # (B, N+1)

    def predict(self, batch: dict[str, torch.Tensor], candidates: torch.Tensor) -> torch.Tensor:
        return score_candidates(self.sequence_vector(batch), self.embedder, candidates)  # (B, C)

    def forward(self, request: torch.Tensor) -> torch.Tensor:
        """Serving: (B, 1+T) int64 = [user_id, history...] -> (B, N+1) scores."""
        return self.full_sort_predict(serving_batch(request, self.num_items))
