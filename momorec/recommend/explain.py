"""The explanation columns of `recommendations`, joined to a stream of scored users in bounded memory.

Each scored user (user_id, items, scores: `batch_scoring.TOP_K`) gets the motivation text of
`user_motivations` (status ok) and the semantic codes of `semantic_ids` (entity_type user); each
recommended item gets its codes (entity_type item). Item codes are catalog-sized and held as one lookup
(`item_codes`). The user side grows with the user base, so it is never held whole: a bucketed (Grace) hash
join (Kitsuregawa, Tanaka & Moto-oka 1983; DeWitt et al. 1984) first spills the user rows of the two tables
and the scored batches, as they stream by, to local Parquet files in `buckets` buckets (user_id % buckets),
then joins one bucket at a time.

Memory: one bucket's rows of the three inputs (about users / buckets each, projected columns only), one
scored batch and the item lookup; never a dict of every user. Disk: the projected user-side columns and
the top-K of every user, in a temporary folder removed when the stream ends. I/O: every table is read once.
A per-batch filtered read (`user_id IN batch`) holds less but reads both user tables once per batch,
(users / batch) x (table size): quadratic in the user base.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from momorec.core.batch_scoring import TOP_K, TableFiles
from momorec.storage import schemas

USER_CODES = pa.schema([("user_id", pa.int64()), ("user_codes", pa.list_(pa.int32()))])
MOTIVATIONS = pa.schema([("user_id", pa.int64()), ("motivation_text", pa.string())])
ITEM_CODES = pa.schema([("entity_id", pa.int64()), ("codes", pa.list_(pa.int32()))])


@dataclass(frozen=True)
class UserSide:
    """The data files of `user_motivations` and `semantic_ids` (None: no such table, or no file yet), resolved
    before the commit stream starts (see `TableFiles`), and the number of join buckets."""

    motivations: TableFiles | None
    codes: TableFiles | None
    buckets: int
    only: np.ndarray | None = None  # sorted user ids: the rows of only these users are read (None: every user)


def _dataset(files: TableFiles, contract: pa.Schema) -> pads.Dataset:
    """The files read as the table's contract types: a file written by a MERGE (delta-rs) stores strings as
    string_view, which pyarrow's compute kernels (filter, equal) do not take; the contract's schema casts them."""
    return pads.dataset(files.paths, filesystem=files.filesystem, format="parquet", schema=contract)


def _where(batch: pa.RecordBatch, column: str, value: str) -> pa.RecordBatch:
    """The rows whose `column` equals `value` (in memory, after the cast: see `_dataset`), without that column."""
    return batch.filter(pc.equal(batch.column(column), value)).drop_columns([column])


def _user_rows(side: UserSide, which: str) -> Iterator[pa.RecordBatch]:
    """One user-side table's rows, projected and renamed (USER_CODES / MOTIVATIONS)."""
    if which == "codes":
        files, schema, contract, where = side.codes, USER_CODES, schemas.SEMANTIC_IDS, ("entity_type", "user")
        columns = {"user_id": pc.field("entity_id"), "user_codes": pc.field("codes")}
    else:
        files, schema, contract, where = side.motivations, MOTIVATIONS, schemas.USER_MOTIVATIONS, ("status", "ok")
        columns = {"user_id": pc.field("user_id"), "motivation_text": pc.field("motivation_text")}
    if files is None:
        return
    for batch in _dataset(files, contract).to_batches(columns=columns | {where[0]: pc.field(where[0])}):
        batch = _where(batch, *where)
        if side.only is not None:
            batch = batch.filter(pa.array(np.isin(batch.column("user_id").to_numpy(), side.only)))
        yield batch.cast(schema) if batch.schema != schema else batch


def item_codes(codes: TableFiles | None) -> pa.Table:
    """(entity_id, codes) of every item with a semantic ID (ITEM_CODES): catalog-sized, held by the caller."""
    if codes is None:
        return ITEM_CODES.empty_table()
    table = _dataset(codes, schemas.SEMANTIC_IDS).to_table(columns=["entity_id", "codes", "entity_type"])
    table = table.filter(pc.equal(table.column("entity_type"), "item")).drop_columns(["entity_type"])
    return table.cast(ITEM_CODES)


def bucket_of(user_ids: np.ndarray, buckets: int) -> np.ndarray:
    """(n,) int32 join bucket of each user id: user_id % buckets (even for any id layout)."""
    return (np.asarray(user_ids, dtype=np.int64) % buckets).astype(np.int32)


