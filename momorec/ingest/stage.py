"""The ingest stage: behaviour logs + catalog -> Delta tables, incrementally and idempotently.

Each run reads only input files it has not seen (by SHA-256), reconsiders the events still pending
a threshold (k-core, minimum length), and commits `interactions`, `sequences`, `items`, `user_ids`,
`item_ids`, `rejects` and `sources` under <warehouse>/<dataset>/. Running the same input again
commits nothing. Ids are stable: existing ids are kept, new users and items get the next ones.

A night costs what it changed: new ids and accepted events are appended, only the changed users'
sequences and the pending rejects are rewritten, and a table the night does not change keeps its
version. Spark writes the data files; delta-rs commits them (momorec.storage.spark). The first run,
and the repair after a run that stopped between its commits or a changed input file, rebuild every
table from the whole history instead (`full_rebuild_reason`); both give the same tables.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field
from pyspark.sql import functions as F

from momorec.config import PlatformConfig
from momorec.core.pause_points import pause_point
from momorec.core.stage_run import StageRun, stage_run
from momorec.ingest import readers, transforms
from momorec.ingest.config import EventSource, IngestConfig
from momorec.ingest.values import TimestampRule
from momorec.storage import delta, objectstore, schemas
from momorec.storage.spark import get_spark, read_delta, replace_rows, run_staging, write_delta
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
    mode: str | None = Field(
        None,
        description="incremental: only what the night changed was computed and written; full: every table was "
        "rebuilt from the whole history (see rebuild_reason).",
    )
    rebuild_reason: str | None = Field(None, description="Why a full rebuild ran (first run, a changed file ...).")
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

    params = {"ingest": cfg.ingest.model_dump(mode="json")}
    with stage_run(cfg, "ingest", params, show_progress=show_progress, started=start) as stage:
        import mlflow

        stage.read(versions_before)
        if not new_files and not catalog_changed:
            result = _unchanged_result(cfg, paths, stage)
            mlflow.log_metric("unchanged", 1)
            return result
        next_batch = max((row["batch"] for row in known), default=-1) + 1
        rebuild = full_rebuild_reason(cfg, paths, known, new_files)
        mlflow.log_param("mode", "full" if rebuild else "incremental")
        spark = get_spark(cfg.spark)
        advance = stage.steps(f"ingest {cfg.dataset}", total=len(INGEST_STEPS))
        with run_staging(spark, staging_root) as staging:
            counts = _ingest_with_spark(
                cfg, spark, paths, staging, known, new_files, catalog_files, next_batch, advance, rebuild
            )
        versions_after = {name: delta.version(p) for name, p in paths.items()}
        for name, version in versions_after.items():
            if version != versions_before[name]:
                stage.wrote(name, version)
        result = IngestResult(
            **stage.result_fields(),
            dataset=cfg.dataset,
            unchanged=False,
            tables={n: {"path": p, "version": versions_after[n]} for n, p in paths.items()},
            rebuild_reason=rebuild,
            **counts,
        )
        mlflow.log_metrics({k: float(v) for k, v in counts.items() if isinstance(v, int | float | bool)})
        if rebuild:
            mlflow.log_param("rebuild_reason", rebuild[:500])
        mlflow.log_metrics({f"rejected.{reason}": float(n) for reason, n in counts["rejected_by_reason"].items()})
        mlflow.log_metrics({f"catalog_issue.{issue}": float(n) for issue, n in counts["catalog_issues"].items()})
        mlflow.log_metric("empty_files", len(counts["empty_files"]))
        mlflow.log_metric("unchanged", 0)
        if not result.conservation_ok:
            raise RuntimeError(f"row conservation violated: {counts}")
        return result


def timestamp_rule(ingest: IngestConfig) -> TimestampRule:
    return TimestampRule(min_seconds=ingest.min_timestamp, max_seconds=ingest.max_timestamp, unit=ingest.timestamp_unit)


def _unchanged_result(cfg: PlatformConfig, paths: dict[str, str], stage: StageRun) -> IngestResult:
    return IngestResult(
        **stage.result_fields(),
        dataset=cfg.dataset,
        unchanged=True,
        users=delta.count_rows(paths["sequences"]),
        items=delta.count_rows(paths["item_ids"]),
        interactions=delta.count_rows(paths["interactions"]),
        tables={n: {"path": p, "version": delta.version(p)} for n, p in paths.items()},
    )


def _read_table(spark, path: str, schema, staging: str):
    """A Delta table as a Spark DataFrame, or an empty frame of its contract on the first run. A table written
    before the `batch` column (`_PACKED_ORDER`) is read in today's layout."""
    if delta.exists(path):
        frame = read_delta(spark, path, staging)
        if "batch" in schema.names and "batch" not in frame.columns:
            frame = transforms.unpack_order(frame)
        return frame
    from pyspark.sql.pandas.types import from_arrow_schema

    return spark.createDataFrame([], from_arrow_schema(schema))


