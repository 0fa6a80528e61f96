"""Delta tables through delta-rs (`deltalake`): every write is one atomic commit.

Spark computes; it reads a table's current snapshot through the Delta log's file list
(`DeltaTable.file_uris()`), never by globbing the folder (that would return removed files), and its
results are committed here. Tables use only basic features so delta-spark can read them too.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError

log = logging.getLogger(__name__)
T = TypeVar("T")

# delta-rs itself rebases a commit over concurrent ones that do not conflict with it; a real conflict
# (a concurrent overwrite, or a merge touching the same files) is retried here from a fresh snapshot.
COMMIT_ATTEMPTS = 5


class CommitConflict(RuntimeError):
    """A commit that kept conflicting with concurrent writers: nothing of it was committed."""


def committed(path: str, attempt: Callable[[], T], attempts: int = COMMIT_ATTEMPTS) -> T:
    """Run `attempt` (one whole write or merge against the table's current snapshot) until it commits."""
    for number in range(1, attempts + 1):
        try:
            return attempt()
        except CommitFailedError as exc:
            if number == attempts:
                raise CommitConflict(
                    f"{path}: the commit conflicted with concurrent writers {attempts} times; nothing was committed "
                    f"(last: {exc})"
                ) from exc
            log.warning("%s: commit conflict (attempt %d of %d), retrying: %s", path, number, attempts, exc)
            time.sleep(0.05 * 2**number)
    raise AssertionError("unreachable")


def exists(path: str) -> bool:
    """Whether a Delta table (a `_delta_log`) is at `path`."""
    try:
        DeltaTable(path)
    except TableNotFoundError:
        return False
    return True


def version(path: str) -> int | None:
    """The table's current version, or None when there is no table."""
    try:
        return DeltaTable(path).version()
    except TableNotFoundError:
        return None


def read(path: str, columns: list[str] | None = None, as_of: int | None = None) -> pa.Table:
    """The table's snapshot (the current one, or version `as_of`) as Arrow."""
    table = DeltaTable(path, version=as_of) if as_of is not None else DeltaTable(path)
    return table.to_pyarrow_table(columns=columns)


def read_or_empty(path: str, schema: pa.Schema) -> pa.Table:
    """The table, or an empty table of `schema` when none exists yet (first run)."""
    return read(path) if exists(path) else schema.empty_table()


def canonical(table: pa.Table) -> pa.Table:
    """The rows of `table` in a canonical order (sorted by every column Arrow can sort by).

    Two tables holding the same rows in different orders become equal; rows that tie on the
    sortable columns but differ in a list column may still compare unequal (a false "changed").
    """
    keys = [(f.name, "ascending") for f in table.schema if not pa.types.is_nested(f.type)]
    return table.sort_by(keys).combine_chunks() if keys and table.num_rows else table.combine_chunks()


COMPARE_MAX_ROWS = 2_000_000


def holds_rows(path: str, data: pa.Table, max_rows: int = COMPARE_MAX_ROWS) -> bool:
    """Whether the table at `path` holds exactly the rows of `data` (in any order).

    Lets an overwrite that would change nothing skip its commit, so the table's version moves only
    when its content does (downstream stages key their skip-if-unchanged on versions). Tables over
    `max_rows` are not compared (always "changed": a needless commit, never a lost one).
    """
    if not exists(path) or data.num_rows > max_rows:
        return False
    table = DeltaTable(path)
    current = table.to_pyarrow_table()
    if current.num_rows != data.num_rows or current.schema.names != data.schema.names:
        return False
    try:
        current = current.cast(data.schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return canonical(current).equals(canonical(data))


def file_uris(path: str) -> list[str]:
    """Data files of the current snapshot, for engines that read Parquet (Spark, Ray Data)."""
    return DeltaTable(path).file_uris()


def write(
    path: str,
    data: pa.Table | Callable[[], pa.Table | pa.RecordBatchReader],
    mode: str = "overwrite",
    replace_where: str | None = None,
) -> int:
    """Commit `data` to the table at `path` (create, overwrite or append) and return the new version.

    `data` is a table, or a function giving a fresh stream of it (a stream is read once, and a
    conflicting commit is retried). An overwrite replaces the schema as well, so a table whose columns
    grew stays writable. `replace_where` (a SQL predicate every new row satisfies) replaces only the rows
    it matches, in the same commit, on an existing table: a re-run's rows take the place of a dead run's.
    """
    if "://" not in path:
        os.makedirs(path, exist_ok=True)
    source = data if callable(data) else (lambda: data)
    if replace_where is not None and exists(path):
        committed(path, lambda: write_deltalake(path, source(), mode="overwrite", predicate=replace_where))
        return DeltaTable(path).version()
    schema_mode = "overwrite" if mode == "overwrite" else None
    committed(path, lambda: write_deltalake(path, source(), mode=mode, schema_mode=schema_mode))
    return DeltaTable(path).version()


def _merge(path: str, data: pa.Table, keys: Iterable[str], update_matched: bool) -> tuple[int, int, int]:
    """MERGE `data` into the table on `keys` (creating it on first use): new rows are inserted, and
    matched rows replaced when `update_matched`. Returns (table version, rows updated, rows inserted);
    nothing is committed for an empty `data`."""
    if not exists(path):
        return write(path, data, mode="overwrite"), 0, data.num_rows
    if data.num_rows == 0:
        return DeltaTable(path).version(), 0, 0
    predicate = " AND ".join(f"t.{k} = s.{k}" for k in keys)

    def merge() -> dict:
        builder = DeltaTable(path).merge(source=data, predicate=predicate, source_alias="s", target_alias="t")
        if update_matched:
            builder = builder.when_matched_update_all()
        return builder.when_not_matched_insert_all().execute()

    metrics = committed(path, merge)
    updated = int(metrics.get("num_target_rows_updated", 0))
    return DeltaTable(path).version(), updated, int(metrics.get("num_target_rows_inserted", 0))


def merge_insert(path: str, data: pa.Table, keys: Iterable[str]) -> tuple[int, int]:
    """Insert the rows of `data` whose `keys` are not yet in the table (an idempotent MERGE).

    Returns (table version, rows inserted). Nothing is committed when no row is new, so running the
    same input twice leaves the version unchanged.
    """
    version, _, inserted = _merge(path, data, keys, update_matched=False)
    return version, inserted


def upsert(path: str, data: pa.Table, keys: Iterable[str]) -> tuple[int, int, int]:
    """MERGE `data` into the table on `keys`: matched rows are replaced, new rows inserted.

    Returns (table version, rows updated, rows inserted); creates the table on first use. Used by
    stages that recompute rows in place (motivate: a failed or changed row is rewritten, never duplicated).
    """
    return _merge(path, data, keys, update_matched=True)
