"""Which rows of a real Delta table changed between two versions (core.table_changes): composite keys, string and
list columns, rows rewritten unchanged, and a version whose log is gone."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from momorec.core.table_changes import changed_rows, row_signatures
from momorec.storage import delta

SCHEMA = pa.schema(
    [("entity_type", pa.string()), ("entity_id", pa.int64()), ("codes", pa.list_(pa.int32())), ("text", pa.string())]
)


def _rows(rows: list[tuple]) -> pa.Table:
    return pa.Table.from_pylist([dict(zip(SCHEMA.names, r, strict=True)) for r in rows], schema=SCHEMA)


def test_signatures_change_with_any_compared_value_and_only_with_them():
    batch = pa.RecordBatch.from_pylist(
        [
            {"codes": [1, 2], "text": "a"},
            {"codes": [2, 1], "text": "a"},
            {"codes": [1, 2], "text": "b"},
            {"codes": [1, 2], "text": None},
            {"codes": [1, 2], "text": "a"},
        ],
        schema=SCHEMA.remove(0).remove(0),
    )
    both = row_signatures(batch, ["codes", "text"])
    assert both[0] == both[4] and len(set(both[:4].tolist())) == 4  # order, text and null all count
    codes_only = row_signatures(batch, ["codes"])
    assert codes_only[0] == codes_only[2] == codes_only[3] != codes_only[1]


def test_changed_rows_finds_new_and_changed_keys_from_the_rewritten_files(tmp_path):
    path = str(tmp_path / "ids")
    items = [("item", i, [i % 3, i % 5], f"t{i}") for i in range(1, 31)]
    users = [("user", i, [i % 2, 1], "") for i in range(1, 31)]  # the same ids as items, another entity
    delta.write(path, _rows(items), mode="overwrite")
    delta.write(path, _rows(users), mode="append")
    since = delta.version(path)
    # item 7's codes change, item 8 is rewritten the same, user 7's text changes, item 31 is new
    night = [
        ("item", 7, [9, 9], "t7"),
        ("item", 8, [8 % 3, 8 % 5], "t8"),
        ("user", 7, [1, 1], "new"),
        ("item", 31, [0, 0], "t31"),
    ]
    delta.upsert(path, _rows(night), keys=["entity_type", "entity_id"])
    changed = changed_rows(path, since, ["entity_type", "entity_id"], ["codes", "text"])
    assert sorted(zip(*changed.to_pydict().values(), strict=True)) == [("item", 7), ("item", 31), ("user", 7)]
    codes = changed_rows(path, since, ["entity_type", "entity_id"], ["codes"])
    assert sorted(zip(*codes.to_pydict().values(), strict=True)) == [("item", 7), ("item", 31)]
    assert changed_rows(path, delta.version(path), ["entity_id"], ["codes"]).num_rows == 0
    assert (
        changed_rows(path, delta.version(path), ["entity_id"], ["codes"]).schema.field("entity_id").type == pa.int64()
    )
    assert changed_rows(path, 99, ["entity_id"], ["codes"]) is None, "an unreadable version: the caller redoes all"
    assert np.array_equal(np.sort(changed.column("entity_id").to_numpy()), [7, 7, 31])
