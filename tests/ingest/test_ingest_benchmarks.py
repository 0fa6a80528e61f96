"""Ingest of the full benchmark data in ../shared/datasets (skips only when ../shared is absent)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from momorec.storage import delta
from tests.conftest import REPO, shared_dataset

pytestmark = [pytest.mark.spark, pytest.mark.shared_data, pytest.mark.slow]


def test_beauty_cli_json_reports_the_published_statistics_and_a_correct_split(spark, tmp_path, tracking_env):
    sequences = shared_dataset("amazon-beauty", "sequences.txt")
    # The real CLI in a subprocess, as a user runs it.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "momorec.cli",
            "ingest",
            "--config",
            str(REPO / "configs/beauty.yaml"),
            "--set",
            f"warehouse={tmp_path / 'wh'}",
            "--set",
            "spark.master=local[2]",
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (result["users"], result["items"], result["interactions"]) == (22_363, 12_101, 198_502)
    assert result["rows_rejected"] == 0 and result["conservation_ok"]

    root = tmp_path / "wh" / "beauty"
    item_ids = dict(delta.read(str(root / "item_ids")).to_pandas()[["item", "item_id"]].itertuples(index=False))
    user_ids = dict(delta.read(str(root / "user_ids")).to_pandas()[["user", "user_id"]].itertuples(index=False))
    seqs = delta.read(str(root / "sequences")).to_pandas().set_index("user_id")
    lines = [line.split() for line in sequences.read_text().splitlines()]
    rng = np.random.default_rng(0)
    for index in rng.choice(len(lines), size=500, replace=False):
        user, *items = lines[index]
        row = seqs.loc[user_ids[user]]
        assert list(row["items"]) == [item_ids[i] for i in items]
        assert row["valid_item"] == item_ids[items[-2]] and row["test_item"] == item_ids[items[-1]]
        assert list(row["train_items"]) == [item_ids[i] for i in items[:-2]]
    items = delta.read(str(root / "items")).to_pandas()
    assert items["has_catalog"].all() and items["title"].str.len().gt(0).all()


def test_movielens_events_are_ordered_by_timestamp(spark, tmp_path, tracking_env):
    inter_file = shared_dataset("movielens-100k", "ml-100k.inter")
    from momorec.config import load_config
    from momorec.ingest.stage import run_ingest

    cfg = load_config(REPO / "configs/ml100k.yaml", [f"warehouse={tmp_path / 'wh'}", "spark.master=local[2]"])
    result = run_ingest(cfg, show_progress=False)
    assert (result.users, result.items, result.interactions) == (943, 1682, 100_000)
    assert result.conservation_ok

    raw = pd.read_csv(inter_file, sep="\t")
    raw.columns = [c.split(":")[0] for c in raw.columns]
    raw["line"] = np.arange(1, len(raw) + 1)
    user_ids = dict(delta.read(cfg.table_path("user_ids")).to_pandas()[["user", "user_id"]].itertuples(index=False))
    item_ids = dict(delta.read(cfg.table_path("item_ids")).to_pandas()[["item", "item_id"]].itertuples(index=False))
    seqs = delta.read(cfg.table_path("sequences")).to_pandas().set_index("user_id")
    for user in ["196", "1", "405", "943"]:
        events = raw[raw["user_id"].astype(str) == user].sort_values(["timestamp", "line"])
        expected = [item_ids[str(i)] for i in events["item_id"]]
        assert list(seqs.loc[user_ids[user], "items"]) == expected
    titles = delta.read(cfg.table_path("items")).to_pandas().set_index("item")
    assert titles.loc["1", "title"] == "Toy Story"
