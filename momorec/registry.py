"""The serving model: MLflow registry aliases `champion` and `challenger`, and the promotion rule.

The train stage registers every seed's best model as a version of `momorec-<dataset>-<architecture>`
(an MLflow pyfunc holding the checkpoint, momorec.core.logged_model). Everything that serves or
compares models reads them from the registry (`models:/<name>@champion`, `models:/<name>/<version>`),
never from a training run's checkpoint folder. After a train run, `promote` rescores the run's best
seed and the current champion on the SAME current validation split (full ranking, NDCG@10) and
moves `champion` to the new version only if it is not worse; otherwise the new version becomes
`challenger`. `recommend` serves the champion.
The test split never takes part in this decision.
"""

from __future__ import annotations

import logging

import pyarrow.compute as pc
from pydantic import Field

from momorec.config import PlatformConfig
from momorec.core.trained_models import best_seed, run_models
from momorec.storage import delta
from momorec.typed import StrictModel

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"


class Promotion(StrictModel):
    model_name: str
    decision: str = Field(description="champion (promoted) | challenger (kept out) | none (nothing registered).")
    candidate_version: str | None = None
    previous_champion_version: str | None = None
    candidate_valid_ndcg_10: float | None = None
    champion_valid_ndcg_10: float | None = Field(None, description="The old champion on the current validation split.")
    basis: str = Field(
        "", description="How the two were compared (protocol, split, or why the recorded value was used)."
    )


def model_name(cfg: PlatformConfig) -> str:
    from momorec.core.logged_model import registered_name

    return registered_name(cfg)


def alias_uri(cfg: PlatformConfig, alias: str = CHAMPION) -> str:
    return f"models:/{model_name(cfg)}@{alias}"


def version_uri(cfg: PlatformConfig, version: str) -> str:
    return f"models:/{model_name(cfg)}/{version}"


def registered_checkpoint(cfg: PlatformConfig, version: str) -> dict:
    """The checkpoint dict of registered `version`, downloaded from the registry's artifact store."""
    from momorec.core.logged_model import registered_checkpoint as download

    return download(cfg, version_uri(cfg, version))


def _client(cfg: PlatformConfig):
    from mlflow import MlflowClient
    from momorec.tracking import tracking_uri

    uri = tracking_uri(cfg.tracking)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def alias_version(cfg: PlatformConfig, alias: str = CHAMPION) -> str | None:
    """The registry version that holds `alias`, or None (no model, or no such alias yet)."""
    from mlflow.exceptions import MlflowException

    try:
        return str(_client(cfg).get_model_version_by_alias(model_name(cfg), alias).version)
    except MlflowException:
        return None


def model_row(cfg: PlatformConfig, version: str) -> dict | None:
    """The `trained_models` row registered as `version` (seed, train run, metrics), or None."""
    path = cfg.table_path("trained_models")
    if not delta.exists(path):
        return None
    table = delta.read(path)
    rows = table.filter(pc.equal(table.column("registered_version"), version)).to_pylist()
    # Versions are per registered name; the newest row wins if a table ever held two names.
    return max(rows, key=lambda r: r["created_at"]) if rows else None


def champion_row(cfg: PlatformConfig) -> dict | None:
    version = alias_version(cfg, CHAMPION)
    return None if version is None else model_row(cfg, version)


class ScoredTable(StrictModel):
    """What rescoring needs to know of the current tables without holding their users."""

    sequences: str
    version: int | None
    num_items: int
    max_user_id: int
    valid_share: float = 1.0  # the stable sample of users validation scores (train.valid_users), seed cfg.seed
    valid_users: str = "all"  # its label, as trained_models.valid_users records it


def current_tables(cfg: PlatformConfig) -> ScoredTable:
    """The sequence table to rescore on, its catalog size and largest user id (two single-column reads), and the
    users validation scores on it (train.valid_users: the same sample training validated on)."""
    from momorec.core.user_selection import UserSelection, sample_share

    num_items = pc.max(delta.read(cfg.table_path("item_ids"), columns=["item_id"]).column("item_id")).as_py()
    path = cfg.table_path("sequences")
    users = delta.read(path, columns=["user_id"]).column("user_id")
    max_user = pc.max(users).as_py()
    valid = UserSelection(sample_share(cfg.train.valid_users, len(users)), cfg.seed)
    return ScoredTable(
        sequences=path,
        version=delta.version(path),
        num_items=int(num_items),
        max_user_id=int(max_user or 0),
        valid_share=valid.share,
        valid_users=valid.label(),
    )


