"""The motivate stage: `items` + `sequences` -> Delta `item_profiles` and `user_motivations`.

1. Item profiles: every item (or the items a user slice needs) whose content hash has no ok row
   yet goes through the item analyst and the embedding, sharded over a Ray Data actor pool.
2. User motivations: each user's most recent N training items (titles + fresh item profiles) go
   through motivation analyst -> reviewer -> revision, then the embedding, on a second pool. The users'
   inputs are built on Ray workers from the `sequences` files and anti-joined with the ok rows already
   there (`_pending_users`): the driver holds the catalog and counts, never every user.
   With `item_profiles: catalog` the user prompts read the catalog, not the profiles, so this pool and
   the item texts' pool run side by side.
Results stream back and are MERGEd (upsert on the id) every `commit_rows` rows, so a crash keeps
what was finished, and a re-run skips it (momorec.motivate.inputs explains the content hash).
"""

from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field
from rich.progress import Progress

from momorec.config import PlatformConfig
from momorec.llm.model_cache import resolve_model
from momorec.motivate.config import MotivateConfig
from momorec.motivate.inputs import (
    UserInputs,
    item_fingerprint,
    item_inputs,
    item_lookup,
    pending,
    settings_fingerprint,
    skip_key,
)
from momorec.motivate.inspect import inspect_motivations, log_quality
from momorec.motivate.prompts import PromptSet, load_prompts
from momorec.motivate.ray_workers import STATS_COLUMN, ItemWorker, UserWorker
from momorec.motivate.runner import AgentStats
from momorec.motivate.workers import AGENT_NAMES
from momorec.storage import delta
from momorec.storage.schemas import ITEM_PROFILES, USER_MOTIVATIONS
from momorec.typed import StageResult

log = logging.getLogger(__name__)


class MotivateResult(StageResult):
    engine: str
    model: str
    items_needed: int = Field(description="Items in scope (all, or those the user slice's histories show).")
    items_processed: int = Field(
        description="Items sent to the LLM in this run (the rest had an ok row with the same hash)."
    )
    items_ok: int
    items_failed: int
    users_needed: int
    users_processed: int
    users_ok: int
    users_failed: int
    users_accepted: int = Field(description="Users of this run whose final motivations the reviewer accepted.")
    tokens_in: int
    tokens_out: int
    tokens_per_s: float = Field(description="Output tokens per second of generation time, all agents.")
    failures: dict[str, int] = Field(description="Final failures of this run by '<agent>: <reason>'.")
    item_profiles_version: int | None
    user_motivations_version: int | None


def _row_blocks(rows: list[dict[str, Any]], batch_rows: int):
    """Driver-held rows (the catalog-sized item work) as a Dataset of one block per batch: each block is one
    actor task whose results stream back (and get committed) as soon as it finishes."""
    import ray

    table = pa.Table.from_pylist(rows)
    return ray.data.from_arrow([table.slice(k, batch_rows) for k in range(0, table.num_rows, batch_rows)])


def _run_pool(
    cfg: PlatformConfig,
    worker: type,
    rows: Any,
    total: int,
    path: str,
    key: str,
    stats: dict[str, AgentStats],
    progress: Progress | None,
    label: str,
) -> dict[str, int]:
    """Shard the `total` rows of the Dataset `rows` over an actor pool; upsert the results every commit_rows
    rows. Returns counts."""
    import ray

    ex = cfg.motivate.execution
    counts = {"processed": 0, "ok": 0, "failed": 0, "accepted": 0}
    if not total:
        return counts
    task = progress.add_task(label, total=total) if progress else None
    ds = rows.map_batches(
        worker,
        fn_constructor_kwargs={"motivate_json": cfg.motivate.model_dump_json(), "seed": cfg.seed},
        compute=ray.data.ActorPoolStrategy(size=ex.num_actors),
        num_cpus=ex.cpus_per_actor,
        num_gpus=ex.gpus_per_actor or None,
        batch_size=ex.batch_rows,
        batch_format="pyarrow",
    )
    ds.context.execution_no_progress_timeout_s = ex.no_progress_timeout_s
    for batch in ds.iter_batches(batch_size=ex.commit_rows, batch_format="pyarrow"):
        for text in batch.column(STATS_COLUMN).to_pylist():
            if text:
                for name, d in json.loads(text).items():
                    stats[name].merge(AgentStats.from_dict(d))
        table = batch.drop_columns([STATS_COLUMN])
        delta.upsert(path, table, [key])
        status = table.column("status").to_pylist()
        counts["processed"] += table.num_rows
        counts["ok"] += status.count("ok")
        counts["failed"] += status.count("failed")
        if "accepted" in table.column_names:
            counts["accepted"] += sum(bool(v) for v in table.column("accepted").to_pylist())
        if progress:
            progress.advance(task, table.num_rows)
    return counts


