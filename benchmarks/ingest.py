"""Ingest throughput on full Amazon Beauty: wall time and rows/s of a cold ingest, and of a no-op re-run.

    .venv/bin/python benchmarks/ingest.py [--config configs/beauty.yaml]

Writes benchmarks/results/ingest.json and prints it. The warehouse and MLflow store go to a temporary
folder so the run measures a first ingest.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs/beauty.yaml"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/ingest.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
        from momorec.config import load_config
        from momorec.ingest.stage import run_ingest
        from momorec.storage.spark import get_spark

        cfg = load_config(args.config, [f"warehouse={tmp}/warehouse"])
        t0 = time.perf_counter()
        get_spark(cfg.spark)
        spark_start = time.perf_counter() - t0

        t0 = time.perf_counter()
        first = run_ingest(cfg, show_progress=False)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = run_ingest(cfg, show_progress=False)
        rerun = time.perf_counter() - t0

    figures = {
        "benchmark": "ingest",
        "config": os.path.relpath(args.config, ROOT),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "spark_master": cfg.spark.master,
        "spark_start_s": round(spark_start, 2),
        "rows_read": first.rows_read,
        "users": first.users,
        "items": first.items,
        "interactions": first.interactions,
        "rows_rejected": first.rows_rejected,
        "ingest_wall_s": round(cold, 2),
        "rows_per_s": round(first.rows_read / cold, 1),
        "rerun_unchanged": again.unchanged,
        "rerun_wall_s": round(rerun, 2),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