def valid_ndcg(cfg: PlatformConfig, payload: dict, table: ScoredTable) -> tuple[float | None, str]:
    """NDCG@10 of a checkpoint's (dict) best weights on the current validation split (full ranking),
    scored in batches of users like evaluate (`core.batch_scoring`, engine `cfg.scoring`).

    A model trained before the catalog or the user base grew cannot score the new ids; then
    (None, reason) and the caller falls back to the metric recorded at training time.
    """
    from momorec.core.batch_scoring import RankTotals, ScoringTask, score_users, table_files

    if payload["num_items"] != table.num_items:
        return None, f"catalog changed ({payload['num_items']} -> {table.num_items} items)"
    user_semantic = payload.get("user_semantic")
    if user_semantic is not None and len(user_semantic["codes"]) <= table.max_user_id:
        return None, "new users since the model was trained"
    totals = RankTotals([10])
    task = ScoringTask(
        kind="ranks", split="valid", protocols=["full"], users_share=table.valid_share, users_seed=cfg.seed
    )
    stream = score_users(
        table_files(table.sequences), payload, task, table.num_items, cfg.train.eval_batch_size, cfg.scoring, cfg.ray
    )
    for _ in totals.passing(stream):
        pass
    return float(totals.metrics()["full"]["ndcg_10"]), "rescored"


def current_valid_ndcg(cfg: PlatformConfig, row: dict, table: ScoredTable) -> tuple[float, str]:
    """A registered model's validation NDCG@10 on the current tables, and how it was had: the figure its
    training recorded when it trained on this very sequences version over the same users (the same split, full
    ranking, its best weights: rescoring would only repeat it), else rescored (`valid_ndcg`), else the recorded one
    (the model cannot score the current ids) with the reason."""
    same_users = (row.get("valid_users") or "all") == table.valid_users
    if row.get("sequences_version") is not None and row["sequences_version"] == table.version and same_users:
        return row["valid_ndcg_10"], "recorded"
    score, how = valid_ndcg(cfg, registered_checkpoint(cfg, row["registered_version"]), table)
    return (row["valid_ndcg_10"], f"recorded ({how})") if score is None else (score, how)


def promote(cfg: PlatformConfig, train_run_id: str, tolerance: float = 0.0) -> Promotion:
    """Give the best seed of `train_run_id` the champion alias if it is not worse than the champion
    (candidate >= champion - tolerance on validation NDCG@10); otherwise the challenger alias."""
    name = model_name(cfg)
    rows = [r for r in run_models(cfg, train_run_id).to_pylist() if r["registered_version"]]
    if not rows:
        return Promotion(
            model_name=name, decision="none", basis="the train run registered no model (train.log_model off)"
        )
    candidate = best_seed(rows)
    previous = champion_row(cfg)
    data = current_tables(cfg)  # one look for both models
    cand_score, cand_basis = current_valid_ndcg(cfg, candidate, data)
    result = Promotion(
        model_name=name,
        decision=CHAMPION,
        candidate_version=candidate["registered_version"],
        candidate_valid_ndcg_10=cand_score,
        basis="no champion yet",
    )
    if previous is not None and previous["registered_version"] != candidate["registered_version"]:
        champ_score, champ_basis = current_valid_ndcg(cfg, previous, data)
        if champ_basis.startswith("recorded ("):
            basis = f"champion's recorded validation NDCG@10 ({champ_basis[10:-1]})"
        else:
            basis = (
                f"both on sequences v{data.version}'s validation split ({data.valid_users} users), full ranking, "
                f"NDCG@10: candidate {cand_basis}, champion {champ_basis}"
            )
        result.previous_champion_version = previous["registered_version"]
        result.champion_valid_ndcg_10 = champ_score
        result.basis = basis
        if cand_score < champ_score - tolerance:
            result.decision = CHALLENGER
    client = _client(cfg)
    client.set_registered_model_alias(name, result.decision, candidate["registered_version"])
    if result.decision == CHAMPION:
        # The version that was challenger (if it is the new champion) loses that alias.
        if alias_version(cfg, CHALLENGER) == candidate["registered_version"]:
            client.delete_registered_model_alias(name, CHALLENGER)
    log.info("promotion: %s", result.model_dump_json())
    return result
