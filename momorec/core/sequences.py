"""Sequences from the Delta tables, checked, and turned into padded training and scoring batches.

Input: `sequences` (user_id, items, train_items, valid_item, test_item, length) and `item_ids`
(the number of items is the largest item_id; ids start at 1, 0 is padding). Leave-one-out: the model
trains on `train_items`, selects on `valid_item` (history = train_items) and is tested once on
`test_item` (history = train_items + valid_item).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from momorec.core.user_selection import EVERYONE, UserSelection

log = logging.getLogger(__name__)

SPLIT_COLUMNS = ("train_items", "valid_item", "test_item")
SEQUENCE_COLUMNS = ("user_id", "items", *SPLIT_COLUMNS)  # what scoring reads


@dataclass
class SequenceData:
    """All users' histories as a CSR array plus their split.

    user_ids: (U,) int64, sorted. items/offsets: CSR of whole histories, oldest first
    (user u's items are items[offsets[u]:offsets[u+1]]). train_len: (U,) number of training items
    (= length - 2). valid_item, test_item: (U,) int64. num_items: N (largest item id).
    """

    user_ids: np.ndarray
    items: np.ndarray
    offsets: np.ndarray
    train_len: np.ndarray
    valid_item: np.ndarray
    test_item: np.ndarray
    num_items: int
    versions: dict[str, int | None] = field(default_factory=dict)

    @property
    def num_users(self) -> int:
        return int(self.user_ids.size)

    @property
    def max_user_id(self) -> int:
        return int(self.user_ids.max()) if self.user_ids.size else 0

    def save_npz(self, path: str) -> None:
        """A portable snapshot (for a machine without the Delta tables, e.g. a GPU box)."""
        np.savez_compressed(
            path,
            user_ids=self.user_ids,
            items=self.items,
            offsets=self.offsets,
            train_len=self.train_len,
            valid_item=self.valid_item,
            test_item=self.test_item,
            num_items=self.num_items,
        )

    @classmethod
    def load_npz(cls, path: str) -> SequenceData:
        with np.load(path) as npz:
            data = cls(
                **{k: npz[k] for k in ("user_ids", "items", "offsets", "train_len", "valid_item", "test_item")},
                num_items=int(npz["num_items"]),
                versions={"snapshot": None},
            )
        validate(data, path)
        return data

    def subset(self, rows: np.ndarray) -> SequenceData:
        """The users at positions `rows` (e.g. one worker's shard)."""
        lengths = np.diff(self.offsets)[rows]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        # item j of the subset comes from its row's old start plus its place inside the row
        source = np.repeat(self.offsets[rows] - offsets[:-1], lengths) + np.arange(offsets[-1], dtype=np.int64)
        items = self.items[source]
        return SequenceData(
            self.user_ids[rows],
            items,
            offsets,
            self.train_len[rows],
            self.valid_item[rows],
            self.test_item[rows],
            self.num_items,
            dict(self.versions),
        )


def _check_split(table: pa.Table, path: str) -> None:
    missing = [c for c in ("user_id", "items", *SPLIT_COLUMNS) if c not in table.column_names]
    if missing:
        raise ValueError(
            f"sequence table {path} has no leave-one-out split (missing columns {missing}); re-run `momorec ingest`"
        )
    for column in ("valid_item", "test_item"):
        nulls = table.column(column).null_count
        if nulls:
            raise ValueError(f"sequence table {path}: {nulls} users have no {column} (split is incomplete)")


@dataclass(frozen=True)
class Shard:
    """The users whose user_id % world == rank: one of `world` disjoint parts of `sequences`."""

    rank: int = 0
    world: int = 1


ALL_USERS = Shard()


@dataclass(frozen=True)
class SequenceFacts:
    """What a trainer needs of `sequences` and `item_ids` without holding a user's history."""

    users: int
    num_items: int  # N, the largest item id
    max_user_id: int
    trainable_users: int  # users with at least min_train_items training items
    versions: dict[str, int | None]


def _num_items(item_ids_path: str) -> int:
    from momorec.storage import delta

    item_ids = delta.read(item_ids_path, columns=["item_id"]).column("item_id")
    if len(item_ids) == 0:
        raise ValueError(f"item_ids table {item_ids_path} is empty")
    return int(pc.max(item_ids).as_py())


def _check_tables(sequences_path: str, item_ids_path: str) -> dict[str, int | None]:
    """The two tables' versions; FileNotFoundError naming the one that is missing."""
    from momorec.storage import delta  # deltalake only where tables are read (not on a bare GPU box)

    for name, path in (("sequences", sequences_path), ("item_ids", item_ids_path)):
        if not delta.exists(path):
            raise FileNotFoundError(f"no Delta table `{name}` at {path}: run `momorec ingest` first")
    return {"sequences": delta.version(sequences_path), "item_ids": delta.version(item_ids_path)}


def _sequence_batches(sequences_path: str, columns: list[str]):
    """The current snapshot of `sequences`, `columns` only, one Parquet record batch at a time."""
    import pyarrow.dataset as pads

    from momorec.storage import delta, objectstore

    missing = [c for c in columns if c not in delta.column_names(sequences_path)]
    if missing:
        raise ValueError(
            f"sequence table {sequences_path} has no leave-one-out split (missing columns {missing}); "
            "re-run `momorec ingest`"
        )
    uris = delta.file_uris(sequences_path)
    if not uris:
        return iter(())
    fs, paths = objectstore.filesystem_paths(uris)
    return pads.dataset(paths, filesystem=fs, format="parquet").to_batches(columns=columns)


def scan_sequences(sequences_path: str, item_ids_path: str, min_train_items: int = 2) -> SequenceFacts:
    """Count `sequences`' users, trainable users and largest user id in one pass over two of its columns, a
    record batch at a time: memory is one batch, whatever the number of users."""
    versions = _check_tables(sequences_path, item_ids_path)
    users = trainable = max_user = 0
    for batch in _sequence_batches(sequences_path, ["user_id", "train_items"]):
        users += batch.num_rows
        if batch.num_rows:
            max_user = max(max_user, int(pc.max(batch.column("user_id")).as_py()))
            lengths = pc.list_value_length(batch.column("train_items"))
            trainable += int(pc.sum(pc.greater_equal(lengths, min_train_items)).as_py() or 0)
    if users == 0:
        raise ValueError(f"sequence table {sequences_path} is empty: no user to train on")
    return SequenceFacts(users, _num_items(item_ids_path), max_user, trainable, versions)


def changed_users(sequences_path: str, since_version: int) -> np.ndarray | None:
    """The users whose `sequences` row (their whole history) differs from their row at `since_version`, or who had
    none then; sorted ids. None when that version cannot be read (its log was cleaned up). Only the data files the
    two snapshots do not share are read (`core.table_changes`)."""
    from momorec.core.table_changes import changed_rows

    changed = changed_rows(sequences_path, since_version, ["user_id"], ["items"])
    if changed is None:
        return None
    return np.unique(np.asarray(changed.column("user_id").to_numpy(), dtype=np.int64))


def load_sequences(
    sequences_path: str, item_ids_path: str, shard: Shard = ALL_USERS, selection: UserSelection = EVERYONE
) -> SequenceData:
    """Read and check `sequences` (the users of `shard` that `selection` keeps, read batch by batch: a worker holds
    its own part, never the table) and `item_ids`; raises ValueError / FileNotFoundError that say what is wrong."""
    versions = _check_tables(sequences_path, item_ids_path)
    num_items = _num_items(item_ids_path)
    parts = []
    for batch in _sequence_batches(sequences_path, list(SEQUENCE_COLUMNS)):
        users = np.asarray(batch.column("user_id").to_numpy(zero_copy_only=False))
        mine = selection.keep(users)
        if shard.world > 1:
            mine &= users % shard.world == shard.rank
        parts.append(batch if mine.all() else batch.filter(pa.array(mine)))
    table = pa.Table.from_batches(parts) if parts else None
    if table is None or (table.num_rows == 0 and shard.world == 1 and selection.everyone):
        raise ValueError(f"sequence table {sequences_path} is empty: no user to train on")
    data = checked_batch(table.sort_by("user_id"), num_items, sequences_path)
    data.versions = versions
    return data


def checked_batch(table: pa.Table, num_items: int, where: str) -> SequenceData:
    """`sequence_batch` of rows whose split is complete and whose ids and split `validate` accepts (raises
    ValueError naming `where` otherwise): what every reader of `sequences`, whole or a batch, goes through."""
    _check_split(table, where)
    data = sequence_batch(table, num_items)
    validate(data, where)
    return data


def sequence_batch(table: pa.Table | pa.RecordBatch, num_items: int) -> SequenceData:
    """Rows of `sequences` (SEQUENCE_COLUMNS, any users, any order) as a SequenceData: what each scoring batch
    sees. Row order is kept (load_sequences sorts by user first)."""
    users = np.asarray(table.column("user_id").to_numpy(), dtype=np.int64)
    items_col = table.column("items")
    if isinstance(items_col, pa.ChunkedArray):
        items_col = items_col.combine_chunks()
    offsets = items_col.offsets.to_numpy().astype(np.int64)
    items = items_col.values.to_numpy().astype(np.int64)[offsets[0] : offsets[-1]]
    offsets = offsets - offsets[0]
    train_len = np.asarray(
        pc.list_value_length(table.column("train_items")).to_numpy(zero_copy_only=False), dtype=np.int64
    )
    return SequenceData(
        user_ids=users,
        items=items,
        offsets=offsets,
        train_len=train_len,
        valid_item=np.asarray(table.column("valid_item").to_numpy(), dtype=np.int64),
        test_item=np.asarray(table.column("test_item").to_numpy(), dtype=np.int64),
        num_items=num_items,
    )


def validate(data: SequenceData, where: str = "sequences") -> None:
    """Ids in range, users unique, and train/valid/test consistent with the whole history."""
    if data.items.size and (data.items.min() < 1 or data.items.max() > data.num_items):
        bad = data.items[(data.items < 1) | (data.items > data.num_items)]
        raise ValueError(
            f"{where}: {bad.size} item ids lie outside the embedding range 1..{data.num_items} (e.g. {int(bad[0])})"
        )
    if data.user_ids.size and data.user_ids.min() < 1:
        raise ValueError(f"{where}: user ids must start at 1 (0 is padding), found {int(data.user_ids.min())}")
    if np.unique(data.user_ids).size != data.user_ids.size:
        raise ValueError(f"{where}: a user appears more than once")
    lengths = np.diff(data.offsets)
    if np.any(lengths != data.train_len + 2):
        raise ValueError(f"{where}: train_items is not items[:-2] for some users (length mismatch)")
    last = data.offsets[1:] - 1
    if np.any(data.items[last] != data.test_item) or np.any(data.items[last - 1] != data.valid_item):
        raise ValueError(f"{where}: valid_item/test_item are not the last two items of some users")


def windows(items: np.ndarray, starts: np.ndarray, counts: np.ndarray, width: int, left: bool = True) -> np.ndarray:
    """(R, width) int64: row r holds the newest min(counts[r], width) of items[starts[r] : starts[r] + counts[r]],
    oldest first, padded with 0 on the left (`left`) or the right. One gather for all rows: no loop per user."""
    starts = np.asarray(starts, dtype=np.int64)
    n = np.minimum(np.asarray(counts, dtype=np.int64), width)
    out = np.zeros((starts.size, width), dtype=np.int64)
    total = int(n.sum())
    if total == 0:
        return out
    # element e of the output stream (row r, e - begin[r] inside it) comes from first[r] + (e - begin[r])
    # and goes to r * width + pad[r] + (e - begin[r]): two repeats of per-row shifts, one gather, one scatter
    begin = np.cumsum(n) - n
    pad = width - n if left else np.zeros_like(n)
    stream = np.arange(total)
    source = stream + np.repeat(starts + counts - n - begin, n)
    target = stream + np.repeat(np.arange(starts.size) * width + pad - begin, n)
    out.reshape(-1)[target] = items[source]
    return out


@dataclass(frozen=True)
class TrainingRows:
    """The training rows of a SequenceData, kept as views of its CSR arrays and padded one batch at a time.

    Row r is user user_ids[r]'s newest `width` training items (items[starts[r] : starts[r] + counts[r]]). Padding
    every row up front would hold users x width x 8 bytes (2M users x 51: 816 MB at scale L) beside the histories
    themselves; a batch pads only its own rows (`batch`)."""

    items: np.ndarray
    starts: np.ndarray
    counts: np.ndarray
    user_ids: np.ndarray
    width: int

    def __len__(self) -> int:
        return int(self.user_ids.size)

    @property
    def lengths(self) -> np.ndarray:
        """(R,) the unpadded length of each row's window."""
        return np.minimum(self.counts, self.width)

    def batch(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """{"seq": (len(rows), width) int64 left-padded, "user_id": (len(rows),)} of the rows at positions `rows`."""
        return {
            "seq": windows(self.items, self.starts[rows], self.counts[rows], self.width),
            "user_id": self.user_ids[rows],
        }

    def padded(self) -> dict[str, np.ndarray]:
        """Every row padded at once (small data: tests, benchmarks on Beauty)."""
        return self.batch(np.arange(len(self)))


def training_rows(data: SequenceData, max_len: int, min_train_items: int = 2) -> TrainingRows:
    """The newest max_len+1 training items of each user with at least `min_train_items` of them (the model reads
    max_len and predicts each next one). Raises ValueError when nobody qualifies (empty training set)."""
    keep = np.flatnonzero(data.train_len >= min_train_items)
    if keep.size == 0:
        raise ValueError(f"empty training set: no user has {min_train_items} or more training items")
    return TrainingRows(data.items, data.offsets[keep], data.train_len[keep], data.user_ids[keep], max_len + 1)


def scoring_batch(data: SequenceData, rows: np.ndarray, split: str, max_len: int) -> dict[str, np.ndarray]:
    """Inputs for scoring users `rows` on one split: {"history": (b, max_len), "user_id": (b,), "target": (b,)}.

    valid: history = train_items, target = valid_item. test: history = train_items + valid_item,
    target = test_item. The excluded items (whole history, not only the newest max_len) come from
    `excluded_items`. Built per batch, so scoring never holds every user's padded history.
    """
    if split not in ("valid", "test"):
        raise ValueError(f"unknown split {split!r} (valid | test)")
    before = data.train_len[rows] + (1 if split == "test" else 0)
    target = data.valid_item if split == "valid" else data.test_item
    return {
        "history": windows(data.items, data.offsets[rows], before, max_len),
        "user_id": data.user_ids[rows],
        "target": target[rows],
    }


def excluded_items(data: SequenceData, rows: np.ndarray, split: str) -> np.ndarray:
    """Whole history before the target of users `rows`, right-padded with 0: (len(rows), H) int64."""
    before = data.train_len[rows] + (1 if split == "test" else 0)
    width = max(int(before.max()) if rows.size else 0, 1)
    return windows(data.items, data.offsets[rows], before, width, left=False)


def seen_items(data: SequenceData, rows: np.ndarray) -> list[np.ndarray]:
    """Every item each user ever interacted with (for drawing sampled negatives)."""
    return [data.items[data.offsets[r] : data.offsets[r + 1]] for r in rows]


def pad_train_items(batch: dict[str, np.ndarray], max_len: int) -> dict[str, np.ndarray]:
    """Ray Data map_batches: {"user_id", "train_items" (lists)} -> {"user_id", "seq" (B, max_len+1)}."""
    lists = batch["train_items"]
    seq = np.zeros((len(lists), max_len + 1), dtype=np.int64)
    for row, items in enumerate(lists):
        chunk = np.asarray(items, dtype=np.int64)[-(max_len + 1) :]
        if chunk.size:
            seq[row, max_len + 1 - chunk.size :] = chunk
    return {"user_id": np.asarray(batch["user_id"], dtype=np.int64), "seq": seq}
