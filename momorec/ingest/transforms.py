"""Pure Spark transforms of ingest: DataFrame in, DataFrame out; no reading or writing here.

Event frames carry raw ids (`user`, `item`), `timestamp` (null for sequence files), the ingest order
(`batch`: the file, then `event_order`: line and position in it; breaks timestamp ties and names an event
uniquely), `rating`, `event_type`, `source`, `line`.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

# Rejects with these reasons are not final: a later append can lift the user or item over the
# threshold, so every run reconsiders them together with the accepted events.
PENDING_REASONS = ("kcore_filtered", "user_too_short")

EVENT_COLUMNS = ["user", "item", "timestamp", "batch", "event_order", "rating", "event_type", "source", "line"]
# The ingest order, and the key of one event.
ORDER = ["batch", "event_order"]


def as_rejects(events: DataFrame, reason: str | None = None, raw: str | None = None) -> DataFrame:
    """Events (or records) -> rows of the rejects table; `reason` overrides a `reason` column."""
    frame = events
    if reason is not None:
        frame = frame.withColumn("reason", F.lit(reason))
    if "raw" not in frame.columns:
        frame = frame.withColumn(
            "raw",
            F.concat_ws(" ", F.col("user"), F.col("item"), F.col("timestamp").cast("string"))
            if raw is None
            else F.lit(raw),
        )
    for name, dtype in (
        ("input", "string"),
        ("user", "string"),
        ("item", "string"),
        ("timestamp", "double"),
        ("batch", "long"),
        ("event_order", "long"),
        ("rating", "double"),
        ("event_type", "string"),
        ("line", "long"),
    ):
        if name not in frame.columns:
            frame = frame.withColumn(name, F.lit(None).cast(dtype))
    return frame.select(
        F.col("source").cast("string"),
        F.col("input").cast("string"),
        F.col("line").cast("long"),
        F.col("reason").cast("string"),
        F.col("raw").cast("string"),
        F.col("user").cast("string"),
        F.col("item").cast("string"),
        F.col("timestamp").cast("double"),
        F.col("batch").cast("long"),
        F.col("event_order").cast("long"),
        F.col("rating").cast("double"),
        F.col("event_type").cast("string"),
    )


def unpack_order(frame: DataFrame) -> DataFrame:
    """A table written before the `batch` column, in today's layout: its event_order was
    batch << 50 | line << 20 | position, today's is the low 50 bits and the batch has a column."""
    packed = F.col("event_order")
    return frame.withColumn("batch", F.shiftright(packed, 50)).withColumn(
        "event_order", packed.bitwiseAND(F.lit((1 << 50) - 1))
    )


def dedup_key(frame: DataFrame):
    """Two events are the same when user, item and time agree; sequence files have no time, so
    there the position inside the line (the low bits of event_order) stands for it."""
    position = F.col("event_order").bitwiseAND(F.lit((1 << 20) - 1))
    return F.concat_ws(
        "\u0001",
        F.col("user"),
        F.col("item"),
        F.coalesce(F.col("timestamp").cast("string"), F.concat(F.lit("#"), position.cast("string"))),
    )


