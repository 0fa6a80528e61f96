"""The keys a motivate run skips are read from files of both string types a user_motivations table holds."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from momorec.motivate.inputs import window_hash
from momorec.motivate.stage import done_keys


def _file(path, strings: pa.DataType, rows: list[tuple[int, str, str]]) -> str:
    schema = pa.schema([("user_id", pa.int64()), ("content_hash", strings), ("status", strings)])
    columns = list(zip(*rows, strict=True))
    pq.write_table(pa.table([pa.array(c, t) for c, t in zip(columns, schema.types, strict=True)], schema=schema), path)
    return str(path)


def test_merge_written_string_view_files_and_plain_files_read_together(tmp_path, ray_local):
    files = [
        _file(tmp_path / "merged.parquet", pa.string_view(), [(1, "a", "ok"), (2, "b", "failed")]),  # a MERGE's file
        _file(tmp_path / "written.parquet", pa.string(), [(3, "c", "ok")]),
    ]
    with pytest.raises(Exception, match="string_view"):  # what a read without the contract's types does
        ray_local.data.read_parquet(files).materialize()
    retried = sorted(tuple(r.values()) for r in done_keys(files, retry_failed=True, max_model_len=2048).take_all())
    assert retried == [(1, "a"), (3, "c")]  # a failed row is not done: it is retried
    assert len(done_keys(files, retry_failed=False, max_model_len=2048).take_all()) == 3


def test_a_row_another_window_shaped_is_not_done(tmp_path, ray_local):
    rows = [(1, "a", "ok"), (2, window_hash("b", 512), "ok"), (3, window_hash("c", 512), "failed")]
    files = [_file(tmp_path / "rows.parquet", pa.string(), rows)]
    same = sorted(tuple(r.values()) for r in done_keys(files, retry_failed=False, max_model_len=512).take_all())
    assert same == [(1, "a"), (2, "b"), (3, "c")]  # keyed by the plain content hash the inputs give
    other = sorted(tuple(r.values()) for r in done_keys(files, retry_failed=False, max_model_len=1024).take_all())
    assert other == [(1, "a")]
