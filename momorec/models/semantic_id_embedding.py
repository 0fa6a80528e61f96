"""Residual semantic-ID embeddings: an entity's vector is the sum of its per-level code vectors.

An entity (item or user) with residual codes (c_1, ..., c_L) gets  e = sum_l T_l[c_l],  the way
TIGER/LETTER/LLM-ESR-style models feed semantic IDs to a recommender. Codes arrive shifted by one:
0 is reserved (padding, or an entity without semantic IDs) and always maps to the zero vector; the
quantizer's code c is stored as c + 1.

Two modes:
- trainable: T_l is a (K+1) x d table per level, learned with the recommender (row 0 fixed at 0).
- frozen: T_l = the level-l codebook centroids (K x d_llm), projected ONCE to d and stored as
  buffers: no trainable parameter is added (the MoMoREC claim). Because residual quantization
  reconstructs x ~ sum_l C_l[c_l], one linear map P keeps that sum: P x ~ sum_l P C_l[c_l]. P is
  the top-d right singular vectors of the stacked centroids when d_llm > d (an uncentred PCA,
  so the map stays linear), or a seeded random orthonormal embedding when d_llm <= d. The result
  is scaled so that the entities' summed vectors have RMS `frozen_scale * init_std`, the same
  scale as the ID embeddings they are added to.
"""

from __future__ import annotations

import torch
from torch import nn


def project_centroids(centroids: torch.Tensor, hidden: int, seed: int = 0) -> torch.Tensor:
    """(L, K, d_llm) float centroids -> (L, K, hidden) float32 through one shared linear map."""
    levels, k, dim = centroids.shape
    flat = centroids.reshape(levels * k, dim).to(torch.float64)
    if dim > hidden:
        _, _, vh = torch.linalg.svd(flat, full_matrices=False)  # vh: (min(LK, d), d)
        proj = vh[:hidden].T  # (d, hidden)
        if proj.shape[1] < hidden:  # fewer centroids than hidden dims: pad with zero columns
            proj = torch.cat([proj, proj.new_zeros(dim, hidden - proj.shape[1])], dim=1)
    else:
        gen = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(hidden, dim, generator=gen, dtype=torch.float64))  # (hidden, d)
        proj = q.T  # (d, hidden), orthonormal rows: lengths are kept
    return (flat @ proj).reshape(levels, k, hidden).to(torch.float32)


class SemanticIdEmbedding(nn.Module):
    """Entity id -> sum of its semantic-ID level vectors.

    codes: (E+1, L) int64 shifted codes (0 = reserved); row e holds entity e's codes.
    num_codes: K, codes per level (before the shift). mode: "frozen" (needs centroids (L, K, d_llm))
    or "trainable".
    """

    def __init__(
        self,
        codes: torch.Tensor,
        num_codes: int,
        hidden: int,
        mode: str,
        centroids: torch.Tensor | None = None,
        frozen_scale: float = 1.0,
        init_std: float = 0.02,
        seed: int = 0,
    ):
        super().__init__()
        if codes.dim() != 2:
            raise ValueError(f"semantic codes must be (entities, levels), got shape {tuple(codes.shape)}")
        if codes.min() < 0 or codes.max() > num_codes:
            raise ValueError(
                f"semantic codes must lie in 0..{num_codes} (0 reserved), got {int(codes.min())}..{int(codes.max())}"
            )
        self.mode = mode
        self.num_levels = codes.shape[1]
        self.register_buffer("codes", codes.to(torch.int64), persistent=True)
        if mode == "trainable":
            self.levels = nn.ModuleList(
                nn.Embedding(num_codes + 1, hidden, padding_idx=0) for _ in range(self.num_levels)
            )
            for table in self.levels:
                nn.init.normal_(table.weight, std=init_std)
                with torch.no_grad():
                    table.weight[0].zero_()
        elif mode == "frozen":
            if centroids is None:
                raise ValueError("frozen semantic embeddings need the codebook centroids")
            if centroids.shape[0] != self.num_levels or centroids.shape[1] != num_codes:
                raise ValueError(
                    f"centroids {tuple(centroids.shape)} do not match {self.num_levels} levels x {num_codes} codes"
                )
            projected = project_centroids(centroids, hidden, seed)  # (L, K, hidden)
            vectors = torch.cat([projected.new_zeros(self.num_levels, 1, hidden), projected], dim=1)  # (L, K+1, hidden)
            summed = self._sum_levels(vectors, self.codes[1:])  # (E, hidden)
            used = (self.codes[1:] > 0).any(dim=1)
            rms = summed[used].pow(2).mean().sqrt() if used.any() else torch.tensor(1.0)
            scale = frozen_scale * init_std / max(float(rms), 1e-12)
            self.register_buffer("level_vectors", vectors * scale, persistent=True)
        else:
            raise ValueError(f"unknown semantic mode {mode!r} (none is handled by not building this module)")

    @staticmethod
    def _sum_levels(vectors: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """vectors (L, K+1, d), codes (..., L) -> (..., d) summed over levels."""
        out = vectors[0][codes[..., 0]]
        for level in range(1, vectors.shape[0]):
            out = out + vectors[level][codes[..., level]]
        return out

    def forward(self, entity_ids: torch.Tensor) -> torch.Tensor:
        """entity_ids (...) int64 -> (..., hidden) float."""
        codes = self.codes[entity_ids]  # (..., L)
        if self.mode == "frozen":
            return self._sum_levels(self.level_vectors, codes)
        out = self.levels[0](codes[..., 0])
        for level in range(1, self.num_levels):
            out = out + self.levels[level](codes[..., level])
        return out

    def table(self) -> torch.Tensor:
        """All entities' vectors: (E+1, hidden), row 0 = 0."""
        return self.forward(torch.arange(self.codes.shape[0], device=self.codes.device))
