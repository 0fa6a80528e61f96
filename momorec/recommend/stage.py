"""The recommend stage: top-K items for every user, each row explained by the user's motivation.

Uses the best seed (validation NDCG@10) of the latest train run (or the registry's champion), scores every
item after the user's WHOLE history (training, validation and test items: this is serving, not evaluation),
excludes items already seen, and writes one row per user to the Delta table `recommendations` with the
motivation text and the semantic codes of the user and of each recommended item.

Users are scored in batches by the shared batch scoring (`core.batch_scoring`, engine `cfg.scoring`: this
process or Ray actors), and the explanation columns are joined to the scored stream in buckets of users
(`recommend.explain`); the rows reach Delta in one commit. Memory is bounded by a scoring batch, one join
bucket (`recommend.join_bucket_users`) and the catalog (item codes), not by the number of users.

With `recommend.users: changed` (the nightly refresh) and the model that wrote the table kept, only the users
whose rows can differ are scored and their rows MERGEd (`recommend.stale`): the night costs what changed.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from momorec.config import PlatformConfig
from momorec.core.batch_scoring import ScoringTask, TableFiles, score_users, table_files
from momorec.core.logged_model import row_checkpoint
from momorec.core.stage_run import stage_run
from momorec.core.trained_models import best_seed, run_models
from momorec.recommend.explain import UserSide, item_codes, recommendation_stream
from momorec.recommend.stale import Stale, served, stale_users
from momorec.storage import delta, schemas
from momorec.typed import StageResult

log = logging.getLogger(__name__)

SIDE_TABLES = ("user_motivations", "semantic_ids")


class RecommendResult(StageResult):
    stage: str = "recommend"
    dataset: str
    users: int = 0
    top_k: int = 0
    model_seed: int | None = None
    train_run_id: str | None = None
    model_version: str | None = Field(None, description="Registry version served (the champion, when one is set).")
    with_motivation: int = Field(0, description="Users whose row carries a motivation text.")
    rescored: str = Field("all", description="all: every user scored and the table rewritten; changed: see reason.")
    reason: str = Field("", description="Why every user was scored, or how many changed (recommend.users: changed).")
    changed_by: dict[str, int] = Field(
        default_factory=dict, description="Changed users per cause (history, motivation, semantic IDs)."
    )
    tables: dict[str, dict] = Field(default_factory=dict)


def best_model(cfg: PlatformConfig, train_run_id: str | None) -> dict:
    """The trained-model row to serve: the best seed (validation NDCG@10) of `train_run_id`; else the
    registry's champion (recommend.model=champion, once one is set); else the latest run's best seed.
    Its weights are then read from the registry (`logged_model.row_checkpoint`)."""
    if train_run_id is None and cfg.recommend.model == "champion":
        from momorec.registry import champion_row

        champion = champion_row(cfg)
        if champion is not None:
            return champion
    return best_seed(run_models(cfg, train_run_id).to_pylist())


@dataclass(frozen=True)
class ServingTables:
    """What one recommend run reads, resolved before its commit stream starts (delta-rs cannot open a table
    from inside its own write): the sequences' files, the catalog size, the user-side files, table versions."""

    sequences: TableFiles
    num_items: int
    side: UserSide
    versions: dict[str, int | None]


def _files_or_none(path: str) -> TableFiles | None:
    return table_files(path) if delta.exists(path) and delta.file_uris(path) else None


def serving_tables(cfg: PlatformConfig) -> ServingTables:
    """Check and resolve the tables recommend reads; FileNotFoundError / ValueError say what is missing."""
    paths = {name: cfg.table_path(name) for name in ("sequences", "item_ids", *SIDE_TABLES)}
    for name in ("sequences", "item_ids"):
        if not delta.exists(paths[name]):
            raise FileNotFoundError(f"no Delta table `{name}` at {paths[name]}: run `momorec ingest` first")
    largest = pc.max(delta.read(paths["item_ids"], columns=["item_id"]).column("item_id")).as_py()
    if largest is None:
        raise ValueError(f"item_ids table {paths['item_ids']} is empty")
    sequences = _files_or_none(paths["sequences"])
    if sequences is None or sequences.rows == 0:
        raise ValueError(f"sequence table {paths['sequences']} is empty: no user to recommend to")
    side = UserSide(
        motivations=_files_or_none(paths["user_motivations"]),
        codes=_files_or_none(paths["semantic_ids"]),
        buckets=math.ceil(sequences.rows / cfg.recommend.join_bucket_users),
    )
    versions = {name: delta.version(path) if delta.exists(path) else None for name, path in paths.items()}
    return ServingTables(sequences, int(largest), side, versions)


