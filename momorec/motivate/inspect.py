"""`momorec inspect`: the motivate stage's tables -> training-free quality numbers, logged as `quality.*`.

Reads `user_motivations`, `item_profiles`, `sequences`, `items` (and `semantic_ids` when quantize has
run), computes the numbers of `momorec.motivate.quality`, and logs them as flat MLflow metrics. Which
users each number is over:

- retrieval (`quality.retrieval.*`): users with an ok motivation that has an embedding and a
  validation item in the catalog. The same users for all four scorers; a user whose validation item
  has no item embedding stays in (a miss for the two embedding scorers, scored by popularity and
  random); `target_embedded_share` says how many such users there are. The validation item is only the
  target; each user's training items are excluded from the ranking; test items are never read.
- grounding, specificity, review: every user with an ok motivation (`quality.users`).
- `evidence_in_range` is not in the tables (the parser rejects an out-of-range citation, so stored
  rows only hold in-range ones): it comes from the motivation analyst's attempt counters of the
  latest motivate run that generated any (`agent_stats.json` of that MLflow run), or the counters given.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, Field

from momorec.config import PlatformConfig
from momorec.motivate import quality as q
from momorec.motivate.runner import AgentStats
from momorec.storage import delta
from momorec.storage.schemas import ITEM_PROFILES
from momorec.typed import StageResult

log = logging.getLogger(__name__)


class Retrieval(BaseModel):
    hr_10: float = Field(description="Share of users whose validation item ranks in the top 10 of the full catalog.")
    ndcg_10: float = Field(description="Mean of 1/log2(rank + 2) over users, 0 beyond rank 10 (0-based rank).")
    users: int


class Grounding(BaseModel):
    evidence_in_range: float | None = Field(
        description="Motivation analyst generations that passed the schema and cited only numbers in 1..history "
        "length, over all that passed the schema (attempt counters; None: no counters)."
    )
    evidence_in_range_generations: int = Field(description="Generations evidence_in_range is over.")
    stats_run_id: str | None = Field(description="MLflow run whose counters were used (None: given or none).")
    evidence_in_history: float = Field(description="Stored cited item ids that are in the user's prompt history.")
    category_match: float = Field(description="Motivations with a content word naming a category of a cited item.")
    category_match_shuffled: float = Field(description="category_match with evidence of a shuffled motivation.")
    motivations: int


class Specificity(BaseModel):
    distinct_share: float = Field(description="Distinct motivation texts / users.")
    first_code_entropy: float | None = Field(description="Entropy (bits) of the users' level-1 semantic-ID codes.")
    first_code_entropy_norm: float | None = Field(description="first_code_entropy / log2(min(K, coded users)).")
    coded_users: int = Field(description="Users with a semantic ID (0 before quantize).")


class Review(BaseModel):
    accepted_share: float
    revised_share: float = Field(description="Users with at least one revision round.")
    accepted_after_revision_share: float | None
    mean_rounds: float
    ndcg_10_accepted: float | None = Field(description="Motivation retrieval NDCG@10 of the accepted retrieval users.")
    ndcg_10_not_accepted: float | None
    users_accepted: int = Field(description="Retrieval users with accepted motivations.")
    users_not_accepted: int


class MotivationQuality(StageResult):
    stage: str = "inspect"
    users: int = Field(description="Users with an ok motivation: grounding, specificity and review are over them.")
    items: int = Field(description="Catalog items every user's target is ranked among (before exclusion).")
    items_embedded: int = Field(description="Catalog items with an ok item embedding of the common dimension.")
    retrieval_users: int
    target_embedded_share: float | None = Field(description="Retrieval users whose validation item has an embedding.")
    retrieval: dict[str, Retrieval | None] = Field(
        description="motivation: cosine(motivation embedding, items); history_mean: cosine(mean of the prompt "
        "history's unit item embeddings, items); popularity: training-item counts of all users; random: expected "
        "value of a uniform ranking (closed form). None: not computable (see notes)."
    )
    grounding: Grounding
    specificity: Specificity
    review: Review
    notes: list[str] = Field(default_factory=list)

    def metrics(self) -> dict[str, float]:
        """Flat MLflow metrics `quality.<group>.<name>` (None values left out)."""
        out: dict[str, Any] = {
            "quality.users": self.users,
            "quality.retrieval.users": self.retrieval_users,
            "quality.retrieval.items": self.items,
            "quality.retrieval.items_embedded": self.items_embedded,
            "quality.retrieval.target_embedded_share": self.target_embedded_share,
        }
        for name, scores in self.retrieval.items():
            if scores is not None:
                out[f"quality.retrieval.{name}.hr_10"] = scores.hr_10
                out[f"quality.retrieval.{name}.ndcg_10"] = scores.ndcg_10
        for group in ("grounding", "specificity", "review"):
            for key, value in getattr(self, group).model_dump().items():
                if not isinstance(value, str):
                    out[f"quality.{group}.{key}"] = value
        return {k: float(v) for k, v in out.items() if v is not None}


# ---- reading ------------------------------------------------------------------------------------
def _ragged(column: pa.ChunkedArray) -> q.Ragged:
    lists = column.combine_chunks()
    offsets = lists.offsets.to_numpy().astype(np.int64)  # (U + 1,) into lists.values; a slice starts past 0
    values = lists.values.slice(offsets[0], offsets[-1] - offsets[0]).to_numpy(zero_copy_only=False)
    return q.Ragged(values.astype(np.int64), offsets - offsets[0])


def _vectors(table: pa.Table, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, (M, dim) float32) of the rows whose embedding has `dim` values; the id is column 0."""
    lengths = pc.fill_null(pc.list_value_length(table.column("embedding")), 0)
    table = table.filter(pc.equal(lengths, dim))
    values = table.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return table.column(0).to_numpy().astype(np.int64), values.astype(np.float32).reshape(-1, dim)


