"""BERT4Rec: sequential recommendation with a bidirectional Transformer (Sun et al., CIKM 2019).

Cloze training: a share `mask_prob` of a sequence's items is replaced by the [mask] token (id N+1)
and predicted from both sides (at least one item per sequence is masked). Scoring appends [mask]
after the history and reads its state. Output head as in the paper: dense + GELU + LayerNorm, then
the dot product with the (tied) item table.
"""

from __future__ import annotations

import torch
from torch import nn

from momorec.models.base import SemanticInputs, trim_padding
from momorec.models.config import ModelConfig
from momorec.models.sasrec import TransformerBackbone


class BERT4Rec(TransformerBackbone):
    """Bidirectional attention, masked-item loss."""

    causal = False
    extra_tokens = 1  # [mask] = N + 1

    def __init__(
        self,
        cfg: ModelConfig,
        num_items: int,
        item_semantic: SemanticInputs | None = None,
        user_semantic: SemanticInputs | None = None,
        seed: int = 0,
    ):
        super().__init__(cfg, num_items, item_semantic, user_semantic, seed)
        self.mask_token = num_items + 1
        self.head = nn.Sequential(
            nn.Linear(cfg.hidden_size, cfg.hidden_size), nn.GELU(), nn.LayerNorm(cfg.hidden_size, eps=1e-12)
        )
        self.init_weights()

    def encode(self, tokens: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return self.head(super().encode(tokens, valid)) * valid.unsqueeze(-1)  # (B, T, d)

    def calculate_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        items = trim_padding(batch["seq"][:, 1:])  # (B, T): the newest T items of the training sequence
        real = items > 0  # (B, T)
        masked = (torch.rand(items.shape, device=items.device) < self.cfg.mask_prob) & real  # (B, T)
        # a sequence with nothing masked teaches nothing: mask its newest item (as at scoring time)
        none = ~masked.any(dim=1) & real[:, -1]
        masked[none, -1] = True
        inputs = torch.where(masked, torch.full_like(items, self.mask_token), items)  # (B, T)
        hidden = self.states(inputs, batch["user_id"])  # (B, T, d)
        return self.loss_at(hidden[masked], items[masked])

    def sequence_vector(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        history = trim_padding(batch["history"])  # (B, T)
        mask_column = torch.full_like(history[:, :1], self.mask_token)
        inputs = torch.cat([history[:, 1:], mask_column], dim=1)  # (B, T): oldest dropped, [mask] last
        return self.states(inputs, batch["user_id"])[:, -1]  # (B, d)
