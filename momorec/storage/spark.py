"""The Spark session, built from config; Delta snapshots into Spark and Spark results into Delta.

Spark reaches an object store only through its Hadoop connectors (hadoop-aws for s3a://). Where the
jars are there (a cluster image), Spark reads the tables' files and writes new data files into the
tables' folders on the store itself; where they are not (this machine: no Maven), the driver copies
whole files (never rows) between a local staging folder and the store. Either way delta-rs commits the
files Spark wrote as add (and remove) actions: rows never stream through the driver.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator

from deltalake.transaction import RemoveAction
from pyspark.sql import functions as F

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


def read_delta(spark, path: str, staging: str, with_file: bool = False):
    """The current snapshot of a Delta table as a Spark DataFrame, from the log's file list.

    Files Spark cannot reach are first copied into `staging` (which must outlive the DataFrame), under
    their own names. with_file: a `_file` column holds each row's data file (its path in the table), for
    rewrites file by file (`replace_rows`).
    """
    files = delta.data_files(path)
    if not files:
        schema = delta.read(path).schema
        frame = spark.createDataFrame([], schema=_spark_schema(spark, schema))
        return frame.withColumn("_file", F.lit(None).cast("string")) if with_file else frame
    uris = [uri for _, uri in files]
    if not reaches(spark, uris[0]):
        copies = objectstore.join(staging, "read", uuid.uuid4().hex[:8])
        local = []
        for uri in uris:
            target = objectstore.join(copies, objectstore.name(uri))
            _copy_file(uri, target)
            local.append(target)
        uris = local
    frame = spark.read.parquet(*[for_spark(u) for u in uris])
    if not with_file:
        return frame
    names = spark.createDataFrame([(rel.rsplit("/", 1)[-1], rel) for rel, _ in files], "_name string, _file string")
    return frame.withColumn("_name", F.col("_metadata.file_name")).join(F.broadcast(names), "_name").drop("_name")


def _spark_schema(spark, arrow_schema):
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(arrow_schema)


def _copy_file(source: str, target: str) -> None:
    """Copy one file between locations in 8 MB pieces (never the whole file in memory)."""
    source_fs, source_path = objectstore.filesystem(source)
    target_fs, target_path = objectstore.filesystem(target)
    objectstore.make_dirs(objectstore.parent(target))
    with source_fs.open_input_stream(source_path) as src, target_fs.open_output_stream(target_path) as out:
        while chunk := src.read(8 << 20):
            out.write(chunk)


def _spark_files(df, path: str, schema, staging: str):
    """Write `df` (cast to the contract `schema`) as Parquet files inside the table's folder and return their
    add actions (path, size, row count from the footer). Spark writes there itself when it reaches the
    store; otherwise it writes to this run's local staging and the files are copied in, one at a time.
    Files of a commit that never happens are unreferenced and removed by VACUUM."""
    import pyarrow.parquet as pq
    from deltalake.transaction import AddAction

    folder = f"spark-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"
    target = objectstore.join(path, folder)
    spark_schema = _spark_schema(df.sparkSession, schema)
    frame = df.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in spark_schema.fields])
    direct = reaches(df.sparkSession, target)
    written = target if direct else objectstore.join(staging, "write", folder)
    frame.write.mode("errorifexists").parquet(for_spark(written))
    actions, now = [], int(time.time() * 1000)
    for file in objectstore.list_files(written, suffix=".parquet"):
        fs, file_path = objectstore.filesystem(file)
        with fs.open_input_file(file_path) as fh:
            rows = pq.ParquetFile(fh).metadata.num_rows
        if rows == 0:
            continue
        name = objectstore.name(file)
        if not direct:
            _copy_file(file, objectstore.join(target, name))
        actions.append(
            AddAction(
                path=f"{folder}/{name}",
                size=objectstore.size(objectstore.join(target, name)),
                partition_values={},
                modification_time=now,
                data_change=True,
                stats=json.dumps({"numRecords": rows}),
            )
        )
    if not direct:
        objectstore.delete(written)
    return actions


def write_delta(df, path: str, schema, staging: str, mode: str = "overwrite", metadata=None) -> int | None:
    """Commit a Spark DataFrame to the Delta table at `path` with the Arrow `schema` of its contract.

    Spark writes the Parquet files into the table's folder in parallel and delta-rs commits them as add
    actions in one atomic commit: no row passes through this (driver) process. append: an empty frame commits
    nothing and returns the current version (None when there is no table); overwrite always commits.
    """
    actions = _spark_files(df, path, schema, staging)
    if mode == "append" and not actions:
        return delta.version(path)
    return delta.commit_files(path, schema, actions, mode=mode, metadata=metadata)


def replace_rows(df, path: str, schema, staging: str, marked, metadata=None) -> int | None:
    """Replace some rows of a table by the rows of `df`, file by file, in one commit.

    `marked(old)` takes the table (with its `_file` column) and returns it with a boolean `_drop`: the rows to
    replace. Only the files holding such rows are rewritten (their other rows copied by Spark); the other files
    stay as they are. When the dropped rows equal the new rows (as multisets) nothing is committed and the
    current version is returned: a night that changes nothing in the table leaves its version.
    """
    spark = df.sparkSession
    old = marked(read_delta(spark, path, staging, with_file=True)).cache()
    columns = list(schema.names)
    dropped = old.filter("_drop").select(*columns)
    spark_schema = _spark_schema(spark, schema)
    new = df.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in spark_schema.fields]).cache()
    try:
        if dropped.exceptAll(new).isEmpty() and new.exceptAll(dropped).isEmpty():
            return delta.version(path)
        touched = [row["_file"] for row in old.filter("_drop").select("_file").distinct().collect()]
        kept = old.filter(F.col("_file").isin(touched) & ~F.col("_drop")).select(*columns)
        added = _spark_files(kept.unionByName(new), path, schema, staging)
        now = int(time.time() * 1000)
        removed = [RemoveAction(path=file, data_change=True, deletion_timestamp=now) for file in touched]
        return delta.commit_files(path, schema, added, removed, mode="append", metadata=metadata)
    finally:
        old.unpersist()
        new.unpersist()
