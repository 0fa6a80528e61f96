"""GRU4Rec: session-based recommendation with recurrent networks (Hidasi et al., ICLR 2016).

RecBole's variant: embedding dropout, a stacked GRU, a linear layer back to the embedding width;
the state after item t scores item t+1. Our sequences are left-padded, so each row is turned into
a right-padded one and packed: the GRU never steps over padding (its state would drift on biases).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from momorec.models.config import ModelConfig
from momorec.models.losses import Loss
from momorec.models.parts import (
    Dropout,
    SequenceEmbedder,
    init_weights,
    next_item_positions,
    score_all,
    score_candidates,
    serving_batch,
    trim_padding,
)


def shift_rows(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate each row of x (B, T, ...) left by shift[b] (B,) positions: out[b, j] = x[b, (j + shift[b]) % T]."""
    length = x.shape[1]
    index = (torch.arange(length, device=x.device)[None] + shift[:, None]) % length  # (B, T)
    index = index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)


class GRU4Rec(nn.Module):
    """Stacked GRU over item (+ semantic-ID, + motivation) tokens, causal by construction; next-item loss."""

    def __init__(self, cfg: ModelConfig, embedder: SequenceEmbedder, loss: Loss):
        super().__init__()
        self.cfg = cfg
        self.num_items = embedder.num_items
        self.embedder = embedder  # items + semantic-ID levels + the user's motivation token
        self.input_dropout = Dropout(cfg.dropout)
        self.gru = nn.GRU(cfg.hidden_size, cfg.hidden_size, num_layers=cfg.num_layers, batch_first=True)
        self.output = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.loss = loss
        init_weights(self, cfg.init_std)
        for name, weight in self.gru.named_parameters():  # RecBole: xavier for the GRU matrices
            if "weight" in name:
                nn.init.xavier_uniform_(weight)

    def encode(self, tokens: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Left-padded tokens (B, T, d) and their mask (B, T) -> states (B, T, d)."""
        length = tokens.shape[1]
        lengths = valid.sum(dim=1)  # (B,)
        pad = length - lengths  # (B,) leading padding of each row
        right = shift_rows(self.input_dropout(tokens), pad)  # (B, T, d), items first
        packed = pack_padded_sequence(right, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=length)  # (B, T, d), right-padded
        states = shift_rows(self.output(out), (length - pad) % length)  # (B, T, d), back to left padding
        return states * valid.unsqueeze(-1)

    def states(self, items: torch.Tensor, user_id: torch.Tensor) -> torch.Tensor:
        """Left-padded items (B, T) -> one output state per item position (B, T, d)."""
        tokens, valid = self.embedder.tokens(items, user_id)  # (B, T', d), (B, T'); T' = T (+1 prefix)
        hidden = self.encode(tokens, valid)  # (B, T', d)
        return self.embedder.item_states(hidden, items, user_id)  # (B, T, d)

    # ---- training path ---------------------------------------------------------------------------
    def calculate_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Next-item loss at every position of `seq`."""
        inputs, targets, keep = next_item_positions(batch["seq"])  # (B, T) each
        hidden = self.states(inputs, batch["user_id"])  # (B, T, d)
        return self.loss(hidden[keep], targets[keep], self.embedder.table())  # (P, d), (P,), (N+1, d)

    # ---- scoring path ----------------------------------------------------------------------------
    def sequence_vector(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, d): the state after the newest item of `history`."""
        return self.states(trim_padding(batch["history"]), batch["user_id"])[:, -1]

    def full_sort_predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return score_all(self.sequence_vector(batch), self.embedder)  # (B, N+1)

    def predict(self, batch: dict[str, torch.Tensor], candidates: torch.Tensor) -> torch.Tensor:
        return score_candidates(self.sequence_vector(batch), self.embedder, candidates)  # (B, C)

    def forward(self, request: torch.Tensor) -> torch.Tensor:
        """Serving: (B, 1+T) int64 = [user_id, history...] -> (B, N+1) scores."""
        return self.full_sort_predict(serving_batch(request, self.num_items))
