"""The ingest stage: behaviour logs + catalog -> Delta tables, incrementally and idempotently.

Each run reads only input files it has not seen (by SHA-256), reconsiders the events still pending
a threshold (k-core, minimum length), and commits `interactions`, `sequences`, `items`, `user_ids`,
`item_ids`, `rejects` and `sources` under <warehouse>/<dataset>/. Running the same input again
commits nothing. Ids are stable: existing ids are kept, new users and items get the next ones.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

import pyarrow as pa
from pydantic import Field
from pyspark.sql import functions as F

from momorec import tracking
from momorec.config import PlatformConfig
from momorec.core.pause_points import pause_point
from momorec.ingest import parsing, readers, transforms
from momorec.ingest.config import EventSource, IngestConfig
from momorec.ingest.values import TimestampRule
from momorec.progress import step_progress
from momorec.storage import delta, objectstore, schemas
from momorec.storage.spark import get_spark, read_delta, run_staging, write_delta
from momorec.typed import StageResult

log = logging.getLogger(__name__)

TABLES = ("interactions", "sequences", "items", "user_ids", "item_ids", "rejects", "sources")
EVENT_INPUTS = ("events", "sequences")
INGEST_STEPS = ("parse", "catalog", "user_ids", "item_ids", "items", "interactions", "sequences", "rejects", "sources")


class IngestResult(StageResult):
    stage: str = "ingest"
    dataset: str
    unchanged: bool = Field(description="True when no input was new: nothing was read or written.")
    files_read: int = 0
    rows_read: int = Field(0, description="Event records read this run (a sequence line counts one per item).")
    rows_accepted: int = 0
    rows_rejected: int = 0
    rejected_by_reason: dict[str, int] = Field(default_factory=dict)
    users: int = 0
    items: int = 0
    interactions: int = 0
    catalog_rows: int = 0
    catalog_rejected: int = 0
    truncated_texts: int = 0
    catalog_issues: dict[str, int] = Field(
        default_factory=dict,
        description="Catalog fields kept as null or joined, by issue (price:unparsed, title:joined ...); the row "
        "itself is accepted.",
    )
    empty_files: list[str] = Field(
        default_factory=list, description="New input files that were empty or held only a header: zero rows each."
    )
    conservation_ok: bool = Field(True, description="rows in = accepted + rejected, this run and all runs together.")
    tables: dict[str, dict[str, str | int | None]] = Field(default_factory=dict)


def _event_files(sources: list[EventSource]) -> list[tuple[EventSource, readers.InputFile]]:
    seen: set[str] = set()
    files = []
    for source in sources:
        for path in readers.expand(source.path):
            fp = readers.fingerprint(path)
            if fp.path not in seen:
                seen.add(fp.path)
                files.append((source, fp))
    return files


def run_ingest(
    cfg: PlatformConfig, show_progress: bool = True, extra_sources: list[EventSource] | None = None
) -> IngestResult:
    """Ingest the config's sources (plus `extra_sources`, e.g. a night's new logs)."""
    start = time.perf_counter()
    paths = {name: cfg.table_path(name) for name in TABLES}
    staging_root = cfg.ingest.staging_dir or objectstore.join(cfg.dataset_root, "_staging")
    versions_before = {name: delta.version(p) for name, p in paths.items()}

    known = delta.read_or_empty(paths["sources"], schemas.SOURCES).to_pylist()
    known_sha = {(row["path"], row["sha256"]) for row in known}
    event_files = _event_files(list(cfg.ingest.sources) + list(extra_sources or []))
    if not event_files:
        raise ValueError("ingest.sources is empty: give at least one event log or sequence file")
    new_files = [(s, fp) for s, fp in event_files if (fp.path, fp.sha256) not in known_sha]
    catalog_files = []
    if cfg.ingest.catalog is not None:
        catalog_files = [readers.fingerprint(p) for p in readers.expand(cfg.ingest.catalog.path)]
    catalog_changed = any((fp.path, fp.sha256) not in known_sha for fp in catalog_files)

    with tracking.stage_run(cfg, "ingest", {"ingest": cfg.ingest.model_dump(mode="json")}) as run:
        import mlflow

        if not new_files and not catalog_changed:
            result = _unchanged_result(cfg, paths, run.info.run_id, start)
            mlflow.log_metric("unchanged", 1)
            return result
        next_batch = max((row["batch"] for row in known), default=-1) + 1
        _check_batches_fit(next_batch, len(new_files))
        spark = get_spark(cfg.spark)
        with (
            step_progress(show_progress, f"ingest {cfg.dataset}", total=len(INGEST_STEPS)) as advance,
            run_staging(spark, staging_root) as staging,
        ):
            counts = _ingest_with_spark(
                cfg, spark, paths, staging, known, new_files, catalog_files, next_batch, advance
            )
        versions_after = {name: delta.version(p) for name, p in paths.items()}
        tracking.log_table_versions(read=versions_before, written=versions_after)
        result = IngestResult(
            dataset=cfg.dataset,
            unchanged=False,
            mlflow_run_id=run.info.run_id,
            wall_time_s=round(time.perf_counter() - start, 3),
            tables={n: {"path": p, "version": versions_after[n]} for n, p in paths.items()},
            **counts,
        )
        mlflow.log_metrics({k: float(v) for k, v in counts.items() if isinstance(v, int | float | bool)})
        mlflow.log_metrics({f"rejected.{reason}": float(n) for reason, n in counts["rejected_by_reason"].items()})
        mlflow.log_metrics({f"catalog_issue.{issue}": float(n) for issue, n in counts["catalog_issues"].items()})
        mlflow.log_metric("empty_files", len(counts["empty_files"]))
        mlflow.log_metric("unchanged", 0)
        if not result.conservation_ok:
            raise RuntimeError(f"row conservation violated: {counts}")
        return result


def _check_batches_fit(next_batch: int, new_files: int) -> None:
    """Every ingested file is a batch of the event_order key; past its bound events would collide."""
    last = next_batch + new_files - 1
    if new_files and last > parsing.MAX_BATCH:
        raise parsing.EventOrderOverflow(
            f"ingest batch {last} is past the last one the event_order key holds ({parsing.MAX_BATCH}): this "
            f"warehouse has ingested {next_batch} files; concatenate new logs into fewer files, or start a new dataset"
        )


def timestamp_rule(ingest: IngestConfig) -> TimestampRule:
    return TimestampRule(min_seconds=ingest.min_timestamp, max_seconds=ingest.max_timestamp, unit=ingest.timestamp_unit)


def _unchanged_result(cfg: PlatformConfig, paths: dict[str, str], run_id: str, start: float) -> IngestResult:
    seqs = delta.read(paths["sequences"], columns=["user_id"]) if delta.exists(paths["sequences"]) else None
    items = delta.read(paths["item_ids"], columns=["item_id"]) if delta.exists(paths["item_ids"]) else None
    inter = delta.read(paths["interactions"], columns=["item_id"]) if delta.exists(paths["interactions"]) else None
    return IngestResult(
        dataset=cfg.dataset,
        unchanged=True,
        mlflow_run_id=run_id,
        wall_time_s=round(time.perf_counter() - start, 3),
        users=seqs.num_rows if seqs is not None else 0,
        items=items.num_rows if items is not None else 0,
        interactions=inter.num_rows if inter is not None else 0,
        tables={n: {"path": p, "version": delta.version(p)} for n, p in paths.items()},
    )


def _read_table(spark, path: str, schema, staging: str):
    """A Delta table as a Spark DataFrame, or an empty frame of its contract on the first run."""
    if delta.exists(path):
        return read_delta(spark, path, staging)
    from pyspark.sql.pandas.types import from_arrow_schema

    return spark.createDataFrame([], from_arrow_schema(schema))


def _ingest_with_spark(cfg, spark, paths, staging, known, new_files, catalog_files, next_batch, advance):
    new_sources = [fp.path for _, fp in new_files]

    # 1. Parse the new files: every line becomes events or a reject.
    parsed = None
    timestamps = timestamp_rule(cfg.ingest)
    for batch, (source, fp) in enumerate(new_files, start=next_batch):
        frame = (
            readers.read_events(spark, source, fp.path, batch, timestamps)
            .withColumn("source", F.lit(fp.path))
            .withColumn("input", F.lit(source.kind))
        )
        parsed = frame if parsed is None else parsed.unionByName(frame)
    if parsed is not None:
        parsed = parsed.cache()
        read_per_file = {r["source"]: r["count"] for r in parsed.groupBy("source").count().collect()}
        new_events = parsed.filter("kind = 'event'").select(*transforms.EVENT_COLUMNS)
        parse_rejects = transforms.as_rejects(parsed.filter("kind = 'reject'"))
    else:
        read_per_file = {}
        new_events = parse_rejects = None

    advance("parse")

    # 2. Known state. Rows from a file being re-read (changed, or a crash before `sources` was
    #    committed) are dropped from it and derived again, so nothing is counted twice.
    old_inter = _read_table(spark, paths["interactions"], schemas.INTERACTIONS, staging)
    old_rejects = _read_table(spark, paths["rejects"], schemas.REJECTS, staging)
    old_users = _read_table(spark, paths["user_ids"], schemas.USER_IDS, staging)
    old_items = _read_table(spark, paths["item_ids"], schemas.ITEM_IDS, staging)
    reread = F.col("source").isin(new_sources) if new_sources else F.lit(False)
    kept_inter = old_inter.filter(~reread)
    pending = old_rejects.filter(F.col("reason").isin(*transforms.PENDING_REASONS) & ~reread)
    final_rejects = old_rejects.filter(
        ~F.col("reason").isin(*transforms.PENDING_REASONS) & ~reread & (F.col("input") != "catalog")
    )
    known_events = (
        kept_inter.withColumn("line", F.lit(None).cast("long"))
        .select(*transforms.EVENT_COLUMNS)
        .unionByName(pending.select(*transforms.EVENT_COLUMNS))
    )

    # 3. Deduplicate, filter, assign ids.
    if new_events is not None:
        unique_new, dup_rejects = transforms.drop_duplicates(new_events, known_events)
        candidates = known_events.unionByName(unique_new)
    else:
        dup_rejects, candidates = None, known_events
    kept, removed = transforms.kcore_filter(candidates, cfg.ingest.kcore, cfg.ingest.min_user_events)
    user_map = transforms.assign_ids(transforms.first_appearance(kept, "user"), old_users, "user").cache()
    item_map = transforms.assign_ids(transforms.first_appearance(kept, "item"), old_items, "item").cache()
    interactions = kept.join(user_map, "user").join(item_map, "item").cache()

    # 4. Catalog (re-read whole whenever anything changed: it is small next to the logs).
    items_table, catalog_rejects, catalog_rows, truncated, catalog_per_file = None, None, 0, 0, {}
    catalog_issues: dict[str, int] = {}
    if catalog_files:
        catalog = None
        for fp in catalog_files:
            frame = readers.read_catalog(spark, cfg.ingest.catalog, fp.path, cfg.ingest.max_text_chars).withColumn(
                "source", F.lit(fp.path)
            )
            catalog = frame if catalog is None else catalog.unionByName(frame)
        catalog = catalog.cache()
        stats = catalog.groupBy("source").agg(
            F.count("*").alias("n"), F.sum(F.col("truncated").cast("int")).alias("cut")
        )
        stats = stats.collect()
        catalog_per_file = {r["source"]: r["n"] for r in stats}
        catalog_rows = sum(catalog_per_file.values())
        truncated = sum(r["cut"] or 0 for r in stats)
        issues = catalog.select(F.explode("issues").alias("issue")).groupBy("issue").count().collect()
        catalog_issues = {r["issue"]: r["count"] for r in sorted(issues, key=lambda r: r["issue"])}
        items_table, cat_rej = transforms.catalog_items(catalog, item_map)
        catalog_rejects = transforms.as_rejects(cat_rej)
    else:
        items_table = item_map.select(
            "item_id",
            "item",
            F.lit(None).cast("string").alias("title"),
            F.array().cast("array<string>").alias("categories"),
            F.lit(None).cast("string").alias("brand"),
            F.lit(None).cast("double").alias("price"),
            F.lit(None).cast("string").alias("description"),
            F.lit(False).alias("has_catalog"),
        )

    rejects = final_rejects.unionByName(removed)
    for extra in (parse_rejects, dup_rejects, catalog_rejects):
        if extra is not None:
            rejects = rejects.unionByName(extra)

    advance("catalog")

    # 5. Commit. The id maps go first (they only grow), so at any crash point every id another table
    #    names is in them; `sources` goes last: a crash before it makes the next run re-read these files.
    commits = {
        "user_ids": (user_map, schemas.USER_IDS),
        "item_ids": (item_map, schemas.ITEM_IDS),
        "items": (items_table, schemas.ITEMS),
        "interactions": (interactions, schemas.INTERACTIONS),
        "sequences": (transforms.build_sequences(interactions), schemas.SEQUENCES),
        "rejects": (rejects, schemas.REJECTS),
    }
    for name, (frame, schema) in commits.items():
        # A night whose logs change nothing (all rejected, all duplicates) leaves these versions as they are.
        write_delta(frame, paths[name], schema, staging, skip_unchanged=True)
        advance(name)
        pause_point(f"ingest.after_{name}")
    sources_rows = [row for row in known if row["path"] not in set(new_sources) | {fp.path for fp in catalog_files}]
    for batch, (source, fp) in enumerate(new_files, start=next_batch):
        sources_rows.append(
            {
                "path": fp.path,
                "input": source.kind,
                "sha256": fp.sha256,
                "bytes": fp.size,
                "batch": batch,
                "rows_read": read_per_file.get(fp.path, 0),
            }
        )
    for fp in catalog_files:
        sources_rows.append(
            {
                "path": fp.path,
                "input": "catalog",
                "sha256": fp.sha256,
                "bytes": fp.size,
                "batch": -1,
                "rows_read": catalog_per_file.get(fp.path, 0),
            }
        )
    delta.write(paths["sources"], pa.Table.from_pylist(sources_rows, schema=schemas.SOURCES))
    advance("sources")

    # 6. Count from the committed tables (cheap Arrow reads, no more Spark jobs) and check that
    #    nothing was lost: this run's records, all runs' records, and the catalog's lines.
    import pyarrow.compute as pc

    inter = delta.read(paths["interactions"], columns=["source"])
    all_rejects = delta.read(paths["rejects"], columns=["source", "input", "reason"])
    event_rejects = all_rejects.filter(pc.is_in(all_rejects["input"], pa.array(EVENT_INPUTS)))
    new_set = pa.array(new_sources, pa.string())
    accepted_now = pc.sum(pc.is_in(inter["source"], new_set)).as_py() or 0
    rejects_now = event_rejects.filter(pc.is_in(event_rejects["source"], new_set))
    by_reason = Counter(rejects_now["reason"].to_pylist())
    rejected_now = rejects_now.num_rows
    read_now = sum(read_per_file.values())
    read_all = sum(r["rows_read"] for r in sources_rows if r["input"] in EVENT_INPUTS)
    total_ok = read_all == inter.num_rows + event_rejects.num_rows
    catalog_rejected = all_rejects.num_rows - event_rejects.num_rows
    with_catalog = pc.sum(delta.read(paths["items"], columns=["has_catalog"])["has_catalog"]).as_py() or 0
    catalog_ok = not catalog_files or catalog_rows == with_catalog + catalog_rejected
    if parsed is not None:
        parsed.unpersist()
    return {
        "files_read": len(new_files),
        "rows_read": read_now,
        "rows_accepted": accepted_now,
        "rows_rejected": rejected_now,
        "rejected_by_reason": dict(sorted(by_reason.items())),
        "users": delta.read(paths["user_ids"], columns=["user_id"]).num_rows,
        "items": delta.read(paths["item_ids"], columns=["item_id"]).num_rows,
        "interactions": inter.num_rows,
        "catalog_rows": catalog_rows,
        "catalog_rejected": catalog_rejected,
        "truncated_texts": truncated,
        "catalog_issues": catalog_issues,
        "empty_files": sorted(fp.path for _, fp in new_files if read_per_file.get(fp.path, 0) == 0),
        "conservation_ok": bool(read_now == accepted_now + rejected_now and total_ok and catalog_ok),
    }
