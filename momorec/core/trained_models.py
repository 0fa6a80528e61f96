"""Reading the `trained_models` table (one row per seed of a train run): which run, which seed."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from momorec.config import PlatformConfig
from momorec.storage import delta


def run_models(cfg: PlatformConfig, train_run_id: str | None = None) -> pa.Table:
    """The rows of `train_run_id`, or of the newest train run when None; a clear error when there are none."""
    path = cfg.table_path("trained_models")
    if not delta.exists(path):
        raise FileNotFoundError(f"no trained models at {path}: run `momorec train` first")
    table = delta.read(path)
    if train_run_id is None:
        train_run_id = table.column("train_run_id")[int(table.column("created_at").to_numpy().argmax())].as_py()
    table = table.filter(pc.equal(table.column("train_run_id"), train_run_id))
    if table.num_rows == 0:
        raise ValueError(f"train run {train_run_id} has no models in {path}")
    return table


def best_seed(rows: list[dict]) -> dict:
    """The row whose model scored the best validation NDCG@10 (full ranking): the one a run serves."""
    return max(rows, key=lambda r: r["valid_ndcg_10"])