def drop_duplicates(new_events: DataFrame, known_events: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(unique new events, duplicates as rejects). The first occurrence (in ingest order) wins;
    an event already known from an earlier run is a duplicate too."""
    keyed = new_events.withColumn("_key", dedup_key(new_events))
    known = known_events.select(dedup_key(known_events).alias("_key")).distinct()
    seen = keyed.join(known, "_key", "left_semi")
    fresh = keyed.join(known, "_key", "left_anti")
    rank = F.row_number().over(Window.partitionBy("_key").orderBy(*ORDER))
    fresh = fresh.withColumn("_rank", rank)
    unique = fresh.filter("_rank = 1").drop("_rank", "_key")
    duplicates = fresh.filter("_rank > 1").drop("_rank", "_key").unionByName(seen.drop("_key"))
    return unique, as_rejects(duplicates.withColumn("input", F.lit("events")), reason="duplicate_event")


def kcore_filter(events: DataFrame, k: int, min_user_events: int) -> tuple[DataFrame, DataFrame]:
    """Iterative k-core (every kept user and item has >= k events), then drop users with fewer than
    `min_user_events` events. Returns (kept events, removed events as rejects with their reason).

    The k-core of a larger event set contains the k-core of a smaller one, so appending events never
    removes an accepted event: ingest only ever adds to `interactions`.
    """
    kept = events.cache()
    if k > 1:
        while True:
            users = kept.groupBy("user").count().filter(F.col("count") >= k).select("user")
            items = kept.groupBy("item").count().filter(F.col("count") >= k).select("item")
            # a local checkpoint cuts the lineage: each round's plan would hold the last one three times over
            nxt = kept.join(users, "user", "left_semi").join(items, "item", "left_semi").localCheckpoint()
            if nxt.count() == kept.count():
                kept = nxt
                break
            kept = nxt
    kcore_removed = events.join(kept.select(*ORDER), ORDER, "left_anti")
    long_users = kept.groupBy("user").count().filter(F.col("count") >= min_user_events).select("user")
    short = kept.join(long_users, "user", "left_anti")
    kept = kept.join(long_users, "user", "left_semi")
    removed = as_rejects(kcore_removed.withColumn("input", F.lit("events")), reason="kcore_filtered").unionByName(
        as_rejects(short.withColumn("input", F.lit("events")), reason="user_too_short")
    )
    return kept, removed


def extend_kcore(
    candidates: DataFrame, core_users: DataFrame, core_items: DataFrame, k: int
) -> tuple[DataFrame, DataFrame]:
    """The k-core of (core + candidates), found from the candidates alone: (candidates kept, candidates removed).

    `core_users` / `core_items` (one column each) are the users and items of an existing k-core. Every core
    user and item already has >= k core events, and a user or item outside the core has none, so a candidate
    stays iff its user is in the core or has >= k kept candidates, and likewise its item; peeling the
    candidates to that fixpoint gives the same core as `kcore_filter` over the whole history, at the cost
    of the candidates (a night's events and the ones still pending), not of the history.
    """
    kept = candidates.cache()
    if k > 1:
        users_in = core_users.select("user").distinct().withColumn("_core_user", F.lit(True))
        items_in = core_items.select("item").distinct().withColumn("_core_item", F.lit(True))
        while True:
            user_counts = kept.groupBy("user").count().withColumnRenamed("count", "_n_user")
            item_counts = kept.groupBy("item").count().withColumnRenamed("count", "_n_item")
            nxt = (
                kept.join(user_counts, "user")
                .join(item_counts, "item")
                .join(users_in, "user", "left")
                .join(items_in, "item", "left")
                .filter(
                    (F.col("_core_user").isNotNull() | (F.col("_n_user") >= k))
                    & (F.col("_core_item").isNotNull() | (F.col("_n_item") >= k))
                )
                .select(*candidates.columns)
                .localCheckpoint()  # cut the lineage, as in kcore_filter
            )
            if nxt.count() == kept.count():
                kept = nxt
                break
            kept = nxt
    removed = candidates.join(kept.select(*ORDER), ORDER, "left_anti")
    return kept, removed


def new_ids(entities: DataFrame, existing: DataFrame, name: str) -> DataFrame:
    """Ids for the raw ids of `entities` not in `existing`: max+1, ... in order of first appearance (ingest
    order, then the raw id). Ids start at 1: 0 is padding.

    entities: (name, first_order); existing: (name, name_id). Returns the new rows only (name, name_id).
    """
    id_col = f"{name}_id"
    start = existing.agg(F.coalesce(F.max(id_col), F.lit(0)).alias("m")).collect()[0]["m"]
    new = entities.join(existing.select(name), name, "left_anti")
    order = Window.orderBy("first_order", name)
    return new.withColumn(id_col, (F.row_number().over(order) + F.lit(start)).cast("long")).select(name, id_col)


def assign_ids(entities: DataFrame, existing: DataFrame, name: str) -> DataFrame:
    """Stable integer ids: existing ids are kept, new raw ids get the next ones (`new_ids`). Returns the whole
    map (name, name_id)."""
    id_col = f"{name}_id"
    return existing.select(name, F.col(id_col).cast("long")).unionByName(new_ids(entities, existing, name))


def first_appearance(events: DataFrame, name: str) -> DataFrame:
    return events.groupBy(name).agg(F.min(F.struct(*ORDER)).alias("first_order"))


def build_sequences(interactions: DataFrame) -> DataFrame:
    """Per user: items in time order (timestamp, then ingest order) and the leave-one-out split:
    the last item is test, the one before validation, the rest training."""
    ordered = interactions.groupBy("user_id").agg(
        F.sort_array(
            F.collect_list(F.struct(F.coalesce("timestamp", F.lit(float("-inf"))).alias("t"), *ORDER, "item_id"))
        ).alias("_events")
    )
    items = F.transform("_events", lambda e: e["item_id"])
    return ordered.select(
        "user_id",
        items.alias("items"),
    ).select(
        "user_id",
        "items",
        F.slice("items", 1, F.size("items") - 2).alias("train_items"),
        F.element_at("items", -2).alias("valid_item"),
        F.element_at("items", -1).alias("test_item"),
        F.size("items").cast("int").alias("length"),
    )


def catalog_items(catalog: DataFrame, item_ids: DataFrame) -> tuple[DataFrame, DataFrame]:
    """(items table rows, catalog rejects). Every accepted item gets a row (has_catalog says whether
    the catalog knew it); catalog rows for items not in the logs, and repeated catalog rows, are rejected."""
    rows = catalog.filter("kind = 'item'")
    rank = F.row_number().over(Window.partitionBy("item").orderBy("line"))
    rows = rows.withColumn("_rank", rank)
    repeated = rows.filter("_rank > 1").withColumn("reason", F.lit("duplicate_catalog_row"))
    rows = rows.filter("_rank = 1").drop("_rank")
    unknown = rows.join(item_ids, "item", "left_anti").withColumn("reason", F.lit("unknown_item"))
    items = item_ids.join(rows, "item", "left").select(
        F.col("item_id").cast("long"),
        "item",
        "title",
        F.coalesce("categories", F.array().cast("array<string>")).alias("categories"),
        "brand",
        "price",
        "description",
        F.col("line").isNotNull().alias("has_catalog"),
    )
    bad = catalog.filter("kind = 'reject'")
    keep = ("source", "line", "reason", "raw", "item")
    rejects = (
        bad.select(*keep)
        .unionByName(repeated.select(*keep))
        .unionByName(unknown.select(*keep))
        .withColumn("input", F.lit("catalog"))
    )
    return items, rejects
