"""GRU4Rec: session-based recommendation with recurrent networks (Hidasi et al., ICLR 2016).

RecBole's variant: embedding dropout, a stacked GRU, a linear layer back to the embedding width;
the state after item t scores item t+1. Our sequences are left-padded, so each row is turned into
a right-padded one and packed: the GRU never steps over padding (its state would drift on biases).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from momorec.models.base import SemanticInputs, SequentialRecommender
from momorec.models.config import ModelConfig


def shift_rows(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate each row of x (B, T, ...) left by shift[b] (B,) positions: out[b, j] = x[b, (j + shift[b]) % T]."""
    length = x.shape[1]
    index = (torch.arange(length, device=x.device)[None] + shift[:, None]) % length  # (B, T)
    index = index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)


class GRU4Rec(SequentialRecommender):
    """Stacked GRU over the item sequence (causal by construction)."""

    def __init__(
        self,
        cfg: ModelConfig,
        num_items: int,
        item_semantic: SemanticInputs | None = None,
        user_semantic: SemanticInputs | None = None,
        seed: int = 0,
    ):
        super().__init__(cfg, num_items, item_semantic, user_semantic, seed)
        self.input_dropout = nn.Dropout(cfg.dropout)
        self.gru = nn.GRU(cfg.hidden_size, cfg.hidden_size, num_layers=cfg.num_layers, batch_first=True)
        self.output = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.init_weights()
        for name, weight in self.gru.named_parameters():  # RecBole: xavier for the GRU matrices
            if "weight" in name:
                nn.init.xavier_uniform_(weight)

    def encode(self, tokens: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        batch, length, _ = tokens.shape  # (B, T, d)
        lengths = valid.sum(dim=1)  # (B,)
        pad = length - lengths  # (B,) leading padding of each row
        right = shift_rows(self.input_dropout(tokens), pad)  # (B, T, d), items first
        packed = pack_padded_sequence(right, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=length)  # (B, T, d), right-padded
        states = shift_rows(self.output(out), (length - pad) % length)  # (B, T, d), back to left padding
        return states * valid.unsqueeze(-1)