RUN_METADATA = "momorec.ingest"
# The tables that carry the ingest order. Before the `batch` column, their event_order packed the file's batch
# in its top bits (at most 8,192 files a warehouse); a run on such a warehouse rebuilds them in the new layout.
_PACKED_ORDER = ("interactions", "rejects")


def _settings(cfg: PlatformConfig) -> dict:
    """The ingest settings an incremental run must share with the runs before it (they decide the k-core)."""
    return {"kcore": cfg.ingest.kcore, "min_user_events": cfg.ingest.min_user_events}


def full_rebuild_reason(cfg: PlatformConfig, paths: dict[str, str], known: list[dict], new_files) -> str | None:
    """Why this run must rebuild every table from the whole history, or None when it may go incrementally.

    Each completed run records the versions it left in its `sources` commit; a table at another version was
    written by a run that stopped between its commits, whose half-applied night only a rebuild undoes.
    """
    if not all(delta.exists(paths[name]) for name in TABLES):
        return "first run"
    if any("batch" not in delta.column_names(paths[name]) for name in _PACKED_ORDER):
        return "the tables predate the batch column of the ingest order: rewritten in the new layout"
    recorded = delta.last_commit(paths["sources"]).get(RUN_METADATA)
    if recorded is None:
        return "the warehouse was written before incremental ingest"
    recorded = json.loads(recorded)
    if recorded.get("settings") != _settings(cfg):
        return f"k-core settings changed: {recorded.get('settings')} -> {_settings(cfg)}"
    moved = sorted(n for n, v in recorded["versions"].items() if delta.version(paths[n]) != v)
    if moved:
        return f"an earlier run stopped between its commits ({', '.join(moved)} moved after it)"
    known_paths = {row["path"] for row in known}
    changed = sorted(fp.path for _, fp in new_files if fp.path in known_paths)
    if changed:
        return f"{len(changed)} ingested file(s) changed: {changed[0]}"
    return None


def _ingest_with_spark(cfg, spark, paths, staging, known, new_files, catalog_files, next_batch, advance, rebuild):
    new_sources = [fp.path for _, fp in new_files]
    catalog_changed = {(fp.path, fp.sha256) for fp in catalog_files} != {
        (row["path"], row["sha256"]) for row in known if row["input"] == "catalog"
    }

    # 1. Parse the new files: every line becomes events or a reject.
    parsed = None
    timestamps = timestamp_rule(cfg.ingest)
    for batch, (source, fp) in enumerate(new_files, start=next_batch):
        frame = (
            readers.read_events(spark, source, fp.path, timestamps)
            .withColumn("batch", F.lit(batch).cast("long"))
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

    old = {
        name: _read_table(spark, paths[name], schema, staging)
        for name, schema in (
            ("interactions", schemas.INTERACTIONS),
            ("rejects", schemas.REJECTS),
            ("user_ids", schemas.USER_IDS),
            ("item_ids", schemas.ITEM_IDS),
        )
    }
    catalog = _read_catalog(cfg, spark, catalog_files)
    if rebuild is not None:
        log.info("ingest %s: rebuilding every table from the whole history (%s)", cfg.dataset, rebuild)
        commits = _rebuilt_tables(cfg, old, new_sources, new_events, parse_rejects, catalog)
    else:
        commits = _night_tables(cfg, old, new_events, parse_rejects, catalog, catalog_changed)
    advance("catalog")

    # Commit. The id maps go first (they only grow), so at any crash point every id another table names is
    # in them; `sources` goes last, recording the versions this run left: a crash before it makes the next
    # run re-read these files and rebuild (`full_rebuild_reason`).
    versions = {}
    for name in ("user_ids", "item_ids", "items", "interactions", "sequences", "rejects"):
        how, frame, extra = commits[name]
        schema = getattr(schemas, name.upper())
        if how == "replace":
            versions[name] = replace_rows(frame, paths[name], schema, staging, extra)
        else:
            versions[name] = write_delta(frame, paths[name], schema, staging, mode=how)
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
                "rows_read": catalog["per_file"].get(fp.path, 0) if catalog else 0,
            }
        )
    record = {"versions": {n: delta.version(paths[n]) for n in versions}, "settings": _settings(cfg)}
    delta.write(
        paths["sources"],
        pa.Table.from_pylist(sources_rows, schema=schemas.SOURCES),
        metadata={RUN_METADATA: json.dumps(record, sort_keys=True)},
    )
    advance("sources")
    if parsed is not None:
        parsed.unpersist()
    return _counts(paths, new_files, read_per_file, sources_rows, catalog, mode="full" if rebuild else "incremental")


