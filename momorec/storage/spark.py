"""The Spark session, built from config; Delta snapshots into Spark and Spark results into Delta.

Spark reaches an object store only through its Hadoop connectors (hadoop-aws for s3a://). Where the
jars are there (a cluster image), Spark reads the tables' files and writes its staging files on the
store itself; where they are not (this machine: no Maven), the driver relays the files, and staging is
a local temporary folder. Tables are committed by delta-rs either way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator

from momorec.config import SparkConfig
from momorec.storage import delta, objectstore
from momorec.storage.locations import is_uri

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


def for_spark(location: str) -> str:
    """The location as Spark's Hadoop file systems name it (`s3://` is `s3a://` there)."""
    return "s3a://" + location[len("s3://") :] if location.startswith("s3://") else location


def reaches(spark, location: str) -> bool:
    """Whether Spark has a file system for the location's scheme (hadoop-aws for s3a, the GCS or Azure
    connector): without its jars Spark cannot read or write there, and the driver relays the files."""
    if not is_uri(location) or location.startswith("file://"):
        return True
    scheme = for_spark(location).split("://", 1)[0]
    known = _schemes.setdefault(id(spark), {})
    if scheme not in known:
        jvm = spark.sparkContext._jvm
        try:
            jvm.org.apache.hadoop.fs.FileSystem.getFileSystemClass(
                scheme, spark.sparkContext._jsc.hadoopConfiguration()
            )
            known[scheme] = True
        except Exception:
            log.warning(
                "Spark has no file system for %s:// (add its connector jars, e.g. hadoop-aws, on a cluster); "
                "the driver copies Delta files between Spark and the store",
                scheme,
            )
            known[scheme] = False
    return known[scheme]


_schemes: dict[int, dict[str, bool]] = {}


@contextlib.contextmanager
def run_staging(spark, staging_root: str) -> Iterator[str]:
    """A staging folder that only this run writes, removed afterwards (two runs never share one).

    Under `staging_root` (the warehouse's `_staging`) when Spark can write there; else a local
    temporary folder, which only this process's Spark needs.
    """
    token = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"
    if reaches(spark, staging_root):
        folder = objectstore.join(staging_root, token)
    else:
        folder = tempfile.mkdtemp(prefix=f"momorec-staging-{token}-")
    try:
        yield folder
    finally:
        objectstore.delete(folder)


def read_delta(spark, path: str, staging: str):
    """The current snapshot of a Delta table as a Spark DataFrame, from the log's file list.

    Files Spark cannot reach are first copied into `staging` (which must outlive the DataFrame).
    """
    uris = delta.file_uris(path)
    if not uris:
        schema = delta.read(path).schema
        return spark.createDataFrame([], schema=_spark_schema(spark, schema))
    if not reaches(spark, uris[0]):
        copies = objectstore.join(staging, "read", uuid.uuid4().hex[:8])
        local = []
        for number, uri in enumerate(uris):
            target = objectstore.join(copies, f"part-{number:05d}.parquet")
            objectstore.write_bytes(target, objectstore.read_bytes(uri))
            local.append(target)
        uris = local
    return spark.read.parquet(*[for_spark(u) for u in uris])


def _spark_schema(spark, arrow_schema):
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(arrow_schema)


def write_delta(df, path: str, schema, staging: str, mode: str = "overwrite", skip_unchanged: bool = False) -> int:
    """Commit a Spark DataFrame to the Delta table at `path` with the Arrow `schema` of its contract.

    Spark writes Parquet to a folder of this run's `staging` in parallel; delta-rs streams those files
    into one atomic commit (the driver never holds the whole table), casting each batch to the contract.
    skip_unchanged (overwrite only): when the table already holds exactly these rows, commit
    nothing and return the current version (see `delta.holds_rows`).
    """
    import pyarrow as pa
    import pyarrow.dataset as pads

    staged = objectstore.join(staging, "write", objectstore.name(path))
    objectstore.delete(staged)
    df.select(*schema.names).write.mode("overwrite").parquet(for_spark(staged))
    files = objectstore.list_files(staged, suffix=".parquet")
    try:
        dataset = None
        if files:
            fs, _ = objectstore.filesystem(files[0])
            dataset = pads.dataset([objectstore.filesystem(f)[1] for f in files], format="parquet", filesystem=fs)
        if skip_unchanged and mode == "overwrite":
            rows = dataset.count_rows() if dataset is not None else 0
            staged_rows = dataset.to_table().cast(schema) if dataset is not None else schema.empty_table()
            if rows <= delta.COMPARE_MAX_ROWS and delta.holds_rows(path, staged_rows):
                return delta.version(path)
        if dataset is None:
            return delta.write(path, schema.empty_table(), mode=mode)

        def stream() -> pa.RecordBatchReader:  # a fresh one for each commit attempt
            batches = (
                batch
                for raw in dataset.scanner().to_batches()
                for batch in pa.Table.from_batches([raw]).cast(schema).to_batches()
            )
            return pa.RecordBatchReader.from_batches(schema, batches)

        return delta.write(path, stream, mode=mode)
    finally:
        objectstore.delete(staged)
