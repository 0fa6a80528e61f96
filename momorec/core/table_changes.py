"""Which rows of a Delta table changed between an older version and now, read from the files that changed only.

A nightly commit (ingest's sequences, motivate's MERGE, quantize's assignment) rewrites the data files that hold
the night's rows and keeps every other file as it was: a row that is in a file both versions share is unchanged.
So the diff reads the files the two snapshots do not share, reduces each row to its key and a 64-bit signature
of the compared columns, and compares the two sides by key. Memory: the key plus 8 bytes per row of those files,
not the table.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from momorec.core.user_selection import user_hash

log = logging.getLogger(__name__)

SIGNATURE = "_signature"


def list_signatures(values: pa.ListArray) -> np.ndarray:
    """A uint64 per row of a list<int> column that changes when any element or its position does (a sum of hashed
    (element, position) pairs: order-sensitive, computed without a loop per row). A null row hashes as empty."""
    offsets = values.offsets.to_numpy().astype(np.int64)
    flat = values.values.to_numpy(zero_copy_only=False).astype(np.int64)[offsets[0] : offsets[-1]]
    offsets = offsets - offsets[0]
    position = np.arange(flat.size, dtype=np.int64) - np.repeat(offsets[:-1], np.diff(offsets))
    with np.errstate(over="ignore"):
        pair = user_hash(flat * 1_000_003 + position, seed=7)
        running = np.concatenate([[np.uint64(0)], np.cumsum(pair, dtype=np.uint64)])
        return running[offsets[1:]] - running[offsets[:-1]]


def column_signatures(column: pa.Array) -> np.ndarray:
    """A uint64 per row of one column: list<int> by `list_signatures`, anything else by pandas' vectorised
    value hash (strings, numbers, booleans; null hashes as its own value)."""
    import pandas as pd

    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        return list_signatures(column)
    return pd.util.hash_array(np.asarray(column.to_pandas(), dtype=object), categorize=False).astype(np.uint64)


def row_signatures(batch: pa.RecordBatch, columns: list[str]) -> np.ndarray:
    """One uint64 per row over `columns` (each column's signature mixed with its position in the list)."""
    out = np.zeros(batch.num_rows, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for index, name in enumerate(columns):
            out = out * np.uint64(0x9E3779B97F4A7C15) + column_signatures(batch.column(name)) + np.uint64(index)
    return out


def _joinable(column: pa.Array) -> pa.Array:
    """Arrow's join takes no view types as keys (delta-rs reads strings as string_view): plain strings instead."""
    if pa.types.is_string_view(column.type):
        return column.cast(pa.string())
    if pa.types.is_binary_view(column.type):
        return column.cast(pa.binary())
    return column


def _keyed_signatures(paths: list[str], fs, keys: list[str], values: list[str]) -> pa.Table:
    """(keys..., _signature) of every row of the Parquet files `paths`, read a record batch at a time."""
    import pyarrow.dataset as pads

    parts = []
    if paths:
        for batch in pads.dataset(paths, filesystem=fs, format="parquet").to_batches(columns=[*keys, *values]):
            if batch.num_rows:
                signature = pa.array(row_signatures(batch, values), pa.uint64())
                columns = [_joinable(batch.column(k)) for k in keys]
                parts.append(pa.table([*columns, signature], names=[*keys, SIGNATURE]))
    return pa.concat_tables(parts) if parts else None


def _no_keys(uris: list[str], keys: list[str]) -> pa.Table:
    """An empty table of the key columns, typed as the table's files have them (int64 without a file)."""
    import pyarrow.dataset as pads

    from momorec.storage import objectstore

    if not uris:
        return pa.table({k: pa.array([], pa.int64()) for k in keys})
    fs, paths = objectstore.filesystem_paths(uris[:1])
    empty = pads.dataset(paths, filesystem=fs, format="parquet").schema.empty_table().select(keys)
    return pa.table([_joinable(c.combine_chunks()) for c in empty.columns], names=keys)


def changed_rows(path: str, since_version: int, keys: list[str], values: list[str]) -> pa.Table | None:
    """The keys (a table of the `keys` columns, each key once) of the rows that are new since `since_version` or
    whose `values` differ from their row then; rows deleted since are not listed. None when that version cannot
    be read (its log was cleaned up): the caller must then treat every row as changed."""
    from deltalake.exceptions import DeltaError

    from momorec.storage import delta, objectstore

    try:
        before = set(delta.file_uris(path, as_of=since_version))
    except (DeltaError, OSError, ValueError) as exc:
        log.warning("%s version %d cannot be read (%s): every row counts as changed", path, since_version, exc)
        return None
    now = set(delta.file_uris(path))
    gone, new = sorted(before - now), sorted(now - before)
    if not new:
        return _no_keys(sorted(now), keys)
    fs, paths = objectstore.filesystem_paths(gone + new)
    current = _keyed_signatures(paths[len(gone) :], fs, keys, values)
    if current is None:
        return _no_keys(sorted(now), keys)
    old = _keyed_signatures(paths[: len(gone)], fs, keys, values)
    if old is not None:
        old = old.rename_columns([*keys, "_old"])
        joined = current.join(old, keys=keys, join_type="left outer")
        same = pc.equal(joined.column(SIGNATURE), joined.column("_old")).fill_null(False)
        current = joined.filter(pc.invert(same))
    return current.select(keys).group_by(keys).aggregate([])