def _read_catalog(cfg, spark, catalog_files) -> dict | None:
    """The catalog (read whole on every run that reads anything: it is small next to the logs) and its stats."""
    if not catalog_files:
        return None
    catalog = None
    for fp in catalog_files:
        frame = readers.read_catalog(spark, cfg.ingest.catalog, fp.path, cfg.ingest.max_text_chars).withColumn(
            "source", F.lit(fp.path)
        )
        catalog = frame if catalog is None else catalog.unionByName(frame)
    catalog = catalog.cache()
    stats = catalog.groupBy("source").agg(F.count("*").alias("n"), F.sum(F.col("truncated").cast("int")).alias("cut"))
    stats = stats.collect()
    issues = catalog.select(F.explode("issues").alias("issue")).groupBy("issue").count().collect()
    return {
        "frame": catalog,
        "per_file": {r["source"]: r["n"] for r in stats},
        "truncated": sum(r["cut"] or 0 for r in stats),
        "issues": {r["issue"]: r["count"] for r in sorted(issues, key=lambda r: r["issue"])},
    }


def _items_without_catalog(item_map):
    return item_map.select(
        "item_id",
        "item",
        F.lit(None).cast("string").alias("title"),
        F.array().cast("array<string>").alias("categories"),
        F.lit(None).cast("string").alias("brand"),
        F.lit(None).cast("double").alias("price"),
        F.lit(None).cast("string").alias("description"),
        F.lit(False).alias("has_catalog"),
    )


def _union_all(first, *others):
    for other in others:
        if other is not None:
            first = first.unionByName(other)
    return first


def _rebuilt_tables(cfg, old, new_sources, new_events, parse_rejects, catalog):
    """Every table from the whole history: the first run, and the repair after a run that stopped halfway or a
    changed input file. Rows from a file being re-read are dropped from the known state and derived again, so
    nothing is counted twice."""
    reread = F.col("source").isin(new_sources) if new_sources else F.lit(False)
    kept_inter = old["interactions"].filter(~reread)
    old_rejects = old["rejects"]
    pending = old_rejects.filter(F.col("reason").isin(*transforms.PENDING_REASONS) & ~reread)
    final_rejects = old_rejects.filter(
        ~F.col("reason").isin(*transforms.PENDING_REASONS) & ~reread & (F.col("input") != "catalog")
    )
    known_events = (
        kept_inter.withColumn("line", F.lit(None).cast("long"))
        .select(*transforms.EVENT_COLUMNS)
        .unionByName(pending.select(*transforms.EVENT_COLUMNS))
    )
    if new_events is not None:
        unique_new, dup_rejects = transforms.drop_duplicates(new_events, known_events)
        candidates = known_events.unionByName(unique_new)
    else:
        dup_rejects, candidates = None, known_events
    kept, removed = transforms.kcore_filter(candidates, cfg.ingest.kcore, cfg.ingest.min_user_events)
    user_map = transforms.assign_ids(transforms.first_appearance(kept, "user"), old["user_ids"], "user").cache()
    item_map = transforms.assign_ids(transforms.first_appearance(kept, "item"), old["item_ids"], "item").cache()
    interactions = kept.join(user_map, "user").join(item_map, "item").cache()
    if catalog is not None:
        items_table, cat_rej = transforms.catalog_items(catalog["frame"], item_map)
        catalog_rejects = transforms.as_rejects(cat_rej)
    else:
        items_table, catalog_rejects = _items_without_catalog(item_map), None
    rejects = _union_all(final_rejects.unionByName(removed), parse_rejects, dup_rejects, catalog_rejects)
    return {
        "user_ids": ("overwrite", user_map, None),
        "item_ids": ("overwrite", item_map, None),
        "items": ("overwrite", items_table, None),
        "interactions": ("overwrite", interactions, None),
        "sequences": ("overwrite", transforms.build_sequences(interactions), None),
        "rejects": ("overwrite", rejects, None),
    }


