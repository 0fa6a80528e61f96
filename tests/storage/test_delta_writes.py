"""delta.write's replace_where: the rows a predicate matches are replaced in one commit, the rest kept."""

from __future__ import annotations

import pyarrow as pa
import pytest

from momorec.storage import delta


def _ranks(run: str, model: str, users: list[int]) -> pa.Table:
    return pa.table({"eval_run_id": [run] * len(users), "train_run_id": [model] * len(users), "user_id": users})


def test_replace_where_replaces_only_the_matching_rows_in_one_commit(tmp_path):
    path = str(tmp_path / "ranks")
    first = delta.write(path, _ranks("e1", "m1", [1, 2]), mode="append", replace_where="train_run_id = 'm1'")
    delta.write(path, _ranks("e2", "m2", [1, 2]), mode="append", replace_where="train_run_id = 'm2'")
    # a re-run for m1 (say, after a killed evaluate committed and died) takes the place of e1's rows
    last = delta.write(path, _ranks("e3", "m1", [1, 2, 3]), mode="append", replace_where="train_run_id = 'm1'")
    assert last == first + 2
    rows = sorted((r["train_run_id"], r["eval_run_id"], r["user_id"]) for r in delta.read(path).to_pylist())
    assert rows == [("m1", "e3", 1), ("m1", "e3", 2), ("m1", "e3", 3), ("m2", "e2", 1), ("m2", "e2", 2)]


def test_replace_where_refuses_rows_outside_its_predicate(tmp_path):
    path = str(tmp_path / "ranks")
    delta.write(path, _ranks("e1", "m1", [1]))
    with pytest.raises(Exception, match="failed validation"):
        delta.write(path, _ranks("e2", "m2", [1]), mode="append", replace_where="train_run_id = 'm1'")
    assert delta.read(path).num_rows == 1