def check_catalog(model_items: int, num_items: int) -> None:
    """A model knowing fewer items than the catalog (a champion kept by the nightly refresh) still serves:
    the newer items are never recommended (`scoring.top_k`). One knowing more is a wrong dataset."""
    if model_items > num_items:
        raise ValueError(f"model knows {model_items} items, item_ids has only {num_items}: wrong dataset?")
    if model_items < num_items:
        log.warning(
            "serving a model that knows %d of %d items: newer items are not recommended", model_items, num_items
        )


class _Counts:
    """Users and motivated users of a RECOMMENDATIONS stream, counted as its batches pass into the commit."""

    def __init__(self) -> None:
        self.users = self.with_motivation = 0

    def passing(self, batches):
        self.users = self.with_motivation = 0  # a retried commit reads a fresh stream
        for batch in batches:
            self.users += batch.num_rows
            texts = batch.column("motivation_text")
            self.with_motivation += int(pc.sum(pc.greater(pc.utf8_length(texts), 0)).as_py() or 0)
            yield batch


def run_recommend(cfg: PlatformConfig, show_progress: bool = True) -> RecommendResult:
    """Write `recommendations`; see the module docstring."""
    import mlflow

    start = time.perf_counter()
    rc = cfg.recommend
    chosen = best_model(cfg, rc.train_run_id)
    params = {"recommend": rc.model_dump(mode="json")}
    with stage_run(cfg, "recommend", params, show_progress=show_progress, started=start) as stage:
        advance = stage.steps("recommend", total=2)
        tables = serving_tables(cfg)
        stage.read(tables.versions)
        payload = row_checkpoint(cfg, chosen)
        check_catalog(int(payload["num_items"]), tables.num_items)
        items = item_codes(tables.side.codes)  # catalog-sized: the one lookup held whole
        advance("load")
        state = served(chosen, rc.top_k, rc.exclude_seen, tables.versions)
        stale = (
            stale_users(cfg, state, tables.sequences.rows, rc.max_changed_share)
            if rc.users == "changed"
            else Stale(None, "recommend.users: all")
        )
        log.info("recommend: %s", stale.reason)
        listed = None if stale.users is None else stale.users.tolist()
        task = ScoringTask(kind="top_k", k=rc.top_k, exclude_seen=rc.exclude_seen, users_listed=listed)
        side = tables.side
        if stale.users is not None:  # the join reads only the changed users' rows
            side = replace(side, only=stale.users, buckets=max(1, math.ceil(stale.users.size / rc.join_bucket_users)))
        counts = _Counts()

        def recommendations() -> pa.RecordBatchReader:  # a fresh stream per commit attempt
            scored = score_users(tables.sequences, payload, task, tables.num_items, rc.batch_size, cfg.scoring, cfg.ray)
            rows = recommendation_stream(scored, side, items, chosen["train_run_id"], chosen["seed"], rc.batch_size)
            return pa.RecordBatchReader.from_batches(schemas.RECOMMENDATIONS, counts.passing(rows))

        path = cfg.table_path("recommendations")
        if stale.users is None:
            version = delta.write(path, recommendations, metadata=state)
        elif stale.users.size:
            version, _, _ = delta.upsert(path, recommendations, keys=["user_id"], metadata=state)
        else:  # nobody changed: the table already holds what this model serves
            version = delta.version(path)
        stage.wrote("recommendations", version)
        advance("score and commit")
        mlflow.log_params(
            {
                "model.train_run_id": chosen["train_run_id"],
                "model.seed": chosen["seed"],
                "model.registered_version": chosen.get("registered_version"),
            }
        )
        mlflow.log_param("rescored", "all" if stale.users is None else "changed")
        mlflow.log_metrics({"users": counts.users, "with_motivation": counts.with_motivation})
        return RecommendResult(
            **stage.result_fields(),
            dataset=cfg.dataset,
            users=counts.users,
            top_k=min(rc.top_k, tables.num_items),
            model_seed=chosen["seed"],
            train_run_id=chosen["train_run_id"],
            model_version=chosen.get("registered_version"),
            with_motivation=counts.with_motivation,
            rescored="all" if stale.users is None else "changed",
            reason=stale.reason,
            changed_by=stale.causes,
            tables={"recommendations": {"path": path, "version": version}},
        )