def _night_tables(cfg, old, new_events, parse_rejects, catalog, catalog_changed):
    """What a night changes, computed from the night's events and the events still pending, never from the
    whole history: new ids and accepted events are appended, only the changed users' sequences and the pending
    rejects are rewritten (file by file). Gives the same tables as `_rebuilt_tables` (tests/ingest)."""
    inter, rejects, users, items = old["interactions"], old["rejects"], old["user_ids"], old["item_ids"]
    pending = rejects.filter(F.col("reason").isin(*transforms.PENDING_REASONS))
    short = pending.filter(F.col("reason") == "user_too_short").select(*transforms.EVENT_COLUMNS)
    candidates = pending.filter(F.col("reason") == "kcore_filtered").select(*transforms.EVENT_COLUMNS)
    dup_rejects = None
    if new_events is not None:
        # Duplicates can only be of the night's own users' events: the history is read for those users alone.
        night_users = new_events.select("user").distinct()
        known_events = (
            inter.join(night_users, "user", "left_semi")
            .withColumn("line", F.lit(None).cast("long"))
            .select(*transforms.EVENT_COLUMNS)
            .unionByName(pending.join(night_users, "user", "left_semi").select(*transforms.EVENT_COLUMNS))
        )
        unique_new, dup_rejects = transforms.drop_duplicates(new_events, known_events)
        candidates = candidates.unionByName(unique_new)

    # The k-core so far is the accepted events plus the too-short users' events (the length filter comes after
    # the k-core); its users and items are known from the id maps and the pending rejects.
    core_users = users.select("user").unionByName(short.select("user"))
    core_items = items.select("item").unionByName(short.select("item"))
    kept, removed = transforms.extend_kcore(candidates, core_users, core_items, cfg.ingest.kcore)
    accepted_users = users.select("user")
    waiting = short.unionByName(kept).join(accepted_users, "user", "left_anti")
    long_users = waiting.groupBy("user").count().filter(F.col("count") >= cfg.ingest.min_user_events).select("user")
    accepted = kept.join(accepted_users, "user", "left_semi").unionByName(waiting.join(long_users, "user", "left_semi"))
    still_short = waiting.join(long_users, "user", "left_anti")

    new_users = transforms.new_ids(transforms.first_appearance(accepted, "user"), users, "user").cache()
    new_items = transforms.new_ids(transforms.first_appearance(accepted, "item"), items, "item").cache()
    user_map = users.select("user", "user_id").unionByName(new_users)
    item_map = items.select("item", "item_id").unionByName(new_items)
    new_inter = accepted.join(user_map, "user").join(item_map, "item").select(*inter.columns).cache()
    changed = new_inter.select("user_id").distinct()
    sequences = transforms.build_sequences(inter.join(changed, "user_id", "left_semi").unionByName(new_inter))

    if catalog is not None:
        full_items, cat_rej = transforms.catalog_items(catalog["frame"], item_map)
        catalog_rejects = transforms.as_rejects(cat_rej)
        if catalog_changed:
            items_commit = ("overwrite", full_items, None)
        else:
            items_commit = ("append", full_items.join(new_items.select("item"), "item", "left_semi"), None)
    else:
        catalog_rejects = None
        items_commit = ("append", _items_without_catalog(new_items), None)

    pending_now = transforms.as_rejects(removed.withColumn("input", F.lit("events")), reason="kcore_filtered")
    pending_now = pending_now.unionByName(
        transforms.as_rejects(still_short.withColumn("input", F.lit("events")), reason="user_too_short")
    )
    new_rejects = _union_all(pending_now, parse_rejects, dup_rejects, catalog_rejects)
    replaced = F.col("reason").isin(*transforms.PENDING_REASONS)
    if catalog is not None:
        replaced = replaced | (F.col("input") == "catalog")
    return {
        "user_ids": ("append", new_users, None),
        "item_ids": ("append", new_items, None),
        "items": items_commit,
        "interactions": ("append", new_inter, None),
        "sequences": ("replace", sequences, _marking_users(changed)),
        "rejects": ("replace", new_rejects, lambda table: table.withColumn("_drop", replaced)),
    }


