"""Sequential recommenders (SASRec, GRU4Rec, BERT4Rec) behind one interface, semantic-ID aware.

`build_model` composes a backbone from its shared parts: the sequence embedder (item IDs +
semantic-ID levels + the user's motivation input, momorec.models.parts) and the loss
(momorec.models.losses); each backbone file holds only its encoder and its training objective.
"""

from __future__ import annotations

from momorec.models import bert4rec
from momorec.models.bert4rec import BERT4Rec
from momorec.models.config import ModelConfig
from momorec.models.gru4rec import GRU4Rec
from momorec.models.interface import SemanticInputs, SequentialRecommender
from momorec.models.losses import build_loss
from momorec.models.parts import SequenceEmbedder
from momorec.models.sasrec import SASRec

ARCHITECTURES: dict[str, type] = {"sasrec": SASRec, "gru4rec": GRU4Rec, "bert4rec": BERT4Rec}
# Ids each backbone reserves after the items (BERT4Rec's [mask]).
EXTRA_TOKENS: dict[str, int] = {"sasrec": 0, "gru4rec": 0, "bert4rec": bert4rec.EXTRA_TOKENS}


def build_model(
    cfg: ModelConfig,
    num_items: int,
    item_semantic: SemanticInputs | None = None,
    user_semantic: SemanticInputs | None = None,
    seed: int = 0,
) -> SequentialRecommender:
    """The backbone `cfg.architecture`, sized for items 1..num_items (0 = padding)."""
    extra = EXTRA_TOKENS[cfg.architecture]
    embedder = SequenceEmbedder(cfg, num_items, item_semantic, user_semantic, seed, extra_tokens=extra)
    return ARCHITECTURES[cfg.architecture](cfg, embedder, build_loss(cfg))


__all__ = [
    "ARCHITECTURES",
    "BERT4Rec",
    "GRU4Rec",
    "ModelConfig",
    "SASRec",
    "SemanticInputs",
    "SequenceEmbedder",
    "SequentialRecommender",
    "build_model",
]
