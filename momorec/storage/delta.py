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
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, Schema, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions

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


def column_names(path: str) -> list[str]:
    """The columns of the table's current schema (from the log; no data file is read)."""
    return [field.name for field in DeltaTable(path).schema().fields]


def file_uris(path: str, as_of: int | None = None) -> list[str]:
    """Data files of the current snapshot (or of version `as_of`), for engines that read Parquet (Spark, Ray Data)."""
    return (DeltaTable(path, version=as_of) if as_of is not None else DeltaTable(path)).file_uris()


def data_files(path: str) -> list[tuple[str, str]]:
    """(path relative to the table, absolute URI) of every data file of the current snapshot."""
    table = DeltaTable(path)
    relative = pa.table(table.get_add_actions(flatten=True)).column("path").to_pylist()
    by_name = {uri.rsplit("/", 1)[-1]: uri for uri in table.file_uris()}
    if len(by_name) != len(relative):
        raise ValueError(f"{path}: two data files share a name; the table cannot be rewritten file by file")
    return [(rel, by_name[rel.rsplit("/", 1)[-1]]) for rel in relative]


def count_rows(path: str) -> int:
    """Rows of the current snapshot, from the log's per-file record counts (no data file is read)."""
    if not exists(path):
        return 0
    table = DeltaTable(path)
    counts = pa.table(table.get_add_actions(flatten=True)).column("num_records")
    if counts.null_count:  # a file committed without stats: count from the Parquet footers instead
        import pyarrow.dataset as pads

        from momorec.storage import objectstore

        fs, paths = objectstore.filesystem_paths(table.file_uris())
        return pads.dataset(paths, filesystem=fs, format="parquet").count_rows()
    return int(pc.sum(counts).as_py() or 0)


def last_commit(path: str) -> dict:
    """The current version's commitInfo (operation, timestamp and any custom metadata); {} without a table."""
    if not exists(path):
        return {}
    history = DeltaTable(path).history(1)
    return history[0] if history else {}


def commit_files(
    path: str,
    schema: pa.Schema,
    added: list[AddAction],
    removed: list[RemoveAction] | None = None,
    mode: str = "append",
    metadata: dict[str, str] | None = None,
) -> int:
    """Commit data files already written under the table's folder (by Spark) as one transaction.

    append: add `added` and remove `removed` (a file-level rewrite); overwrite: `added` replace every
    current file. No row passes through this process: the log gets one action per file. Creates the table
    on first use.
    """
    properties = CommitProperties(custom_metadata=dict(metadata or {}))
    if not exists(path):
        if removed:
            raise ValueError(f"{path}: no table to remove files from")
        committed(
            path,
            lambda: create_table_with_add_actions(
                path, Schema.from_arrow(schema), added, mode="overwrite", commit_properties=properties
            ),
        )
        return DeltaTable(path).version()
    actions: list = [*added, *(removed or [])]
    if removed and mode != "append":
        raise ValueError("files are removed one by one only in an append transaction")
    committed(
        path,
        lambda: DeltaTable(path).create_write_transaction(actions, mode, schema, commit_properties=properties),
    )
    return DeltaTable(path).version()


def write(
    path: str,
    data: pa.Table | Callable[[], pa.Table | pa.RecordBatchReader],
    mode: str = "overwrite",
    replace_where: str | None = None,
    metadata: dict[str, str] | None = None,
) -> int:
    """Commit `data` to the table at `path` (create, overwrite or append) and return the new version.

    `data` is a table, or a function giving a fresh stream of it (a stream is read once, and a
    conflicting commit is retried). An overwrite replaces the schema as well, so a table whose columns
    grew stays writable. `replace_where` (a SQL predicate every new row satisfies) replaces only the rows
    it matches, in the same commit, on an existing table: a re-run's rows take the place of a dead run's.
    `metadata` goes into the commit's commitInfo (`last_commit`).
    """
    if "://" not in path:
        os.makedirs(path, exist_ok=True)
    source = data if callable(data) else (lambda: data)
    properties = CommitProperties(custom_metadata=dict(metadata or {}))
    if replace_where is not None and exists(path):
        committed(
            path,
            lambda: write_deltalake(
                path, source(), mode="overwrite", predicate=replace_where, commit_properties=properties
            ),
        )
        return DeltaTable(path).version()
    schema_mode = "overwrite" if mode == "overwrite" else None
    committed(
        path,
        lambda: write_deltalake(path, source(), mode=mode, schema_mode=schema_mode, commit_properties=properties),
    )
    return DeltaTable(path).version()


def _merge(
    path: str,
    data: pa.Table | Callable[[], pa.RecordBatchReader],
    keys: Iterable[str],
    update_matched: bool,
    merge_schema: bool = False,
    metadata: dict[str, str] | None = None,
) -> tuple[int, int, int]:
    """MERGE `data` (a table, or a function giving a fresh stream of it per commit attempt) into the table on
    `keys` (creating it on first use): new rows are inserted, and matched rows replaced when `update_matched`.
    Returns (table version, rows updated, rows inserted); nothing is committed for an empty table `data`."""
    if not exists(path):
        table = data if isinstance(data, pa.Table) else data().read_all()
        return write(path, table, mode="overwrite", metadata=metadata), 0, table.num_rows
    if isinstance(data, pa.Table) and data.num_rows == 0:
        return DeltaTable(path).version(), 0, 0
    source = data if callable(data) else (lambda: data)
    predicate = " AND ".join(f"t.{k} = s.{k}" for k in keys)
    properties = CommitProperties(custom_metadata=dict(metadata or {}))

    def merge() -> dict:
        builder = DeltaTable(path).merge(
            source=source(),
            predicate=predicate,
            source_alias="s",
            target_alias="t",
            merge_schema=merge_schema,
            commit_properties=properties,
        )
        if update_matched:
            builder = builder.when_matched_update_all()
        return builder.when_not_matched_insert_all().execute()

    metrics = committed(path, merge)
    updated = int(metrics.get("num_target_rows_updated", 0))
    return DeltaTable(path).version(), updated, int(metrics.get("num_target_rows_inserted", 0))


def merge_insert(path: str, data: pa.Table, keys: Iterable[str], merge_schema: bool = False) -> tuple[int, int]:
    """Insert the rows of `data` whose `keys` are not yet in the table (an idempotent MERGE).

    Returns (table version, rows inserted). Nothing is committed when no row is new, so running the
    same input twice leaves the version unchanged. merge_schema: columns of `data` the table lacks are added
    (its older rows read them as null).
    """
    version, _, inserted = _merge(path, data, keys, update_matched=False, merge_schema=merge_schema)
    return version, inserted


def upsert(
    path: str,
    data: pa.Table | Callable[[], pa.RecordBatchReader],
    keys: Iterable[str],
    metadata: dict[str, str] | None = None,
) -> tuple[int, int, int]:
    """MERGE `data` (a table, or a function giving a fresh stream) into the table on `keys`: matched rows are
    replaced, new rows inserted; `metadata` goes into the commit's commitInfo.

    Returns (table version, rows updated, rows inserted); creates the table on first use. Used by
    stages that recompute rows in place (motivate: a failed or changed row is rewritten, never duplicated;
    recommend: the rows of the users that changed).
    """
    return _merge(path, data, keys, update_matched=True, metadata=metadata)
