"""Embedding tables -> validated float32 rows, with every dropped row counted by reason.

Two forms with one interface (`ids`, the rejects, `gather(mask)`, `batches(mask)`): `Embeddings` holds the
vectors (tests, small tables); `EmbeddingScan` holds only each valid row's id and place in the files, and reads
the vectors back a batch at a time (the quantize stage: memory bounded by a batch and by what a fit gathers).

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
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

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

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def subset(self, mask: np.ndarray) -> Embeddings:
        return Embeddings(self.ids[mask], self.vectors[mask], int(mask.sum()))

    def gather(self, mask: np.ndarray) -> np.ndarray:
        """(mask.sum(), D) float32: the vectors of the masked rows, in id order."""
        return self.vectors[mask]

    def batches(self, mask: np.ndarray | None = None, rows: int = 65_536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(row indices into ids, their vectors) of every row (or the masked ones), `rows` at a time."""
        index = np.arange(self.ids.size) if mask is None else np.flatnonzero(mask)
        for start in range(0, index.size, rows):
            part = index[start : start + rows]
            yield part, self.vectors[part]


def _common_length(lengths: np.ndarray) -> int:
    """The most common vector length (ties -> the smaller); 0 when there is none."""
    if lengths.size == 0:
        return 0
    values, counts = np.unique(lengths, return_counts=True)
    return int(values[np.argmax(counts)])


def _row_checks(rows: pa.Table | pa.RecordBatch, id_column: str, embedding_column: str) -> dict[str, np.ndarray]:
    """Per row: the id (-1 when null) and what the rejects are decided on; a few numbers a row, so a scan can
    keep them for every row while it holds one batch of vectors."""
    column, emb = rows.column(id_column), rows.column(embedding_column)
    null_embedding = emb.is_null().to_numpy(zero_copy_only=False)
    length = pc.fill_null(pc.list_value_length(emb), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    values = np.asarray(pc.list_flatten(emb).to_numpy(zero_copy_only=False), dtype=np.float32)
    owner = np.repeat(np.arange(rows.num_rows), length * ~null_embedding)
    finite = np.ones(rows.num_rows, bool)
    finite[owner[~np.isfinite(values)]] = False
    status = rows.column("status").cast(pa.string())  # a MERGE-written file holds string_view
    return {
        "ids": column.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64),
        "null_id": column.is_null().to_numpy(zero_copy_only=False),
        "ok_status": pc.fill_null(pc.equal(status, "ok"), False).to_numpy(zero_copy_only=False),
        "null_embedding": null_embedding,
        "lengths": np.where(null_embedding, -1, length),
        "finite": finite,
    }


def _decide(checks: dict[str, np.ndarray], expected_dim: int | None) -> tuple[np.ndarray, int, dict, dict]:
    """(keep mask, dim, rejects, rejected ids) from every row's checks, the reasons applied in REASONS order:
    each row is counted once, under the first reason it fails; among duplicates the first row wins."""
    ids = checks["ids"]
    keep = np.ones(ids.size, bool)
    rejects = dict.fromkeys(REASONS, 0)
    rejected_ids: dict[str, list[int]] = {}

    def drop(reason: str, mask: np.ndarray) -> None:
        hit = keep & mask
        rejects[reason] += int(hit.sum())
        if hit.any():
            rejected_ids[reason] = ids[hit].tolist()
        keep[hit] = False

    drop("status_not_ok", ~checks["ok_status"])
    drop("null_id", checks["null_id"])
    drop("null_embedding", checks["null_embedding"])
    lengths = checks["lengths"]
    dim = expected_dim if expected_dim is not None else _common_length(lengths[keep])
    drop("wrong_dim", (lengths != dim) | (dim == 0))
    drop("non_finite", ~checks["finite"])
    remaining = np.flatnonzero(keep)
    _, first = np.unique(ids[remaining], return_index=True)
    duplicate = np.zeros(ids.size, bool)
    duplicate[remaining] = True
    duplicate[remaining[first]] = False
    drop("duplicate_id", duplicate)
    return keep, int(dim), rejects, rejected_ids


