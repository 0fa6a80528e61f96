"""The Transformer encoder SASRec (causal) and BERT4Rec (bidirectional) share.

Layout as in RecBole 1.2.1: token + learned position embedding, LayerNorm, dropout, then post-LN
blocks with GELU. Positions count back from the newest token, so the newest item always has the
same position whatever the sequence's length.
"""

from __future__ import annotations

import torch
from torch import nn

from momorec.models.config import ModelConfig


def attention_mask(valid: torch.Tensor, causal: bool, num_heads: int) -> torch.Tensor:
    """Boolean mask (B * heads, T, T), True = blocked, for nn.TransformerEncoder.

    Query i may see key j when j is a real token (and j <= i if causal). A padding query sees only
    itself, so no row is fully blocked (that would give NaN states that leak through later layers).
    """
    length = valid.shape[1]
    eye = torch.eye(length, dtype=torch.bool, device=valid.device)  # (T, T)
    allowed = valid[:, None, :] | eye  # (B, T, T): real keys, plus self
    if causal:
        allowed = allowed & torch.ones(length, length, dtype=torch.bool, device=valid.device).tril()
    return (~allowed).repeat_interleave(num_heads, dim=0)  # (B*h, T, T)


class TransformerEncoder(nn.Module):
    """Embedded left-padded tokens (B, T, d) and their mask (B, T) -> hidden states (B, T, d)."""

    def __init__(self, cfg: ModelConfig, causal: bool):
        super().__init__()
        if cfg.hidden_size % cfg.num_heads:
            raise ValueError(f"hidden_size {cfg.hidden_size} is not divisible by num_heads {cfg.num_heads}")
        self.causal = causal
        self.num_heads = cfg.num_heads
        self.position_embedding = nn.Embedding(cfg.max_len + 1, cfg.hidden_size)  # +1: the user prefix
        self.input_norm = nn.LayerNorm(cfg.hidden_size, eps=1e-12)
        self.input_dropout = nn.Dropout(cfg.dropout)
        block = nn.TransformerEncoderLayer(
            d_model=cfg.hidden_size,
            nhead=cfg.num_heads,
            dim_feedforward=cfg.inner_size,
            dropout=cfg.dropout,
            activation="gelu",
            layer_norm_eps=1e-12,
            batch_first=True,
        )
        self.blocks = nn.TransformerEncoder(block, cfg.num_layers, enable_nested_tensor=False)

    def reset_positions(self, init_std: float) -> None:
        nn.init.normal_(self.position_embedding.weight, std=init_std)

    def forward(self, tokens: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]  # tokens: (B, T, d)
        positions = torch.arange(length, device=tokens.device) + (self.position_embedding.num_embeddings - length)
        x = tokens + self.position_embedding(positions)[None]  # (B, T, d)
        x = self.input_dropout(self.input_norm(x))
        mask = attention_mask(valid, self.causal, self.num_heads)  # (B*h, T, T)
        x = self.blocks(x, mask=mask)  # (B, T, d)
        return x * valid.unsqueeze(-1)  # padding states are 0, never scored
