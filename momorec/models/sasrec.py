"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018).

A causal Transformer over the item sequence; the state at position t scores item t+1. Layout as in
RecBole 1.2.1: item + learned position embedding, LayerNorm, dropout, then post-LN blocks with GELU.
Trained at every position at once (each prefix of a sequence is one example, as in the paper),
which sees the same (prefix, next item) pairs as RecBole's prefix augmentation in one pass.
"""

from __future__ import annotations

import torch
from torch import nn

from momorec.models.base import SemanticInputs, SequentialRecommender
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


class TransformerBackbone(SequentialRecommender):
    """Shared by SASRec (causal) and BERT4Rec (bidirectional): positions + Transformer blocks."""

    causal: bool = True

    def __init__(
        self,
        cfg: ModelConfig,
        num_items: int,
        item_semantic: SemanticInputs | None = None,
        user_semantic: SemanticInputs | None = None,
        seed: int = 0,
    ):
        super().__init__(cfg, num_items, item_semantic, user_semantic, seed)
        if cfg.hidden_size % cfg.num_heads:
            raise ValueError(f"hidden_size {cfg.hidden_size} is not divisible by num_heads {cfg.num_heads}")
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
        self.init_weights()
        nn.init.normal_(self.position_embedding.weight, std=cfg.init_std)

    def encode(self, tokens: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        batch, length, _ = tokens.shape  # (B, T, d)
        # positions count back from the last column, so the newest item always has the same one
        positions = torch.arange(length, device=tokens.device) + (self.position_embedding.num_embeddings - length)
        x = tokens + self.position_embedding(positions)[None]  # (B, T, d)
        x = self.input_dropout(self.input_norm(x))
        mask = attention_mask(valid, self.causal, self.cfg.num_heads)  # (B*h, T, T)
        x = self.blocks(x, mask=mask)  # (B, T, d)
        return x * valid.unsqueeze(-1)  # padding states are 0, never scored


class SASRec(TransformerBackbone):
    """Causal self-attention; next-item loss at every position (see base.calculate_loss)."""

    causal = True
