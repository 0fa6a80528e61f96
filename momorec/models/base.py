"""The one interface every backbone implements, and what they share.

The trainer and the evaluator only call
    calculate_loss(batch) -> scalar loss           (training path)
    full_sort_predict(batch) -> (B, N+1) scores     (scoring path; column 0 = padding)
    predict(batch, candidates (B, C)) -> (B, C)     (scoring path, e.g. sampled-100)
so they never branch on the model type (RecBole's interface). A backbone implements only
`encode(tokens, valid) -> states` on embedded, left-padded sequences.

Batches are dicts of tensors:
    "seq":     (B, T+1) int64, a training sequence, left-padded with 0, oldest first (T = max_len)
    "history": (B, T)   int64, the items before the target, left-padded with 0
    "user_id": (B,)     int64
Items are 1..N; 0 is padding. The output item table is the input table (weight tying, as SASRec),
so semantic IDs shape the scores as well as the inputs.

User motivation IDs (`user_fusion`):
- prefix (default): the user's vector becomes one extra token right before the first item. The
  model then decides per position how much the motivation matters, through attention (or the GRU
  state); the token costs one position and no parameter. Like a [CLS]/persona token.
- final: the vector is added to every position's output state before scoring. Cheaper, and the
  motivation can only shift scores, not change how the history is read.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from momorec.models.config import ModelConfig
from momorec.models.semantic_id_embedding import SemanticIdEmbedding


def trim_padding(items: torch.Tensor) -> torch.Tensor:
    """Drop leading columns that are padding in every row: (B, T) -> (B, T'), T' >= 1.

    Exact for our backbones (padding is ignored and positions count from the newest item), and
    it saves most of the work: Beauty sequences average 9 items against a max length of 50.
    """
    nonempty = (items > 0).any(dim=0)  # (T,)
    first = int(nonempty.to(torch.int8).argmax()) if bool(nonempty.any()) else items.shape[1] - 1
    return items[:, first:]


@dataclass
class SemanticInputs:
    """Semantic IDs of one entity type, ready for a model.

    codes: (E+1, L) int64 shifted codes (0 reserved); num_codes: K; centroids: (L, K, d) float32
    codebook (needed by the frozen mode only); version: the codebook version, for the record.
    """

    codes: torch.Tensor
    num_codes: int
    centroids: torch.Tensor | None = None
    version: str | None = None

    def save_npz(self, path: str) -> None:
        """A portable snapshot, beside SequenceData.save_npz (for a machine without the Delta tables)."""
        extra = {} if self.centroids is None else {"centroids": self.centroids.numpy()}
        np.savez_compressed(
            path, codes=self.codes.numpy(), num_codes=self.num_codes, version=str(self.version), **extra
        )

    @classmethod
    def load_npz(cls, path: str) -> SemanticInputs:
        with np.load(path) as npz:
            centroids = torch.from_numpy(npz["centroids"]) if "centroids" in npz.files else None
            return cls(torch.from_numpy(npz["codes"]), int(npz["num_codes"]), centroids, str(npz["version"]))


class SequentialRecommender(nn.Module, ABC):
    """Base of SASRec, GRU4Rec and BERT4Rec: embeddings, losses, scoring."""

    extra_tokens: int = 0  # ids after N the model reserves (BERT4Rec's [mask])

    def __init__(
        self,
        cfg: ModelConfig,
        num_items: int,
        item_semantic: SemanticInputs | None = None,
        user_semantic: SemanticInputs | None = None,
        seed: int = 0,
    ):
        super().__init__()
        if num_items < 1:
            raise ValueError("a recommender needs at least one item")
        self.cfg = cfg
        self.num_items = num_items
        d = cfg.hidden_size
        self.item_id_embedding = nn.Embedding(num_items + 1 + self.extra_tokens, d, padding_idx=0)
        self.item_semantic = self._semantic(cfg.item_semantic, item_semantic, num_items, seed)
        self.user_semantic = self._semantic(cfg.user_semantic, user_semantic, None, seed + 1)
        self.use_prefix = self.user_semantic is not None and cfg.user_fusion == "prefix"

    def _semantic(self, section, inputs: SemanticInputs | None, num_entities: int | None, seed: int):
        if section.mode == "none":
            return None
        if inputs is None:
            raise ValueError(f"semantic mode {section.mode!r} needs semantic IDs, none were given")
        if num_entities is not None and inputs.codes.shape[0] != num_entities + 1:
            raise ValueError(
                f"item semantic codes cover {inputs.codes.shape[0] - 1} items, the model has {num_entities}"
            )
        return SemanticIdEmbedding(
            inputs.codes,
            inputs.num_codes,
            self.cfg.hidden_size,
            section.mode,
            inputs.centroids,
            section.frozen_scale,
            self.cfg.init_std,
            seed,
        )

    def init_weights(self) -> None:
        """Normal(0, init_std) for linear and ID-embedding weights, zero biases (RecBole's init)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=self.cfg.init_std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.normal_(self.item_id_embedding.weight, std=self.cfg.init_std)
        with torch.no_grad():
            self.item_id_embedding.weight[0].zero_()

    # ---- embeddings --------------------------------------------------------------------------
    def item_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """items (...) int64 -> (...) x d: ID embedding + sum of semantic level embeddings."""
        out = self.item_id_embedding(items)
        if self.item_semantic is not None:
            semantic_ids = items.clamp(max=self.num_items)  # reserved tokens (mask) have no semantic IDs
            out = out + self.item_semantic(semantic_ids) * (items <= self.num_items).unsqueeze(-1)
        return out

    def item_table(self) -> torch.Tensor:
        """Output embeddings of all items: (N+1, d), row 0 = padding."""
        return self.item_vectors(torch.arange(self.num_items + 1, device=self.item_id_embedding.weight.device))

    def embed(self, items: torch.Tensor, user_id: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded items (B, T) -> (tokens (B, T', d), valid (B, T') bool), T' = T (+1 with a user prefix).

        With a prefix, the user token goes right before the first item (so the sequence stays
        contiguous for a GRU); every item keeps its offset from the end.
        """
        tokens = self.item_vectors(items)  # (B, T, d)
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

    def states(self, items: torch.Tensor, user_id: torch.Tensor) -> torch.Tensor:
        """Left-padded items (B, T) -> output states (B, T, d), one per item position."""
        tokens, valid = self.embed(items, user_id)  # (B, T', d), (B, T')
        hidden = self.encode(tokens, valid)  # (B, T', d)
        if self.use_prefix:
            hidden = hidden[:, 1:]  # (B, T, d): drop the column the prefix shifted in
        if self.user_semantic is not None and not self.use_prefix:
            hidden = hidden + self.user_semantic(user_id).unsqueeze(1)  # final fusion
        return hidden * (items > 0).unsqueeze(-1)  # padding (and the prefix's own state) -> 0

    @abstractmethod
    def encode(self, tokens: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Embedded left-padded tokens (B, T, d) and their mask (B, T) -> hidden states (B, T, d)."""

    # ---- training path -------------------------------------------------------------------------
    def calculate_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Next-item loss at every position of `seq` (causal backbones); BERT4Rec overrides it."""
        seq = trim_padding(batch["seq"])  # (B, T+1), all-padding columns dropped
        inputs, targets = seq[:, :-1], seq[:, 1:]  # (B, T), (B, T)
        keep = (inputs > 0) & (targets > 0)  # (B, T): a real item predicts the next real item
        if not bool(keep.any()):
            raise ValueError("training batch has no target position (every sequence is shorter than 2 items)")
        hidden = self.states(inputs, batch["user_id"])  # (B, T, d)
        return self.loss_at(hidden[keep], targets[keep])

    def loss_at(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Loss of P states (P, d) against their target items (P,): full-softmax CE or sampled BCE."""
        if targets.numel() == 0:
            raise ValueError("training batch has no target position (every sequence is shorter than 2 items)")
        table = self.item_table()  # (N+1, d)
        if self.cfg.loss == "ce":
            logits = hidden @ table.T  # (P, N+1)
            logits[:, 0] = float("-inf")  # never predict padding
            return F.cross_entropy(logits, targets)
        negatives = torch.randint(
            1, self.num_items + 1, (targets.numel(), self.cfg.num_negatives), device=targets.device
        )
        pos = (hidden * table[targets]).sum(-1)  # (P,)
        neg = torch.einsum("pd,pnd->pn", hidden, table[negatives])  # (P, n)
        return (
            F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos))
            + F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg)) * self.cfg.num_negatives
        )

    # ---- scoring path --------------------------------------------------------------------------
    def sequence_vector(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, d) representation of each user after `history`: the state at the last position."""
        return self.states(trim_padding(batch["history"]), batch["user_id"])[:, -1]

    def full_sort_predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Scores of every item: (B, N+1); column 0 is padding (the evaluator excludes it)."""
        return self.sequence_vector(batch) @ self.item_table().T

    def predict(self, batch: dict[str, torch.Tensor], candidates: torch.Tensor) -> torch.Tensor:
        """Scores of given candidates (B, C) int64 -> (B, C)."""
        vector = self.sequence_vector(batch)  # (B, d)
        return torch.einsum("bd,bcd->bc", vector, self.item_vectors(candidates))

    def forward(self, request: torch.Tensor) -> torch.Tensor:
        """Serving signature: (B, 1+T) int64 = [user_id, history...] -> (B, N+1) scores."""
        history = request[:, 1:]  # (B, T)
        if history.numel() and (history.max() > self.num_items or history.min() < 0):
            raise ValueError(f"item ids must lie in 0..{self.num_items}")
        return self.full_sort_predict({"user_id": request[:, 0], "history": history})
