"""The one interface every backbone offers, and the semantic-ID inputs they take.

The trainer, the evaluator, recommend and the registry call only
    calculate_loss(batch) -> scalar loss            (training path)
    full_sort_predict(batch) -> (B, N+1) scores      (scoring path; column 0 = padding)
    sequence_vector(batch) -> (B, d)                 (scoring path: full_sort_predict is this vector
                                                      times embedder.table().T; ItemScorer uses the two)
    predict(batch, candidates (B, C)) -> (B, C)      (scoring path, e.g. sampled-100)
    forward(request (B, 1+T)) -> (B, N+1)            (serving: [user_id, history...])
and read `cfg`, `num_items` and `embedder`, so they never branch on the model type.

Batches are dicts of tensors:
    "seq":     (B, T+1) int64, a training sequence, left-padded with 0, oldest first (T = max_len)
    "history": (B, T)   int64, the items before the target, left-padded with 0
    "user_id": (B,)     int64
Items are 1..N; 0 is padding. The output item table is the input table (weight tying, as SASRec),
so semantic IDs shape the scores as well as the inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import torch

if TYPE_CHECKING:
    from momorec.models.config import ModelConfig
    from momorec.models.parts import SequenceEmbedder


@runtime_checkable
class SequentialRecommender(Protocol):
    """What SASRec, GRU4Rec and BERT4Rec all are (each an nn.Module in its own file)."""

    cfg: ModelConfig
    num_items: int
    embedder: SequenceEmbedder

    def calculate_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor: ...

    def full_sort_predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor: ...

    def sequence_vector(self, batch: dict[str, torch.Tensor]) -> torch.Tensor: ...

    def predict(self, batch: dict[str, torch.Tensor], candidates: torch.Tensor) -> torch.Tensor: ...

    def __call__(self, request: torch.Tensor) -> torch.Tensor: ...


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
