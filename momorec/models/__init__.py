"""Sequential recommenders (SASRec, GRU4Rec, BERT4Rec) behind one interface, semantic-ID aware."""

from __future__ import annotations

from momorec.models.base import SemanticInputs, SequentialRecommender
from momorec.models.bert4rec import BERT4Rec
from momorec.models.config import ModelConfig
from momorec.models.gru4rec import GRU4Rec
from momorec.models.sasrec import SASRec

ARCHITECTURES: dict[str, type[SequentialRecommender]] = {"sasrec": SASRec, "gru4rec": GRU4Rec, "bert4rec": BERT4Rec}


def build_model(
    cfg: ModelConfig,
    num_items: int,
    item_semantic: SemanticInputs | None = None,
    user_semantic: SemanticInputs | None = None,
    seed: int = 0,
) -> SequentialRecommender:
    """The backbone `cfg.architecture`, sized for items 1..num_items (0 = padding)."""
    return ARCHITECTURES[cfg.architecture](cfg, num_items, item_semantic, user_semantic, seed)


__all__ = [
    "ARCHITECTURES",
    "BERT4Rec",
    "GRU4Rec",
    "ModelConfig",
    "SASRec",
    "SemanticInputs",
    "SequentialRecommender",
    "build_model",
]
