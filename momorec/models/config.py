"""Typed config of the sequential recommenders (composed into `TrainConfig.model`).

Defaults are RecBole 1.2.1's SASRec defaults (hidden 64, 2 layers, 2 heads, inner 256, GELU,
dropout 0.5, init std 0.02, max length 50), so a plain run is comparable with RecBole's numbers.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from momorec.typed import StrictModel

SemanticMode = Literal["none", "frozen", "trainable"]


class SemanticInputConfig(StrictModel):
    """How one entity type's (item or user) residual semantic IDs enter the model."""

    mode: SemanticMode = Field(
        "none",
        description="none: ignore semantic IDs (baseline); frozen: level embeddings are the codebook centroids "
        "projected once to hidden size (buffers, zero trainable parameters); trainable: a (K+1) x hidden table per "
        "level.",
    )
    frozen_scale: float = Field(
        1.0,
        gt=0,
        description="frozen only: RMS of an entity's summed level vectors, in units of the ID embedding's init std.",
    )
    on_missing: Literal["error", "reserved"] = Field(
        "error",
        description="An entity without semantic IDs: error, or map it to the reserved code 0 (a zero vector), "
        "counted and logged.",
    )


class ModelConfig(StrictModel):
    """Backbone, size, loss and semantic-ID inputs of one recommender."""

    architecture: Literal["sasrec", "gru4rec", "bert4rec"] = Field(
        "sasrec", description="Backbone (one file each in momorec/models)."
    )
    hidden_size: int = Field(64, ge=4, description="Embedding and hidden width d.")
    num_layers: int = Field(2, ge=1, description="Transformer blocks (SASRec, BERT4Rec) or GRU layers (GRU4Rec).")
    num_heads: int = Field(2, ge=1, description="Attention heads (transformers only); must divide hidden_size.")
    inner_size: int = Field(256, ge=1, description="Feed-forward width of a transformer block.")
    dropout: float = Field(0.5, ge=0, lt=1, description="Dropout on embeddings, attention weights and hidden states.")
    max_len: int = Field(50, ge=2, description="Most recent items a sequence keeps (older ones are cut).")
    init_std: float = Field(0.02, gt=0, description="Std of the normal init of embeddings and linear weights.")
    loss: Literal["ce", "bce"] = Field(
        "ce",
        description="ce: full softmax cross-entropy over all items; bce: binary CE with sampled negatives (original "
        "SASRec).",
    )
    num_negatives: int = Field(1, ge=1, description="bce only: uniform negatives per positive position.")
    mask_prob: float = Field(
        0.2, gt=0, lt=1, description="bert4rec only: share of items masked in a training sequence."
    )
    item_semantic: SemanticInputConfig = Field(
        default_factory=SemanticInputConfig,
        description="Item semantic IDs: added to each item's input (and output) embedding.",
    )
    user_semantic: SemanticInputConfig = Field(
        default_factory=SemanticInputConfig,
        description="User motivation IDs: enter the sequence representation (see user_fusion).",
    )
    user_fusion: Literal["prefix", "final"] = Field(
        "prefix",
        description="prefix: the user's motivation vector is a leading token every position can attend to; "
        "final: it is added to each position's output state before scoring.",
    )
