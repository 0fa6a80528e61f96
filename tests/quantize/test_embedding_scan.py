"""EmbeddingScan: the validation of embeddings_from_arrow over Parquet files read a batch at a time, and the
vectors read back exactly, while holding one batch (the quantize stage's bounded-memory input)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from momorec.quantize.inputs import embeddings_from_arrow, scan_embeddings


def _table(rng, n: int) -> pa.Table:
    """Rows with every reject reason, duplicates across files, ids in no order."""
    ids = rng.permutation(n).astype(np.int64) + 10
    ids[::17] = ids[1::17][: len(ids[::17])]  # duplicate ids, some across file boundaries
    vectors = rng.standard_normal((n, 6)).astype(np.float32)
    embedding = [list(v) for v in vectors]
    for row in range(0, n, 13):
        embedding[row] = embedding[row][:4]  # wrong dim
    for row in range(5, n, 29):
        embedding[row][2] = float("nan")
    for row in range(7, n, 31):
        embedding[row] = None
    status = ["failed" if r % 11 == 3 else "ok" for r in range(n)]
    table = pa.table(
        {"item_id": pa.array(ids), "status": status, "embedding": pa.array(embedding, pa.list_(pa.float32()))}
    )
    return table.set_column(0, "item_id", pa.array(np.where(np.arange(n) % 37 == 9, None, ids), pa.int64()))


def test_a_scan_of_the_files_equals_validating_the_whole_table(tmp_path):
    rng = np.random.default_rng(3)
    table = _table(rng, 500)
    paths = []
    for k, start in enumerate(range(0, 500, 180)):
        path = str(tmp_path / f"part-{k}.parquet")
        part = table.slice(start, 180)
        if k == 1:  # as a MERGE writes it: strings as string_view
            part = part.set_column(1, "status", part.column("status").cast(pa.string_view()))
        pq.write_table(part, path)
        paths.append(path)
    whole = embeddings_from_arrow(table, "item_id")
    scan = scan_embeddings(paths, pafs.LocalFileSystem(), "item_id", batch_rows=64)
    assert scan.ids.tolist() == whole.ids.tolist() and scan.dim == whole.dim == 6
    assert scan.rejects == whole.rejects and all(whole.rejects.values())
    assert scan.rejected_ids == whole.rejected_ids
    assert scan.rows_in == 500 == len(scan.ids) + scan.rows_rejected
    np.testing.assert_array_equal(scan.gather(np.ones(len(scan.ids), bool)), whole.vectors)

    mask = rng.random(len(scan.ids)) < 0.3
    np.testing.assert_array_equal(scan.gather(mask), whole.vectors[mask])
    seen = np.zeros(len(scan.ids), bool)
    for rows, vectors in scan.batches(mask):
        assert len(rows) <= 64, "a batch is at most one file batch"
        np.testing.assert_array_equal(vectors, whole.vectors[rows])
        seen[rows] = True
    np.testing.assert_array_equal(seen, mask)
    strict = scan_embeddings(paths, pafs.LocalFileSystem(), "item_id", expected_dim=4)
    assert strict.rejects == embeddings_from_arrow(table, "item_id", expected_dim=4).rejects
