"""The Transformer encoder SASRec (causal) and BERT4Rec (bidirectional) share.

Layout as in RecBole 1.2.1: token + learned position embedding, LayerNorm, dropout, then post-LN
blocks with GELU. Positions count back from the newest token, so the newest item always has the
same position whatever the sequence's length.

The blocks are `nn.TransformerEncoderLayer`'s math written out (`EncoderBlock`, the same parameter names,
so checkpoints of either load into the other), for two reasons, both CPU training cost: its dropouts draw
their masks with `bernoulli_`, which cost a quarter of a CPU training step (`parts.Dropout` draws them at a
third of that); and its attention writes the whole (B, h, T, T) scores, probabilities and dropout mask to
memory and reads them back, which at 200 positions was most of a step (`attention.masked_attention` works
on a few sequences at a time).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from momorec.models.attention import masked_attention
from momorec.models.config import ModelConfig
from momorec.models.parts import Dropout


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


class EncoderBlock(nn.Module):
    """One post-LN block: x = LN(x + Drop(Attn(x))); x = LN(x + Drop(W2 Drop(GELU(W1 x)))), attention
    probabilities dropped too, as nn.TransformerEncoderLayer(norm_first=False, activation="gelu")."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.hidden_size
        # created in nn.TransformerEncoderLayer's order, so a seed initialises them as before
        self.self_attn = nn.MultiheadAttention(d, cfg.num_heads, batch_first=True)  # holds in_proj, out_proj
        self.linear1 = nn.Linear(d, cfg.inner_size)
        self.dropout = Dropout(cfg.dropout)
        self.linear2 = nn.Linear(cfg.inner_size, d)
        self.norm1 = nn.LayerNorm(d, eps=1e-12)
        self.norm2 = nn.LayerNorm(d, eps=1e-12)
        self.dropout1 = Dropout(cfg.dropout)
        self.dropout2 = Dropout(cfg.dropout)
        self.attention_dropout = Dropout(cfg.dropout)
        self.num_heads = cfg.num_heads

    def forward(self, x: torch.Tensor, blocked: torch.Tensor) -> torch.Tensor:
        batch, length, d = x.shape  # x: (B, T, d); blocked: (B*h, T, T), True = may not attend
        heads, width = self.num_heads, d // self.num_heads
        qkv = F.linear(x, self.self_attn.in_proj_weight, self.self_attn.in_proj_bias)  # (B, T, 3d)
        q, k, v = qkv.view(batch, length, 3, heads, width).permute(2, 0, 3, 1, 4)  # each (B, h, T, d/h)
        blocked = blocked.view(batch, heads, length, length)
        if x.device.type != "cpu":  # the fused kernel, with its own dropout
            drop = self.attention_dropout.p if self.training else 0.0
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=~blocked, dropout_p=drop)
        else:  # the (B, h, T, T) scores a few sequences at a time, in cache (attention.py)
            attended = masked_attention(q, k, v, blocked, self.attention_dropout.p, self.training)  # (B, h, T, w)
        attended = self.self_attn.out_proj(attended.transpose(1, 2).reshape(batch, length, d))
        x = self.norm1(x + self.dropout1(attended))
        inner = self.dropout(F.gelu(self.linear1(x)))
        return self.norm2(x + self.dropout2(self.linear2(inner)))


class EncoderBlocks(nn.Module):
    """`num_layers` copies of one block (nn.TransformerEncoder's layout: `layers.<i>.`, deep copies)."""

    def __init__(self, block: EncoderBlock, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(block) for _ in range(num_layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, mask)
        return x


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
        self.input_dropout = Dropout(cfg.dropout)
        self.blocks = EncoderBlocks(EncoderBlock(cfg), cfg.num_layers)

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
