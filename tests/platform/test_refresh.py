"""The nightly refresh on the demo sample, with real Spark, Delta, torch and an MLflow registry.

The LLM stages are left out here (tests/motivate covers them, and the kill-and-resume test below
runs motivate for real): the pipeline is ingest -> train -> evaluate -> recommend on item IDs, so
what is tested is the refresh's own logic: new logs merged once, stages skipped when nothing
changed, warm start, the champion/challenger rule, recommendations rewritten.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.compute as pc
import pytest

from momorec import registry
from momorec.config import load_config
from momorec.pipeline import run_pipeline
from momorec.refresh import run_refresh
from momorec.storage import delta
from scripts.make_new_logs import new_events, write_csv

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "configs" / "demo.yaml"
TABLES = (
    "interactions",
    "sequences",
    "user_ids",
    "item_ids",
    "items",
    "rejects",
    "sources",
    "trained_models",
    "evaluation_ranks",
    "recommendations",
)
NO_LLM = "[ingest, train, evaluate, recommend]"

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def _cfg(tmp_path: Path, *extra: str):
    return load_config(
        DEMO,
        [
            f"warehouse={tmp_path / 'warehouse'}",
            "spark.master=local[2]",
            f"pipeline.stages={NO_LLM}",
            f"refresh.stages={NO_LLM}",
            "train.model.item_semantic.mode=none",
            "train.model.user_semantic.mode=none",
            "train.launcher=local",
            "train.epochs=3",
            "train.seeds=[2026]",
            "train.torch_threads=2",
            "refresh.epochs=2",
            "evaluate.protocols=[full]",
            *extra,
        ],
    )


def _versions(cfg) -> dict[str, int | None]:
    return {name: delta.version(cfg.table_path(name)) for name in TABLES}


def _new_logs(cfg, path: Path, users: int = 2) -> tuple[Path, dict[str, list[str]]]:
    """Two new purchases for each of `users` demo users, of items they never had (as a CSV log)."""
    rows = new_events(cfg, users, events=2, seed=0)
    added: dict[str, list[str]] = {}
    for user, item, _ in rows:
        added.setdefault(user, []).append(item)
    return Path(write_csv(rows, str(path))), added


def test_nightly_refresh_merges_once_warm_starts_promotes_and_skips_what_did_not_change(tmp_path, tracking_env, spark):
    cfg = _cfg(tmp_path)

    # The first full run makes the first champion.
    full = run_pipeline(cfg, show_progress=False)
    assert full.stages["promote"]["decision"] == "champion"
    first_champion = registry.alias_version(cfg)
    assert first_champion == full.stages["promote"]["candidate_version"]
    recs = delta.read(cfg.table_path("recommendations"))
    assert recs.num_rows == full.stages["ingest"]["users"] and set(recs.column("seed").to_pylist()) == {2026}

    # A second full run on unchanged inputs skips every stage after ingest and changes no table.
    before = _versions(cfg)
    again = run_pipeline(cfg, show_progress=False)
    assert again.stages["ingest"]["unchanged"] is True
    assert all(again.stages[s].get("skipped") for s in ("train", "evaluate", "recommend")), again.stages
    assert "promote" not in again.stages and _versions(cfg) == before

    # Serving and the warm start need only the registry: the training run's checkpoints may be gone.
    shutil.rmtree(Path(cfg.dataset_root) / "checkpoints")

    # The night's logs: 2 users x 2 new purchases.
    logs, added = _new_logs(cfg, tmp_path / "night.csv")
    night = run_refresh(cfg, [str(logs)], show_progress=False)
    ingest = night.stages["ingest"]
    assert (ingest["rows_read"], ingest["rows_accepted"], ingest["rows_rejected"]) == (4, 4, 0)
    assert ingest["interactions"] == full.stages["ingest"]["interactions"] + 4
    assert not any(night.stages[s].get("skipped") for s in ("train", "evaluate", "recommend"))
    import mlflow

    train_run = mlflow.get_run(night.stages["train"]["mlflow_run_id"])
    # warm-started from the champion's registered version, its weights read from the registry
    assert train_run.data.params["train.warm_start"] == registry.version_uri(cfg, first_champion)
    seed_run = mlflow.get_run(night.stages["train"]["models"][0]["seed_run_id"])
    assert seed_run.data.metrics["warm_start.copied"] > 0
    assert train_run.data.params["train.epochs"] == "2"
    # it trained on the 2 users whose history changed since the champion trained, plus a replay sample (4 per
    # changed user), and validated on every user (200 users is fewer than refresh.metric_users)
    assert train_run.data.params["users.changed"] == "2"
    assert train_run.data.params["users.train"].endswith(",listed=2")
    assert train_run.data.params["users.valid"] == "all"
    full_rows = mlflow.get_run(full.stages["train"]["models"][0]["seed_run_id"]).data.metrics["train.rows"]
    assert 2 <= seed_run.data.metrics["train.rows"] < full_rows / 4, "an epoch goes over the changed users + replay"
    promotion = night.stages["promote"]
    assert promotion["previous_champion_version"] == first_champion
    # same catalog, same users: a like-for-like comparison on tonight's validation split; the candidate trained on
    # it (its recorded figure is that score), the champion is rescored on it
    assert (
        promotion["basis"].startswith("both on sequences v")
        and "candidate recorded, champion rescored" in (promotion["basis"])
    )
    expected = (
        "champion" if promotion["candidate_valid_ndcg_10"] >= promotion["champion_valid_ndcg_10"] else "challenger"
    )
    assert promotion["decision"] == expected
    assert registry.alias_version(cfg, expected) == promotion["candidate_version"]
    served = night.stages["recommend"]["model_version"]
    assert served == registry.alias_version(cfg)  # recommendations come from the champion, whoever it is
    rescore = night.stages["recommend"]
    if expected == "champion":  # a new model changes every row
        assert rescore["rescored"] == "all" and rescore["reason"] == "another model is served"
    else:  # the kept champion rescores only the users the night changed
        assert rescore["rescored"] == "changed" and rescore["users"] == len(added), rescore

    # The new purchases are now part of those users' histories: never recommended back.
    item_id = {r["item"]: r["item_id"] for r in delta.read(cfg.table_path("item_ids")).to_pylist()}
    user_id = {r["user"]: r["user_id"] for r in delta.read(cfg.table_path("user_ids")).to_pylist()}
    recs = delta.read(cfg.table_path("recommendations"))
    for user, items in added.items():
        row = recs.filter(pc.equal(recs.column("user_id"), user_id[user])).to_pylist()[0]
        assert not {item_id[i] for i in items} & set(row["items"])
        seq = (
            delta.read(cfg.table_path("sequences")).filter(pc.equal(pc.field("user_id"), user_id[user])).to_pylist()[0]
        )
        assert seq["test_item"] == item_id[items[-1]] and seq["valid_item"] == item_id[items[-2]]

    # The same night again: nothing is merged twice and no table changes.
    after_night = _versions(cfg)
    contents = {name: delta.read(cfg.table_path(name)).num_rows for name in TABLES}
    twice = run_refresh(cfg, [str(logs)], show_progress=False)
    assert twice.stages["ingest"]["unchanged"] is True
    assert all(twice.stages[s].get("skipped") for s in ("train", "evaluate", "recommend"))
    assert _versions(cfg) == after_night
    assert {name: delta.read(cfg.table_path(name)).num_rows for name in TABLES} == contents

    # A malformed night: every line is rejected with a reason, and nothing else changes.
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "user,item,timestamp\n"
        + "\n".join(["only-two,fields", ",B005TI7LHS,1900000000", "x,,1900000000", "y,z,not-a-time"])
        + "\n"
    )
    broken = run_refresh(cfg, [str(bad)], show_progress=False)
    ingest = broken.stages["ingest"]
    assert ingest["rows_read"] == 4 and ingest["rows_accepted"] == 0 and ingest["rows_rejected"] == 4
    assert sum(ingest["rejected_by_reason"].values()) == 4 and ingest["conservation_ok"]
    changed = {name for name, v in _versions(cfg).items() if v != after_night[name]}
    assert changed == {"rejects", "sources"}, changed
    assert all(broken.stages[s].get("skipped") for s in ("train", "evaluate", "recommend"))
    reasons = (
        delta.read(cfg.table_path("rejects"))
        .filter(pc.equal(pc.field("source"), str(bad)))
        .column("reason")
        .to_pylist()
    )
    assert len(reasons) == 4 and all(reasons)
    assert json.dumps(broken.model_dump(mode="json"))  # the CLI's --json output is serialisable


def test_a_worse_model_stays_challenger_and_the_champion_keeps_serving(tmp_path, tracking_env, spark):
    cfg = _cfg(tmp_path, "train.epochs=8", "train.patience=8")
    full = run_pipeline(cfg, show_progress=False)
    champion = registry.alias_version(cfg)
    assert full.stages["promote"]["decision"] == "champion"

    # An untrained model (learning rate ~0: it keeps its random initial weights) must not replace it.
    weak = cfg.model_copy(update={"train": cfg.train.model_copy(update={"learning_rate": 1e-12, "epochs": 1})})
    from momorec.train.stage import run_train

    trained = run_train(weak, show_progress=False)
    promotion = registry.promote(weak, trained.mlflow_run_id)
    assert promotion.candidate_valid_ndcg_10 < promotion.champion_valid_ndcg_10
    assert promotion.decision == "challenger" and promotion.previous_champion_version == champion
    assert registry.alias_version(cfg) == champion
    assert registry.alias_version(cfg, "challenger") == promotion.candidate_version

    from momorec.recommend.stage import run_recommend

    shutil.rmtree(Path(cfg.dataset_root) / "checkpoints")  # the champion is served from the registry
    served = run_recommend(cfg, show_progress=False)
    assert served.model_version == champion and served.train_run_id == full.stages["train"]["mlflow_run_id"]
    kept = cfg.model_copy(update={"recommend": cfg.recommend.model_copy(update={"users": "changed"})})
    quiet = run_recommend(kept, show_progress=False)
    assert quiet.rescored == "changed" and quiet.users == 0, quiet.reason  # the champion's rows are there already


def test_new_logs_may_be_object_store_uris_or_local_paths(s3_bucket, tmp_path, monkeypatch):
    from momorec.refresh import new_log_sources
    from momorec.storage import objectstore

    objectstore.write_bytes(f"{s3_bucket}/nights/2026-12-01.csv", b"user,item,timestamp\nu,i,1\n")
    (tmp_path / "local.csv").write_text("user,item,timestamp\n")
    monkeypatch.chdir(tmp_path)
    sources = new_log_sources([f"{s3_bucket}/nights/2026-12-01.csv", f"{s3_bucket}/nights/*.csv", "local.csv"])
    assert [s.path for s in sources] == [
        f"{s3_bucket}/nights/2026-12-01.csv",
        f"{s3_bucket}/nights/*.csv",
        str(tmp_path / "local.csv"),  # local paths are made absolute, URIs kept
    ]
    for missing in (f"{s3_bucket}/nights/2026-12-02.csv", f"{s3_bucket}/other/*.csv"):
        with pytest.raises(FileNotFoundError, match="new logs not found"):
            new_log_sources([missing])