def _common_dim(table: pa.Table) -> int | None:
    lengths = [n for n in pc.list_value_length(table.column("embedding")).to_pylist() if n]
    return Counter(lengths).most_common(1)[0][0] if lengths else None


def _ok(table: pa.Table) -> pa.Table:
    return table.filter(pc.equal(table.column("status"), "ok"))


def latest_agent_stats(cfg: PlatformConfig) -> tuple[str, dict[str, AgentStats]] | None:
    """(run id, counters) of the latest motivate run of this dataset whose motivation analyst generated."""
    from mlflow.exceptions import MlflowException

    import mlflow
    from momorec.tracking import configure

    configure(cfg.tracking)
    runs = mlflow.search_runs(
        experiment_names=[cfg.tracking.experiment],
        filter_string=f"tags.`momorec.stage` = 'motivate' and tags.`momorec.dataset` = '{cfg.dataset}'",
        order_by=["attributes.start_time DESC"],
        max_results=20,
        output_format="list",
    )
    for run in runs:
        try:
            stats = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/agent_stats.json")
        except (MlflowException, OSError, json.JSONDecodeError):
            continue  # a run that failed before logging its counters
        analyst = stats.get("motivation_analyst", {})
        if analyst.get("generations", 0) > 0:  # only the counters used here: older runs lack newer keys
            failed = Counter(analyst.get("attempt_failures", {}))
            counters = AgentStats(generations=analyst["generations"], ok=analyst["ok"], attempt_failures=failed)
            return run.info.run_id, {"motivation_analyst": counters}
    return None


