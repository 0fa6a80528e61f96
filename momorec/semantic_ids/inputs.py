"""Embedding tables -> validated float32 matrices, with every dropped row counted by reason.

rows in = rows kept + sum of rejects. Reasons:
  status_not_ok   the producing stage marked the row failed (only status == "ok" is used)
  null_id         no entity id
  null_embedding  no vector
  wrong_dim       a length other than the expected dimension
  non_finite      a NaN or inf anywhere in the vector
  duplicate_id    a second row for an id already kept (the first row wins)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

log = logging.getLogger(__name__)

REASONS = ("status_not_ok", "null_id", "null_embedding", "wrong_dim", "non_finite", "duplicate_id")


@dataclass
class Embeddings:
    """ids (n,) int64 ascending, vectors (n, D) float32 in the same order, and the rejects by reason.

    Sorted by id so that a fit depends on which rows a table holds, not on how its files happen
    to be laid out (a resumed or incrementally written table orders its rows differently)."""

    ids: np.ndarray
    vectors: np.ndarray
    rows_in: int
    rejects: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    rejected_ids: dict[str, list[int]] = field(default_factory=dict)

    @property
    def rows_rejected(self) -> int:
        return int(sum(self.rejects.values()))

    def subset(self, mask: np.ndarray) -> Embeddings:
        return Embeddings(self.ids[mask], self.vectors[mask], int(mask.sum()))


def _common_length(lengths: np.ndarray) -> int:
    """The most common vector length (ties -> the smaller); 0 when there is none."""
    if lengths.size == 0:
        return 0
    values, counts = np.unique(lengths, return_counts=True)
    return int(values[np.argmax(counts)])


def embeddings_from_arrow(
    table: pa.Table, id_column: str, expected_dim: int | None = None, embedding_column: str = "embedding"
) -> Embeddings:
    """Validate (id, status, embedding) rows; keep status == "ok" rows with a finite vector of the
    expected dimension (None = the most common length among the otherwise valid rows)."""
    n = table.num_rows
    rejects = dict.fromkeys(REASONS, 0)
    rejected_ids: dict[str, list[int]] = {}
    keep = np.ones(n, bool)
    ids_col = table.column(id_column)
    ids = ids_col.fill_null(-1).to_numpy().astype(np.int64)

    def drop(reason: str, mask: np.ndarray) -> None:
        hit = keep & mask
        rejects[reason] += int(hit.sum())
        if hit.any():
            rejected_ids[reason] = ids[hit].tolist()
        keep[hit] = False

    status = table.column("status")
    drop("status_not_ok", ~pc.fill_null(pc.equal(status, "ok"), False).to_numpy(zero_copy_only=False))
    drop("null_id", ids_col.is_null().to_numpy(zero_copy_only=False))
    emb = table.column(embedding_column)
    drop("null_embedding", emb.is_null().to_numpy(zero_copy_only=False))
    lengths = pc.fill_null(pc.list_value_length(emb), -1).to_numpy(zero_copy_only=False).astype(np.int64)
    dim = expected_dim if expected_dim is not None else _common_length(lengths[keep])
    drop("wrong_dim", (lengths != dim) | (dim == 0))

    kept = table.filter(pa.array(keep))
    flat = pc.list_flatten(kept.column(embedding_column)).to_numpy(zero_copy_only=False)
    vectors = np.asarray(flat, dtype=np.float32).reshape(kept.num_rows, dim)
    finite = np.isfinite(vectors).all(axis=1)
    positions = np.flatnonzero(keep)
    bad = np.zeros(n, bool)
    bad[positions[~finite]] = True
    drop("non_finite", bad)

    _, first = np.unique(ids[positions[finite]], return_index=True)
    dup = np.zeros(n, bool)
    dup[positions[finite]] = True
    dup[positions[finite][first]] = False
    drop("duplicate_id", dup)

    vectors = vectors[finite][np.isin(positions[finite], np.flatnonzero(keep))]
    kept_ids = ids[keep]
    order = np.argsort(kept_ids, kind="stable")
    out = Embeddings(kept_ids[order], np.ascontiguousarray(vectors[order]), n, rejects, rejected_ids)
    if out.rows_rejected:
        log.warning(
            "%s: %d of %d rows rejected: %s", id_column, out.rows_rejected, n, {k: v for k, v in rejects.items() if v}
        )
    return out