def _spill(batches: Iterator[pa.RecordBatch], schema: pa.Schema, folder: str, side: UserSide) -> None:
    """Write `batches` under folder/bucket=<b>/ (hive partitions on user_id's bucket), streaming."""
    with_bucket = schema.append(pa.field("bucket", pa.int32()))

    def tagged() -> Iterator[pa.RecordBatch]:
        for batch in batches:
            if batch.num_rows:
                batch = batch.cast(schema) if batch.schema != schema else batch
                bucket = bucket_of(batch.column("user_id").to_numpy(), side.buckets)
                yield pa.RecordBatch.from_arrays([*batch.columns, pa.array(bucket)], schema=with_bucket)

    pads.write_dataset(
        tagged(),
        folder,
        schema=with_bucket,
        format="parquet",
        partitioning=["bucket"],
        partitioning_flavor="hive",
        existing_data_behavior="overwrite_or_ignore",
        preserve_order=True,  # a repeated key keeps its last row, as in the table
        max_partitions=side.buckets + 1,
    )


def _bucket(folder: str, bucket: int, schema: pa.Schema) -> pa.Table:
    part = os.path.join(folder, f"bucket={bucket}")
    if not os.path.isdir(part):
        return schema.empty_table()
    return pads.dataset(part, format="parquet", schema=schema).to_table()


def lookup(keys: np.ndarray, table: pa.Table, key: str, column: str) -> pa.Array:
    """table[column] at the row whose `key` equals each of `keys`, null where none (the last row of a
    repeated key, as a dict built from the table would keep). keys: (n,) int64 -> (n,) of column's type."""
    keys = np.asarray(keys, dtype=np.int64)
    values = table.column(column)
    if table.num_rows == 0 or keys.size == 0:
        return pa.nulls(keys.size, values.type)
    ids = table.column(key).to_numpy()
    order = np.argsort(ids, kind="stable")
    at = np.searchsorted(ids[order], keys, side="right") - 1
    found = (at >= 0) & (ids[order][np.maximum(at, 0)] == keys)
    rows = pa.array(order[np.maximum(at, 0)], mask=~found)
    return values.take(rows).combine_chunks() if isinstance(values, pa.ChunkedArray) else values.take(rows)


def explained(
    scored: pa.RecordBatch,
    items: pa.Table,
    user_codes: pa.Table,
    motivations: pa.Table,
    train_run_id: str,
    seed: int,
) -> pa.RecordBatch:
    """RECOMMENDATIONS rows of scored users (TOP_K), with the codes and texts found for them (null: none).
    `items` is ITEM_CODES, `user_codes` USER_CODES and `motivations` MOTIVATIONS rows covering these users."""
    n = scored.num_rows
    users = scored.column("user_id").to_numpy()
    recommended = scored.column("items")
    lengths = pc.list_value_length(recommended).to_numpy(zero_copy_only=False)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]), pa.int32())
    flat = pc.list_flatten(recommended).to_numpy()
    per_item = pa.ListArray.from_arrays(offsets, lookup(flat, items, "entity_id", "codes"))
    return pa.RecordBatch.from_arrays(
        [
            scored.column("user_id"),
            recommended,
            scored.column("scores"),
            per_item.cast(schemas.RECOMMENDATIONS.field("item_codes").type),
            lookup(users, user_codes, "user_id", "user_codes"),
            lookup(users, motivations, "user_id", "motivation_text"),
            pa.array([train_run_id] * n, pa.string()),
            pa.array([seed] * n, pa.int64()),
            pa.array(np.full(n, time.time()), pa.float64()),
        ],
        schema=schemas.RECOMMENDATIONS,
    )


def recommendation_stream(
    scored: Iterator[pa.RecordBatch],
    side: UserSide,
    items: pa.Table,
    train_run_id: str,
    seed: int,
    batch_rows: int,
) -> Iterator[pa.RecordBatch]:
    """RECOMMENDATIONS batches (at most `batch_rows` rows) of every scored user, in no particular order: the
    bucketed join of the module docstring. Reads only the resolved files of `side` (no Delta table), so it
    can run inside the commit that consumes it."""
    with tempfile.TemporaryDirectory(prefix="momorec-recommend-") as spill:
        folders = {name: os.path.join(spill, name) for name in ("codes", "motivations", "scored")}
        _spill(_user_rows(side, "codes"), USER_CODES, folders["codes"], side)
        _spill(_user_rows(side, "motivations"), MOTIVATIONS, folders["motivations"], side)
        _spill(scored, TOP_K, folders["scored"], side)
        for bucket in range(side.buckets):
            users = _bucket(folders["scored"], bucket, TOP_K)
            if users.num_rows == 0:
                continue
            codes = _bucket(folders["codes"], bucket, USER_CODES)
            texts = _bucket(folders["motivations"], bucket, MOTIVATIONS)
            for batch in users.to_batches(max_chunksize=batch_rows):
                yield explained(batch, items, codes, texts, train_run_id, seed)
