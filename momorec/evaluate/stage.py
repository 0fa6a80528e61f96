"""The evaluate stage: score a train run's models (one per seed) on the test split, once.

Reads `trained_models` (the models of one train run), `sequences` and `item_ids`; writes per-user
ranks to `evaluation_ranks`. Per protocol (full ranking = headline; sampled-<n> labelled) and per
seed, MLflow gets `test.<protocol>.<metric>` in a nested run; the stage run gets the mean and std
over seeds (`test.full.ndcg_10.mean`). With `compare_with`, a paired t-test and Wilcoxon test on
per-user test NDCG@10 / HR@10 (mean over seeds) against another train run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from momorec.config import PlatformConfig
from momorec.core.batch_scoring import RankTotals, ScoringTask, TableFiles, score_users, table_files
from momorec.core.logged_model import row_checkpoint
from momorec.core.metrics import hit_at_k, ndcg_at_k
from momorec.core.pause_points import pause_point
from momorec.core.ranking import protocol_label
from momorec.core.significance import align_users, mean_std, paired_test
from momorec.core.stage_run import stage_run
from momorec.core.trained_models import run_models
from momorec.core.user_selection import EVERYONE, UserSelection, sample_share
from momorec.storage import delta, schemas
from momorec.typed import StageResult

log = logging.getLogger(__name__)


class EvaluateResult(StageResult):
    stage: str = "evaluate"
    dataset: str
    train_run_id: str
    architecture: str = ""
    users: int = 0
    users_scored: int = Field(0, description="Users whose ranks the metrics are over (all, or evaluate.users' sample).")
    users_selection: str = Field("all", description="all, or the stable sample's share and seed.")
    seeds: list[int] = Field(default_factory=list)
    metrics: dict[str, dict[str, dict[str, float]]] = Field(
        default_factory=dict, description="protocol -> metric -> {mean, std, n} over seeds (test split)."
    )
    per_seed: dict[str, dict[str, float]] = Field(default_factory=dict, description="seed -> test.<protocol>.<metric>.")
    significance: dict[str, dict[str, float]] = Field(default_factory=dict, description="vs compare_with, per metric.")
    tables: dict[str, dict] = Field(default_factory=dict)


def _rank_stream(
    cfg: PlatformConfig,
    files: TableFiles,
    models: list[dict],
    num_items: int,
    eval_run_id: str,
    totals: dict,
    advance: Callable[[str], None],
    users: UserSelection = EVERYONE,
) -> Iterator[pa.RecordBatch]:
    """Every user's test rank under each protocol for each seed's model, as EVALUATION_RANKS batches; each
    seed's metric sums land in `totals[seed]` as its batches pass (the caller logs them after the commit).
    It runs inside the Delta commit that consumes it, so it touches no Delta table itself."""
    ev = cfg.evaluate
    task = ScoringTask(
        kind="ranks",
        split="test",
        protocols=ev.protocols,
        num_negatives=ev.num_negatives,
        negative_seed=cfg.seed if ev.negative_seed is None else ev.negative_seed,
        users_share=users.share,
        users_seed=users.seed,
    )
    for model_row in models:
        payload = row_checkpoint(cfg, model_row)  # registered: from the registry
        if payload["num_items"] != num_items:
            raise ValueError(f"model knows {payload['num_items']} items, the item_ids table {num_items}: retrain")
        seed_totals = totals[str(model_row["seed"])] = RankTotals(ev.ks)
        stream = score_users(files, payload, task, num_items, ev.batch_size, cfg.scoring, cfg.ray)
        for batch in seed_totals.passing(stream):
            n = batch.num_rows
            yield pa.RecordBatch.from_arrays(
                [
                    pa.array([eval_run_id] * n),
                    pa.array([model_row["train_run_id"]] * n),
                    pa.array([model_row["seed"]] * n, pa.int64()),
                    batch.column("protocol"),
                    batch.column("user_id"),
                    batch.column("rank"),
                ],
                schema=schemas.EVALUATION_RANKS,
            )
        advance(f"seed {model_row['seed']}")


def _log_seeds(models: list[dict], totals: dict[str, RankTotals]) -> dict[str, dict[str, float]]:
    """One nested MLflow run per seed with its test.<protocol>.<metric>; returns seed -> those metrics."""
    import mlflow

    per_seed: dict[str, dict[str, float]] = {}
    for model_row in models:
        metrics = {
            f"test.{label}.{k}": v
            for label, values in totals[str(model_row["seed"])].metrics().items()
            for k, v in values.items()
            if k != "users"
        }
        with mlflow.start_run(
            run_name=f"seed-{model_row['seed']}", nested=True, tags={"momorec.seed": str(model_row["seed"])}
        ):
            mlflow.log_params(
                {
                    "seed": model_row["seed"],
                    "train_run_id": model_row["train_run_id"],
                    "seed_run_id": model_row["seed_run_id"],
                    "checkpoint": model_row["checkpoint"],
                }
            )
            mlflow.log_metrics(metrics)
        per_seed[str(model_row["seed"])] = metrics
    return per_seed


def _per_user(ranks: pa.Table, train_run_id: str, ks=(10,)) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per-user HR@k/NDCG@k of a train run's full-ranking test ranks, mean over its seeds."""
    table = ranks.filter(
        pc.and_(pc.equal(ranks.column("train_run_id"), train_run_id), pc.equal(ranks.column("protocol"), "full"))
    )
    if table.num_rows == 0:
        raise ValueError(f"train run {train_run_id} has no full-ranking test ranks: evaluate it first")
    latest_eval = table.column("eval_run_id")[table.num_rows - 1].as_py()
    table = table.filter(pc.equal(table.column("eval_run_id"), latest_eval))
    seeds = sorted(set(table.column("seed").to_pylist()))
    per_seed = []
    for seed in seeds:
        part = table.filter(pc.equal(table.column("seed"), seed)).sort_by("user_id")
        per_seed.append((part.column("user_id").to_numpy(), part.column("rank").to_numpy()))
    users = per_seed[0][0]
    if any(not np.array_equal(users, u) for u, _ in per_seed):
        raise ValueError(f"seeds of train run {train_run_id} were evaluated on different users")
    out = {}
    for k in ks:
        out[f"ndcg_{k}"] = np.mean([ndcg_at_k(r, k) for _, r in per_seed], axis=0)
        out[f"hr_{k}"] = np.mean([hit_at_k(r, k) for _, r in per_seed], axis=0)
    return users, out