def _scope(cfg: MotivateConfig, items: pa.Table, sequences_path: str, seed: int) -> tuple[pa.Table, np.ndarray | None]:
    """The items of this run and its user ids: every user (None: the users are then never read here), a slice
    by id (tests, demos) or a seeded user sample (benchmarks), whose ids the driver reads (one int column)."""
    ex = cfg.execution
    if ex.limit_users is not None and ex.sample_users is not None:
        raise ValueError("motivate.execution: set limit_users or sample_users, not both")
    items = items.sort_by("item_id")
    ids = None
    if ex.sample_users is not None or ex.limit_users is not None:
        # the slice also needs its users' histories (for its items); a sample needs the ids alone
        columns = ["user_id", "train_items"] if ex.limit_users is not None else ["user_id"]
        table = delta.read(sequences_path, columns=columns).sort_by("user_id")
        users = table.column("user_id").to_numpy()
        ids = users
        if ex.sample_users is not None and ex.sample_users < users.size:
            # a prefix of one seeded permutation: a larger sample keeps every user of a smaller one
            order = np.random.default_rng(seed).permutation(users.size)
            ids = users[np.sort(order[: ex.sample_users])]
        if ex.limit_users is not None:
            ids = users[: ex.limit_users]
            histories = table.column("train_items").slice(0, ex.limit_users).to_pylist()
            needed = {i for row in histories for i in (row or [])[-cfg.agents.history_items :]}
            items = items.filter(pa.array([i in needed for i in items.column("item_id").to_pylist()]))
    if ex.limit_items is not None:
        items = items.slice(0, ex.limit_items)
    return items, ids