def _marking_users(changed):
    """`replace_rows` marking for the rows of the changed users."""

    def marked(table):
        flags = changed.withColumn("_drop", F.lit(True))
        return table.join(flags, "user_id", "left").fillna(False, subset=["_drop"])

    return marked


def _counts(paths, new_files, read_per_file, sources_rows, catalog, mode: str) -> dict:
    """Counts from the committed tables (the log's record counts and filtered scans of one or two columns, no
    Spark job) and the check that nothing was lost: this run's records, all runs' records, the catalog's lines."""
    new_set = [fp.path for _, fp in new_files]
    accepted_now = len(_rows(paths["interactions"], ["source"], new_set))
    rejects_now = _rows(paths["rejects"], ["reason", "input"], new_set)
    rejects_now = rejects_now.filter(pc.is_in(rejects_now["input"], pa.array(EVENT_INPUTS)))
    by_reason = Counter(rejects_now["reason"].to_pylist())
    catalog_rejected = len(_rows(paths["rejects"], ["input"], None, input_is="catalog"))
    event_rejects = delta.count_rows(paths["rejects"]) - catalog_rejected
    interactions = delta.count_rows(paths["interactions"])
    read_now = sum(read_per_file.values())
    read_all = sum(r["rows_read"] for r in sources_rows if r["input"] in EVENT_INPUTS)
    total_ok = read_all == interactions + event_rejects
    with_catalog = pc.sum(delta.read(paths["items"], columns=["has_catalog"])["has_catalog"]).as_py() or 0
    catalog_rows = sum(catalog["per_file"].values()) if catalog else 0
    catalog_ok = catalog is None or catalog_rows == with_catalog + catalog_rejected
    return {
        "mode": mode,
        "files_read": len(new_files),
        "rows_read": read_now,
        "rows_accepted": accepted_now,
        "rows_rejected": rejects_now.num_rows,
        "rejected_by_reason": dict(sorted(by_reason.items())),
        "users": delta.count_rows(paths["user_ids"]),
        "items": delta.count_rows(paths["item_ids"]),
        "interactions": interactions,
        "catalog_rows": catalog_rows,
        "catalog_rejected": catalog_rejected,
        "truncated_texts": catalog["truncated"] if catalog else 0,
        "catalog_issues": catalog["issues"] if catalog else {},
        "empty_files": sorted(fp.path for _, fp in new_files if read_per_file.get(fp.path, 0) == 0),
        "conservation_ok": bool(read_now == accepted_now + rejects_now.num_rows and total_ok and catalog_ok),
    }


def _rows(path: str, columns: list[str], sources: list[str] | None, input_is: str | None = None) -> pa.Table:
    """`columns` of the table's rows from `sources` (or whose input is `input_is`), read by a filtered scan."""
    import pyarrow.dataset as pads

    files = delta.file_uris(path)
    if not files:
        return pa.table({c: pa.array([], pa.string()) for c in columns})
    fs, _ = objectstore.filesystem(files[0])
    dataset = pads.dataset([objectstore.filesystem(f)[1] for f in files], filesystem=fs, format="parquet")
    where = pads.field("input") == input_is if input_is is not None else pads.field("source").isin(sources or [])
    return dataset.to_table(columns=columns, filter=where)