def _sql_string(value: str) -> str:
    return value.replace("'", "''")


def run_evaluate(cfg: PlatformConfig, show_progress: bool = True) -> EvaluateResult:
    """Evaluate the models of `cfg.evaluate.train_run_id` (default: the latest train run) on the test split."""
    import mlflow

    start = time.perf_counter()
    ev = cfg.evaluate
    models = run_models(cfg, ev.train_run_id)
    train_run_id = models.column("train_run_id")[0].as_py()
    versions = {name: delta.version(cfg.table_path(name)) for name in ("sequences", "item_ids")}
    num_items = int(pc.max(delta.read(cfg.table_path("item_ids"), columns=["item_id"]).column("item_id")).as_py())
    trained_on = set(models.column("sequences_version").to_pylist())
    if trained_on != {versions["sequences"]}:
        log.warning(
            "models were trained on sequences version(s) %s, evaluating on version %s",
            trained_on,
            versions["sequences"],
        )
    ranks_path = cfg.table_path("evaluation_ranks")
    params = {"evaluate": ev.model_dump(mode="json"), "train_run_id": train_run_id}
    with stage_run(cfg, "evaluate", params, show_progress=show_progress, started=start) as stage:
        stage.read(versions | {"trained_models": delta.version(cfg.table_path("trained_models"))})
        rows = models.to_pylist()
        advance = stage.steps("evaluate", total=len(rows))
        totals: dict[str, RankTotals] = {}
        files = table_files(cfg.table_path("sequences"))  # outside the commit that consumes the stream
        if files.rows == 0:
            raise ValueError(f"sequence table {cfg.table_path('sequences')} is empty: no user to evaluate")

        users = UserSelection(sample_share(ev.users, files.rows), cfg.seed)  # evaluate.users: a stable sample
        mlflow.log_param("evaluate.users_selection", users.label())

        def ranks() -> pa.RecordBatchReader:  # every seed's ranks in one commit, streamed (retried afresh)
            stream = _rank_stream(cfg, files, rows, num_items, stage.run_id, totals, advance, users)
            return pa.RecordBatchReader.from_batches(schemas.EVALUATION_RANKS, stream)

        # One set of ranks per (trained model, protocol): they replace what an earlier evaluate of the same
        # models wrote (a killed one that committed but never finished, or a deliberate re-run).
        labels = ", ".join(f"'{protocol_label(p, ev.num_negatives)}'" for p in ev.protocols)
        same_models = f"train_run_id = '{_sql_string(train_run_id)}' AND protocol IN ({labels})"
        written = stage.wrote(
            "evaluation_ranks", delta.write(ranks_path, ranks, mode="append", replace_where=same_models)
        )
        pause_point("evaluate.after_ranks_commit")
        per_seed = _log_seeds(rows, totals)
        scored = max((int(t.get("users", 0)) for seed in totals.values() for t in seed.metrics().values()), default=0)
        mlflow.log_metric("users_scored", scored)
        aggregated = mean_std(list(per_seed.values()))
        mlflow.log_metrics({f"{k}.{stat}": v for k, s in aggregated.items() for stat, v in s.items() if stat != "n"})
        metrics: dict[str, dict[str, dict[str, float]]] = {}
        for key, stats in aggregated.items():
            _, label, metric = key.split(".", 2)
            metrics.setdefault(label, {})[metric] = stats
        significance: dict[str, dict[str, float]] = {}
        if ev.compare_with:
            all_ranks = delta.read(ranks_path)
            users_a, base = _per_user(all_ranks, ev.compare_with)
            users_b, ours = _per_user(all_ranks, train_run_id)
            for name in base:
                _, a, b = align_users(users_a, base[name], users_b, ours[name])
                significance[f"test.full.{name}"] = paired_test(a, b)
            mlflow.log_metrics({f"compare.{m}.{k}": v for m, s in significance.items() for k, v in s.items()})
            mlflow.log_param("compare_with", ev.compare_with)
        return EvaluateResult(
            **stage.result_fields(),
            dataset=cfg.dataset,
            train_run_id=train_run_id,
            architecture=models.column("architecture")[0].as_py(),
            users=files.rows,
            users_scored=scored,
            users_selection=users.label(),
            seeds=sorted(int(s) for s in per_seed),
            metrics=metrics,
            per_seed=per_seed,
            significance=significance,
            tables={"evaluation_ranks": {"path": ranks_path, "version": written}},
        )