def _pending_users(
    cfg: PlatformConfig, paths: dict[str, str], lookup: pa.Table, fingerprint: dict[str, Any], ids: np.ndarray | None
) -> tuple[Any, int, int]:
    """(Dataset of the USER_INPUTS rows that need LLM work, users in scope, users pending).

    Built on Ray workers from the `sequences` Parquet files: each builder holds the catalog-sized `lookup` (one
    object-store copy) and hashes its batch's users; the users whose (user_id, content_hash) already has an ok
    row in `user_motivations` (any row, with retry_failed=False) are dropped by a hash-partitioned anti-join.
    The result is materialized in the object store before the LLM pool starts, so the two never share the
    CPUs; the driver holds the lookup and the counts, never the users."""
    import ray

    from momorec.core.batch_scoring import table_files

    ex = cfg.motivate.execution
    sequences = table_files(paths["sequences"])
    blocks = max(len(sequences.paths), 2 * ex.num_actors)
    users = ray.data.read_parquet(
        sequences.paths, filesystem=sequences.filesystem, columns=["user_id", "train_items"], override_num_blocks=blocks
    ).map_batches(
        UserInputs,
        fn_constructor_kwargs={
            "lookup": ray.put(lookup),
            "history_items": cfg.motivate.agents.history_items,
            "fingerprint_json": json.dumps(fingerprint, default=str),
            "only": None if ids is None else ray.put(pa.array(ids, pa.int64())),
        },
        compute=ray.data.ActorPoolStrategy(size=ex.num_actors),
        num_cpus=ex.cpus_per_actor,
        batch_size=ex.batch_rows,
        batch_format="pyarrow",
    )
    # every id of a slice or sample is a row of `sequences`; else every row (the Parquet footers' count)
    needed = sequences.rows if ids is None else len(ids)
    existing = [] if not delta.exists(paths["user_motivations"]) else delta.file_uris(paths["user_motivations"])
    started = time.perf_counter()
    if not needed or not existing:
        users = users.materialize()
        log.info("user inputs: %d users, all pending, built in %.1f s", needed, time.perf_counter() - started)
        return users, needed, needed
    done = done_keys(existing, ex.retry_failed, cfg.motivate.llm.max_model_len)
    partitions = max(1, min(64, needed // 50_000 + 1))
    todo = users.join(done, join_type="left_anti", num_partitions=partitions, on=("user_id", "content_hash"))
    todo = todo.materialize()
    todo_count = todo.count()
    log.info(
        "user inputs: %d pending of %d, built and anti-joined in %.1f s",
        todo_count,
        needed,
        time.perf_counter() - started,
    )
    return todo, needed, todo_count


def done_keys(uris: list[str], retry_failed: bool, max_model_len: int | None):
    """The (user_id, content_hash) keys of the `user_motivations` files at `uris` that a run under this window
    skips (`inputs.skip_key`), as a Dataset."""
    import ray

    from momorec.storage import objectstore

    fs, paths = objectstore.filesystem_paths(uris)
    keys = ["user_id", "content_hash", "status"]
    return ray.data.read_parquet(
        paths,
        filesystem=fs,
        columns=keys,
        # the contract's types: files a MERGE wrote hold string_view, the others string, and one read of both
        # fails to unify them (the kill matrix's resumed run met it)
        schema=pa.schema([USER_MOTIVATIONS.field(name) for name in keys]),
    ).map_batches(_DoneKeys(retry_failed, max_model_len), batch_format="pyarrow")


class _DoneKeys:
    """user_motivations batches -> the (user_id, content_hash) keys a run skips: the ok rows, or every row with
    retry_failed=False, less the rows another window shaped."""

    def __init__(self, retry_failed: bool, max_model_len: int | None) -> None:
        self.retry_failed = retry_failed
        self.max_model_len = max_model_len

    def __call__(self, batch: pa.Table) -> pa.Table:  # read with the contract's types (done_keys)
        if self.retry_failed:
            batch = batch.filter(pc.equal(batch.column("status"), "ok"))
        keys = [skip_key(h, self.max_model_len) for h in batch.column("content_hash").to_pylist()]
        keyed = pa.table({"user_id": batch.column("user_id"), "content_hash": pa.array(keys, pa.string())})
        return keyed.filter(pc.is_valid(keyed.column("content_hash")))


def _log_mlflow(prompts: PromptSet, motivate: MotivateConfig, stats: dict[str, AgentStats]) -> None:
    import mlflow
    from momorec.llm.embedder import embedder_identity

    for name, template in prompts.templates.items():
        mlflow.log_text(template.text, f"prompts/{name}.{prompts.version}.txt")
    mlflow.log_dict(motivate.model_dump(mode="json"), "motivate_config.json")
    mlflow.log_params(embedder_identity(motivate.embedder, motivate.llm.model).params())
    mlflow.log_dict({k: v.to_dict() for k, v in stats.items()}, "agent_stats.json")
    metrics: dict[str, float] = {}
    for name, s in stats.items():
        metrics.update(
            {
                f"{name}.requests": s.requests,
                f"{name}.generations": s.generations,
                f"{name}.retries": s.retries,
                f"{name}.tokens_in": s.tokens_in,
                f"{name}.cached_tokens": s.cached_tokens,
                f"{name}.tokens_out": s.tokens_out,
                f"{name}.wall_s": s.wall_s,
                f"{name}.start_s": s.start_s,
                f"{name}.prefill_s": s.prefill_s,
                f"{name}.decode_s": s.decode_s,
                f"{name}.tokens_per_s": s.tokens_out / s.wall_s if s.wall_s > 0 else 0.0,
                # computed prompt tokens (cache hits excluded) per prefill second; output tokens per decode second
                f"{name}.prefill_tokens_per_s": (s.tokens_in - s.cached_tokens) / s.prefill_s if s.prefill_s else 0.0,
                f"{name}.decode_tokens_per_s": s.tokens_out / s.decode_s if s.decode_s > 0 else 0.0,
            }
        )
        metrics.update({f"{name}.failures.{reason}": n for reason, n in s.failures.items()})
    mlflow.log_metrics(metrics)


def run_motivate(cfg: PlatformConfig, show_progress: bool = True) -> MotivateResult:
    """Fill `item_profiles` and `user_motivations` for the dataset's ingest tables (incrementally)."""
    from momorec.core.stage_run import stage_run
    from momorec.storage.ray_runtime import init_ray

    start = time.perf_counter()
    m = cfg.motivate
    prompts = load_prompts(m.agents.prompt_version)
    model = resolve_model(m.llm.model, m.llm.cache_dir)  # converts once here, not in every actor
    seed = m.llm.seed if m.llm.seed is not None else cfg.seed
    fingerprint = settings_fingerprint(m, prompts.digest, model.name, seed)
    item_settings = item_fingerprint(m, prompts.digest_of("item_analyst"), model.name, seed)
    paths = {name: cfg.table_path(name) for name in ("items", "sequences", "item_profiles", "user_motivations")}
    for name in ("items", "sequences"):
        if not delta.exists(paths[name]):
            raise FileNotFoundError(f"Delta table {paths[name]} does not exist: run `momorec ingest` first")
    read_versions = {name: delta.version(paths[name]) for name in ("items", "sequences")}
    catalog = delta.read(paths["items"])  # read once: the run's items, and every title / hint for user prompts
    items, user_ids = _scope(m, catalog, paths["sequences"], cfg.seed)
    stats = {name: AgentStats() for name in AGENT_NAMES}

    params = {"motivate": m.model_dump(mode="json")}
    with stage_run(cfg, "motivate", params, show_progress=show_progress, started=start) as stage:
        stage.read(read_versions)
        progress = stage.progress
        all_items = item_inputs(items, item_settings)
        stored = delta.read_or_empty(paths["item_profiles"], ITEM_PROFILES)
        todo = pending(all_items, stored, "item_id", m.execution.retry_failed, m.llm.max_model_len)
        init_ray(cfg.ray)
        analyst = m.agents.item_profiles != "catalog"
        item_stats = {name: AgentStats() for name in AGENT_NAMES}  # its own: the pool may run in another thread

        def run_items() -> dict[str, int]:
            blocks = _row_blocks(todo, m.execution.batch_rows) if todo else None
            label = "item analyst" if analyst else "item texts"
            return _run_pool(
                cfg, ItemWorker, blocks, len(todo), paths["item_profiles"], "item_id", item_stats, progress, label
            )

        def run_users() -> tuple[dict[str, int], int]:
            profiles = delta.read_or_empty(paths["item_profiles"], ITEM_PROFILES) if analyst else None
            users, needed, todo_users = _pending_users(
                cfg, paths, item_lookup(m, catalog, profiles), fingerprint, user_ids
            )
            path = paths["user_motivations"]
            counts = _run_pool(cfg, UserWorker, users, todo_users, path, "user_id", stats, progress, "motivations")
            return counts, needed

        if analyst:  # the user prompts show the fresh item profiles
            item_counts = run_items()
            user_counts, users_needed = run_users()
        else:
            # Catalog texts: the user prompts read the catalog, not the profiles, so the two pools run side by side
            # (on the demo the item texts' pool, ~10 s of actor start-up, overlapped the LLM actor's start).
            with ThreadPoolExecutor(1, thread_name_prefix="motivate-items") as side:
                item_pool = side.submit(run_items)
                user_counts, users_needed = run_users()
                item_counts = item_pool.result()
        for name, s in item_stats.items():
            stats[name].merge(s)

        written = {name: delta.version(paths[name]) for name in ("item_profiles", "user_motivations")}
        for name, counts in (("item_profiles", item_counts), ("user_motivations", user_counts)):
            if counts["processed"]:
                stage.wrote(name, written[name])
        _log_mlflow(prompts, m, stats)
        # training-free quality of what the tables now hold (retrieval, grounding, specificity, review)
        log_quality(inspect_motivations(cfg, agent_stats=stats))
        generating = [s for name, s in stats.items() if name != "embedding"]
        gen_wall = sum(s.wall_s for s in generating)
        tokens_out = sum(s.tokens_out for s in generating)
        failures = {f"{name}: {reason}": n for name, s in stats.items() for reason, n in s.failures.items()}
        result = MotivateResult(
            stage="motivate",
            **stage.result_fields(),
            engine=m.llm.engine,
            model=model.name,
            items_needed=len(all_items),
            items_processed=item_counts["processed"],
            items_ok=item_counts["ok"],
            items_failed=item_counts["failed"],
            users_needed=users_needed,
            users_processed=user_counts["processed"],
            users_ok=user_counts["ok"],
            users_failed=user_counts["failed"],
            users_accepted=user_counts["accepted"],
            tokens_in=sum(s.tokens_in for s in generating),
            tokens_out=tokens_out,
            tokens_per_s=tokens_out / gen_wall if gen_wall > 0 else 0.0,
            failures=failures,
            item_profiles_version=written["item_profiles"],
            user_motivations_version=written["user_motivations"],
        )
        import mlflow

        counts = {
            k: v for k, v in result.model_dump().items() if isinstance(v, int | float) and not isinstance(v, bool)
        }
        mlflow.log_metrics({f"result.{k}": float(v) for k, v in counts.items()})
    log.info("motivate: %s", result.model_dump_json())
    return result