def embeddings_from_arrow(
    table: pa.Table, id_column: str, expected_dim: int | None = None, embedding_column: str = "embedding"
) -> Embeddings:
    """Validate (id, status, embedding) rows; keep status == "ok" rows with a finite vector of the
    expected dimension (None = the most common length among the otherwise valid rows)."""
    n = table.num_rows
    checks = _row_checks(table, id_column, embedding_column)
    keep, dim, rejects, rejected_ids = _decide(checks, expected_dim)
    positions = np.flatnonzero(keep)
    flat = pc.list_flatten(table.column(embedding_column).take(pa.array(positions))).to_numpy(zero_copy_only=False)
    vectors = np.asarray(flat, dtype=np.float32).reshape(positions.size, dim)
    kept_ids = checks["ids"][keep]
    order = np.argsort(kept_ids, kind="stable")
    out = Embeddings(kept_ids[order], np.ascontiguousarray(vectors[order]), n, rejects, rejected_ids)
    if out.rows_rejected:
        log.warning(
            "%s: %d of %d rows rejected: %s", id_column, out.rows_rejected, n, {k: v for k, v in rejects.items() if v}
        )
    return out


@dataclass
class EmbeddingScan:
    """An embedding table's valid rows located in its Parquet files, not loaded (see the module doc).

    ids (n,) int64 ascending, as Embeddings'; positions (n,): each id's row in the scan order (the files in
    order, their rows in order), which fixes which duplicate was kept. Reading vectors back re-scans the files:
    memory is one batch of `batch_rows` rows plus what the caller gathers."""

    paths: list[str]
    filesystem: Any
    id_column: str
    embedding_column: str
    dim: int
    ids: np.ndarray
    positions: np.ndarray
    rows_in: int
    rejects: dict[str, int]
    rejected_ids: dict[str, list[int]]
    batch_rows: int = 65_536

    @property
    def rows_rejected(self) -> int:
        return int(sum(self.rejects.values()))

    def batches(
        self, mask: np.ndarray | None = None, rows: int | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(row indices into ids, their vectors (k, D) float32) of every row (or the masked ones), in scan order,
        one file batch at a time."""
        index = np.arange(self.ids.size) if mask is None else np.flatnonzero(mask)
        by_position = np.argsort(self.positions[index], kind="stable")
        wanted, index = self.positions[index][by_position], index[by_position]
        for first, batch in _scan(self.paths, self.filesystem, [self.embedding_column], rows or self.batch_rows):
            lo, hi = np.searchsorted(wanted, [first, first + batch.num_rows])
            if hi == lo:
                continue
            take = pa.array(wanted[lo:hi] - first)
            flat = pc.list_flatten(batch.column(self.embedding_column).take(take))
            vectors = np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(hi - lo, self.dim)
            yield index[lo:hi], vectors

    def gather(self, mask: np.ndarray) -> np.ndarray:
        """(mask.sum(), D) float32: the vectors of the masked rows, in id order (one pass over the files)."""
        index = np.flatnonzero(mask)
        out = np.empty((index.size, self.dim), np.float32)
        for rows, vectors in self.batches(mask):
            out[np.searchsorted(index, rows)] = vectors
        return out


_CHECK_TYPES = {
    "ids": np.int64,
    "null_id": bool,
    "ok_status": bool,
    "null_embedding": bool,
    "lengths": np.int64,
    "finite": bool,
}


def _concat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


def _scan(
    paths: list[str], filesystem: Any, columns: list[str], batch_rows: int
) -> Iterator[tuple[int, pa.RecordBatch]]:
    """(position of its first row, batch) over the files in order, each file's rows in order."""
    first = 0
    for path in paths:
        with filesystem.open_input_file(path) as handle:
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=batch_rows, columns=columns):
                yield first, batch
                first += batch.num_rows


def scan_embeddings(
    paths: list[str],
    filesystem: Any,
    id_column: str,
    expected_dim: int | None = None,
    *,
    embedding_column: str = "embedding",
    batch_rows: int = 65_536,
) -> EmbeddingScan:
    """The rules of `embeddings_from_arrow` over Parquet files read a batch at a time: one pass keeps a few
    numbers per row (id, length, the checks), the reasons are applied in the same order at the end."""
    parts = [
        _row_checks(batch, id_column, embedding_column)
        for _, batch in _scan(paths, filesystem, [id_column, "status", embedding_column], batch_rows)
    ]
    checks = {key: _concat([p[key] for p in parts], dtype) for key, dtype in _CHECK_TYPES.items()}
    keep, dim, rejects, rejected_ids = _decide(checks, expected_dim)
    ids_all, n = checks["ids"], checks["ids"].size
    positions = np.flatnonzero(keep)
    order = np.argsort(ids_all[positions], kind="stable")
    out = EmbeddingScan(
        list(paths),
        filesystem,
        id_column,
        embedding_column,
        int(dim),
        ids_all[positions][order],
        positions[order],
        n,
        rejects,
        rejected_ids,
        batch_rows,
    )
    if out.rows_rejected:
        log.warning(
            "%s: %d of %d rows rejected: %s", id_column, out.rows_rejected, n, {k: v for k, v in rejects.items() if v}
        )
    return out
