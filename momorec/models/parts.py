"""Small parts every backbone is composed of: the sequence embedder, scoring, initialisation.

A backbone file (sasrec.py, gru4rec.py, bert4rec.py) owns only its encoder and its training
objective; what goes into the encoder (item IDs + semantic-ID levels + the user's motivation) and
how a sequence vector becomes scores is the same for all three and lives here.

User motivation IDs (`user_fusion`):
- prefix (default): the user's vector becomes one extra token right before the first item. The
  model then decides per position how much the motivation matters, through attention (or the GRU
  state); the token costs one position and no parameter. Like a [CLS]/persona token.
- final: the vector is added to every position's output state before scoring. Cheaper, and the
  motivation can only shift scores, not change how the history is read.
"""

from __future__ import annotations

import torch
from torch import nn

from momorec.models.config import ModelConfig, SemanticInputConfig
from momorec.models.interface import SemanticInputs
from momorec.models.semantic_id_embedding import SemanticIdEmbedding


class Dropout(nn.Dropout):
    """nn.Dropout with its CPU mask drawn as uniform >= p (the same Bernoulli(1 - p) keep mask, from torch's
    seeded generator): `bernoulli_` draws about 3x slower on CPU, where it cost a quarter of a training step.
    CUDA keeps F.dropout's fused kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu":
            return super().forward(x)
        keep = torch.rand(x.shape, device=x.device, dtype=x.dtype).ge_(self.p).mul_(1.0 / (1.0 - self.p))
        return x * keep


def trim_padding(items: torch.Tensor) -> torch.Tensor:
    """Drop leading columns that are padding in every row: (B, T) -> (B, T'), T' >= 1.

    Exact for our backbones (padding is ignored and positions count from the newest item), and
    it saves most of the work: Beauty sequences average 9 items against a max length of 50.
    """
    nonempty = (items > 0).any(dim=0)  # (T,)
    first = int(nonempty.to(torch.int8).argmax()) if bool(nonempty.any()) else items.shape[1] - 1
    return items[:, first:]


def next_item_positions(seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training sequences (B, T+1) -> (inputs, targets, keep), each (B, T'): every real item predicts the next."""
    seq = trim_padding(seq)  # (B, T'+1), all-padding columns dropped
    inputs, targets = seq[:, :-1], seq[:, 1:]  # (B, T'), (B, T')
    keep = (inputs > 0) & (targets > 0)  # (B, T')
    if not bool(keep.any()):
        raise ValueError("training batch has no target position (every sequence is shorter than 2 items)")
    return inputs, targets, keep


def _semantic_embedding(
    cfg: ModelConfig, section: SemanticInputConfig, inputs: SemanticInputs | None, rows: int | None, seed: int
) -> SemanticIdEmbedding | None:
    if section.mode == "none":
        return None
    if inputs is None:
        raise ValueError(f"semantic mode {section.mode!r} needs semantic IDs, none were given")
    if rows is not None and inputs.codes.shape[0] != rows:
        raise ValueError(f"item semantic codes cover {inputs.codes.shape[0] - 1} items, the model has {rows - 1}")
    return SemanticIdEmbedding(
        inputs.codes, inputs.num_codes, cfg.hidden_size, section.mode, inputs.centroids,
        section.frozen_scale, cfg.init_std, seed,
    )  # fmt: skip


class SequenceEmbedder(nn.Module):
    """Items and the user -> the tokens an encoder reads, and the item table scores are taken against.

    An item's vector is its ID embedding plus the sum of its semantic-ID level vectors; the user's
    motivation vector (the sum of the user's level vectors) enters as a prefix token or is added to
    the output states (`user_fusion`). `extra_tokens` ids after N are reserved (BERT4Rec's [mask]):
    they have an ID embedding and no semantic IDs.
    """

    def __init__(
        self,
        cfg: ModelConfig,
        num_items: int,
        item_semantic: SemanticInputs | None = None,
        user_semantic: SemanticInputs | None = None,
        seed: int = 0,
        extra_tokens: int = 0,
    ):
        super().__init__()
        if num_items < 1:
            raise ValueError("a recommender needs at least one item")
        self.num_items = num_items
        self.extra_tokens = extra_tokens
        self.item_id_embedding = nn.Embedding(num_items + 1 + extra_tokens, cfg.hidden_size, padding_idx=0)
        self.item_semantic = _semantic_embedding(cfg, cfg.item_semantic, item_semantic, num_items + 1, seed)
        self.user_semantic = _semantic_embedding(cfg, cfg.user_semantic, user_semantic, None, seed + 1)
        self.use_prefix = self.user_semantic is not None and cfg.user_fusion == "prefix"

    def items(self, items: torch.Tensor) -> torch.Tensor:
        """items (...) int64 -> (..., d): ID embedding + sum of semantic level embeddings."""
        out = self.item_id_embedding(items)  # (..., d)
        if self.item_semantic is not None:
            semantic_ids = items.clamp(max=self.num_items)  # reserved tokens ([mask]) have no semantic IDs
            out = out + self.item_semantic(semantic_ids) * (items <= self.num_items).unsqueeze(-1)
        return out

    def table(self) -> torch.Tensor:
        """Output embeddings of all items: (N+1, d), row 0 = padding."""
        return self.items(torch.arange(self.num_items + 1, device=self.item_id_embedding.weight.device))

    def tokens(self, items: torch.Tensor, user_id: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded items (B, T) -> (tokens (B, T', d), valid (B, T') bool), T' = T (+1 with a user prefix).

        With a prefix, the user token goes right before the first item (so the sequence stays
        contiguous for a GRU); every item keeps its offset from the end.
        """
        tokens = self.items(items)  # (B, T, d)
        valid = items > 0  # (B, T)
        if not self.use_prefix:
            return tokens, valid
        batch, length, _ = tokens.shape
        tokens = torch.cat([tokens.new_zeros(batch, 1, tokens.shape[-1]), tokens], dim=1)  # (B, T+1, d)
        valid = torch.cat([valid.new_zeros(batch, 1), valid], dim=1)  # (B, T+1)
        slot = length - valid.sum(dim=1)  # (B,) column just before the first item
        rows = torch.arange(batch, device=items.device)
        tokens = tokens.index_put((rows, slot), self.user_semantic(user_id))
        valid = valid.index_put((rows, slot), torch.ones_like(slot, dtype=torch.bool))
        return tokens, valid

    def item_states(self, hidden: torch.Tensor, items: torch.Tensor, user_id: torch.Tensor) -> torch.Tensor:
        """Encoder output (B, T', d) for `tokens(items, user_id)` -> one state per item position (B, T, d)."""
        if self.use_prefix:
            hidden = hidden[:, 1:]  # (B, T, d): drop the column the prefix shifted in
        elif self.user_semantic is not None:
            hidden = hidden + self.user_semantic(user_id).unsqueeze(1)  # final fusion, (B, T, d)
        return hidden * (items > 0).unsqueeze(-1)  # padding (and the prefix's own state) -> 0


def init_weights(model: nn.Module, init_std: float) -> None:
    """Normal(0, init_std) for linear and item-ID embedding weights, zero biases (RecBole's init)."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=init_std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    ids = model.embedder.item_id_embedding
    nn.init.normal_(ids.weight, std=init_std)
    with torch.no_grad():
        ids.weight[0].zero_()


# ---- scoring: a user's sequence vector (B, d) against the item table ----------------------------


def score_all(vector: torch.Tensor, embedder: SequenceEmbedder) -> torch.Tensor:
    """(B, d) -> scores of every item (B, N+1); column 0 is padding (the evaluator excludes it)."""
    return vector @ embedder.table().T


def score_candidates(vector: torch.Tensor, embedder: SequenceEmbedder, candidates: torch.Tensor) -> torch.Tensor:
    """(B, d) and candidates (B, C) int64 -> (B, C)."""
    return torch.einsum("bd,bcd->bc", vector, embedder.items(candidates))


def serving_batch(request: torch.Tensor, num_items: int) -> dict[str, torch.Tensor]:
    """The serving signature's (B, 1+T) int64 = [user_id, history...] as a scoring batch."""
    history = request[:, 1:]  # (B, T)
    if history.numel() and (history.max() > num_items or history.min() < 0):
        raise ValueError(f"item ids must lie in 0..{num_items}")
    return {"user_id": request[:, 0], "history": history}