# ---- computing ----------------------------------------------------------------------------------
def inspect_motivations(
    cfg: PlatformConfig, agent_stats: Mapping[str, AgentStats] | None = None, chunk_users: int = q.CHUNK_USERS
) -> MotivationQuality:
    """Every quality number of the dataset's current tables (module docstring: which users each is over).

    `agent_stats`: the motivate run's counters (e.g. `run_motivate`'s own); None = read them from the
    latest motivate run in MLflow.
    """
    start = time.perf_counter()
    for name in ("user_motivations", "sequences", "items"):
        if not delta.exists(cfg.table_path(name)):
            raise FileNotFoundError(f"Delta table {cfg.table_path(name)} does not exist: run `momorec motivate` first")
    notes: list[str] = []
    users = _ok(delta.read(cfg.table_path("user_motivations"))).sort_by("user_id")
    if users.num_rows == 0:
        raise ValueError("user_motivations holds no ok motivation: nothing to inspect")
    catalog = delta.read(cfg.table_path("items"), columns=["item_id", "categories"]).sort_by("item_id")
    item_ids = catalog.column("item_id").to_numpy().astype(np.int64)
    sequences = delta.read(cfg.table_path("sequences"), columns=["user_id", "train_items", "valid_item"])

    profiles = _ok(delta.read_or_empty(cfg.table_path("item_profiles"), ITEM_PROFILES))
    dim = _common_dim(profiles) or _common_dim(users) or 1
    item_vecs = _item_matrix(profiles, item_ids, dim)  # (N, dim), NaN rows: no embedding
    items_embedded = int(np.isfinite(item_vecs[:, 0]).sum())
    if set(profiles.column("model").to_pylist()) != set(users.column("model").to_pylist()):
        notes.append("item profiles and motivations name different models: cosine across them may be meaningless")

    # retrieval users: ok motivation with an embedding, and a validation item in the catalog
    has_vec = pc.fill_null(pc.greater(pc.list_value_length(users.column("embedding")), 0), False)
    embedded = users.filter(has_vec).select(["user_id", "embedding", "history_item_ids", "accepted"])
    joined = _join_sequences(embedded, sequences, item_ids)
    targets = q.columns(item_ids, joined.column("valid_item").to_numpy())
    exclude = _ragged_cols(item_ids, joined.column("train_items"))
    history = _ragged_cols(item_ids, joined.column("history_item_ids"))
    counts = q.popularity_counts(len(item_ids), _ragged_cols(item_ids, sequences.column("train_items")))

    retrieval: dict[str, Retrieval | None] = dict.fromkeys(("motivation", "history_mean", "popularity", "random"))
    motivation_ranks = None
    if joined.num_rows:
        user_dim = _common_dim(joined.select(["user_id", "embedding"]))
        if user_dim == dim:
            user_ids, user_vecs = _vectors(joined.select(["user_id", "embedding"]), dim)
            if len(user_ids) != joined.num_rows:
                notes.append(f"{joined.num_rows - len(user_ids)} motivation embeddings of another length: misses")
            vecs = np.full((joined.num_rows, dim), np.nan, dtype=np.float32)
            vecs[np.searchsorted(joined.column("user_id").to_numpy(), user_ids)] = user_vecs
            motivation_ranks = q.cosine_ranks(vecs, item_vecs, targets, exclude, chunk_users)
            retrieval["motivation"] = Retrieval(**q.rank_metrics(motivation_ranks))
        else:
            notes.append(
                f"motivation embeddings have {user_dim} values, item embeddings {dim}: no motivation retrieval"
            )
        mean_vecs = q.history_mean_vectors(item_vecs, history, chunk_users)
        retrieval["history_mean"] = Retrieval(
            **q.rank_metrics(q.cosine_ranks(mean_vecs, item_vecs, targets, exclude, chunk_users))
        )
        retrieval["popularity"] = Retrieval(**q.rank_metrics(q.popularity_ranks(counts, targets, exclude, chunk_users)))
        retrieval["random"] = Retrieval(**q.random_metrics(q.candidate_counts(len(item_ids), targets, exclude)))
    else:
        notes.append("no user has both an embedded motivation and a validation item in the catalog: no retrieval")

    return MotivationQuality(
        wall_time_s=time.perf_counter() - start,
        users=users.num_rows,
        items=len(item_ids),
        items_embedded=items_embedded,
        retrieval_users=joined.num_rows,
        target_embedded_share=float(np.isfinite(item_vecs[targets, 0]).mean()) if joined.num_rows else None,
        retrieval=retrieval,
        grounding=_grounding(cfg, users, catalog, agent_stats),
        specificity=_specificity(cfg, users),
        review=_review(users, joined, motivation_ranks),
        notes=notes,
    )


def _item_matrix(profiles: pa.Table, item_ids: np.ndarray, dim: int) -> np.ndarray:
    """(N, dim) float32 item embeddings aligned with the sorted catalog `item_ids`; NaN rows for items
    without an ok embedding of `dim` values."""
    ids, vecs = _vectors(profiles.select(["item_id", "embedding"]), dim)
    out = np.full((len(item_ids), dim), np.nan, dtype=np.float32)
    cols = q.columns(item_ids, ids)
    out[cols[cols >= 0]] = vecs[cols >= 0]
    return out


def _join_sequences(embedded: pa.Table, sequences: pa.Table, item_ids: np.ndarray) -> pa.Table:
    """Rows of `embedded` with their user's train_items and valid_item, for users whose validation item is
    in the catalog; sorted by user_id. (Arrow's hash join cannot carry list columns: ids are unique and
    both sides sorted, so the two sides align row by row.)"""
    valid = pc.fill_null(pc.is_in(sequences.column("valid_item"), pa.array(item_ids)), False)
    seq = sequences.filter(valid)
    seq = seq.filter(pc.is_in(seq.column("user_id"), embedded.column("user_id"))).sort_by("user_id")
    emb = embedded.filter(pc.is_in(embedded.column("user_id"), seq.column("user_id"))).sort_by("user_id")
    if not emb.column("user_id").equals(seq.column("user_id")):
        raise ValueError("sequences holds a user_id more than once")
    return emb.append_column("train_items", seq.column("train_items")).append_column(
        "valid_item", seq.column("valid_item")
    )


