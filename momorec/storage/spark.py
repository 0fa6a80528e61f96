"""The Spark session, built from config; and reading Delta snapshots into Spark."""

from __future__ import annotations

import logging
import os
import sys

from momorec.config import SparkConfig
from momorec.storage import delta

log = logging.getLogger(__name__)


def get_spark(cfg: SparkConfig):
    """A Spark session for `cfg` (reused when one is already running in this process)."""
    # Executors must run the same interpreter as the driver, or local workers pick a bare python.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master(cfg.master)
        .appName(cfg.app_name)
        .config("spark.driver.memory", cfg.driver_memory)
        .config("spark.sql.shuffle.partitions", str(cfg.shuffle_partitions))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.ansi.enabled", "false")
    )
    for key, value in cfg.conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def read_delta(spark, path: str):
    """The current snapshot of a Delta table as a Spark DataFrame, from the log's file list."""
    uris = delta.file_uris(path)
    if not uris:
        schema = delta.read(path).schema
        return spark.createDataFrame([], schema=_spark_schema(spark, schema))
    return spark.read.parquet(*uris)


def _spark_schema(spark, arrow_schema):
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(arrow_schema)


def write_delta(df, path: str, schema, staging: str, mode: str = "overwrite", skip_unchanged: bool = False) -> int:
    """Commit a Spark DataFrame to the Delta table at `path` with the Arrow `schema` of its contract.

    Spark writes Parquet to a staging folder in parallel; delta-rs streams those files into one
    atomic commit (the driver never holds the whole table), casting each batch to the contract.
    skip_unchanged (overwrite only): when the table already holds exactly these rows, commit
    nothing and return the current version (see `delta.holds_rows`).
    """
    import shutil

    import pyarrow as pa
    import pyarrow.dataset as pads

    shutil.rmtree(staging, ignore_errors=True)
    df.select(*schema.names).write.mode("overwrite").parquet(staging)
    files = sorted(
        os.path.join(staging, f) for f in os.listdir(staging) if f.endswith(".parquet") and not f.startswith(("_", "."))
    )
    if files:
        scanner = pads.dataset(files, format="parquet").scanner()
        batches = (
            batch for raw in scanner.to_batches() for batch in pa.Table.from_batches([raw]).cast(schema).to_batches()
        )
        data = pa.RecordBatchReader.from_batches(schema, batches)
    else:
        data = schema.empty_table()
    if skip_unchanged and mode == "overwrite":
        staged = pads.dataset(files, format="parquet") if files else None
        rows = staged.count_rows() if staged is not None else 0
        if rows <= delta.COMPARE_MAX_ROWS and delta.holds_rows(
            path, staged.to_table().cast(schema) if staged is not None else schema.empty_table()
        ):
            shutil.rmtree(staging, ignore_errors=True)
            return delta.version(path)
    version = delta.write(path, data, mode=mode)
    shutil.rmtree(staging, ignore_errors=True)
    return version