def _ragged_cols(item_ids: np.ndarray, column: pa.ChunkedArray) -> q.Ragged:
    lists = _ragged(column)
    return q.Ragged(q.columns(item_ids, lists.values), lists.offsets)


def _grounding(
    cfg: PlatformConfig, users: pa.Table, catalog: pa.Table, agent_stats: Mapping[str, AgentStats] | None
) -> Grounding:
    reasons, evidence, histories = [], [], []
    for text, history in zip(
        users.column("motivations_json").to_pylist(), users.column("history_item_ids").to_pylist(), strict=True
    ):
        for m in json.loads(text or "[]"):
            reasons.append(m["reason"])
            evidence.append(m["evidence_item_ids"])
            histories.append(history or [])
    categories = dict(zip(catalog.column("item_id").to_pylist(), catalog.column("categories").to_pylist(), strict=True))
    scores = q.grounding(reasons, evidence, histories, {k: v or [] for k, v in categories.items()}, cfg.seed)

    run_id = None
    if agent_stats is None:
        found = latest_agent_stats(cfg)
        run_id, agent_stats = found if found else (None, None)
    analyst = (agent_stats or {}).get("motivation_analyst")
    ok, invented = (analyst.ok, analyst.attempt_failures.get("invented_items", 0)) if analyst else (0, 0)
    return Grounding(
        evidence_in_range=q.in_range_share(ok, invented),
        evidence_in_range_generations=ok + invented,
        stats_run_id=run_id,
        **scores,
    )


def _specificity(cfg: PlatformConfig, users: pa.Table) -> Specificity:
    first_codes = None
    path = cfg.table_path("semantic_ids")
    if delta.exists(path):
        codes = delta.read(path, columns=["entity_type", "entity_id", "codes"])
        codes = codes.filter(pc.equal(codes.column("entity_type"), "user"))
        codes = codes.filter(pc.is_in(codes.column("entity_id"), users.column("user_id")))
        first_codes = [c[0] for c in codes.column("codes").to_pylist() if c]
    k = cfg.quantize.for_entity("user").codes_per_level()[0]
    scores = q.specificity(users.column("motivation_text").to_pylist(), first_codes, k)
    return Specificity(**{key: v for key, v in scores.items() if key != "users"})


def _review(users: pa.Table, joined: pa.Table, motivation_ranks: np.ndarray | None) -> Review:
    scores = q.review_summary(
        users.column("accepted").fill_null(False).to_pylist(), users.column("review_rounds").fill_null(0).to_pylist()
    )
    accepted = joined.column("accepted").fill_null(False).to_numpy(zero_copy_only=False).astype(bool)
    by_group: dict[str, float | None] = {"ndcg_10_accepted": None, "ndcg_10_not_accepted": None}
    if motivation_ranks is not None:
        ndcg = q.ndcg_per_user(motivation_ranks)
        for key, mask in (("ndcg_10_accepted", accepted), ("ndcg_10_not_accepted", ~accepted)):
            by_group[key] = float(ndcg[mask].mean()) if mask.any() else None
    return Review(
        **{key: v for key, v in scores.items() if key != "users"},
        **by_group,
        users_accepted=int(accepted.sum()),
        users_not_accepted=int((~accepted).sum()),
    )


# ---- logging ------------------------------------------------------------------------------------
def log_quality(result: MotivationQuality) -> None:
    """Log `result.metrics()` to the active MLflow run, and the whole result as `quality.json`."""
    import mlflow

    mlflow.log_metrics(result.metrics())
    mlflow.log_dict(result.model_dump(mode="json"), "quality.json")


def run_inspect(cfg: PlatformConfig) -> MotivationQuality:
    """`momorec inspect`: compute the quality numbers and log them in an MLflow run of their own."""
    from momorec.core.stage_run import stage_run

    names = ("user_motivations", "item_profiles", "sequences", "items", "semantic_ids")
    with stage_run(cfg, "inspect") as stage:
        stage.read({name: delta.version(cfg.table_path(name)) for name in names})
        result = inspect_motivations(cfg)
        result.mlflow_run_id = stage.run_id
        log_quality(result)
    log.info("inspect: %s", result.model_dump_json())
    return result
