"""The motivate stage end to end: demo ingest tables -> Ray Data actors (real HF model) -> Delta + MLflow."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pytest

import mlflow
from momorec.motivate import stage as stage_module
from momorec.motivate.prompts import sanitize
from momorec.motivate.stage import run_motivate
from momorec.storage import delta
from momorec.storage.schemas import ITEM_PROFILES, USER_MOTIVATIONS

pytestmark = [pytest.mark.llm, pytest.mark.ray, pytest.mark.spark, pytest.mark.slow]


def _no_duplicates(table, key):
    return len(set(table.column(key).to_pylist())) == table.num_rows


def test_stage_fills_both_tables_without_leakage_and_reruns_for_free(motivate_cfg, ray_local):
    cfg = motivate_cfg("motivate.execution.limit_users=2")
    result = run_motivate(cfg, show_progress=False)

    profiles = delta.read(cfg.table_path("item_profiles"))
    users = delta.read(cfg.table_path("user_motivations"))
    assert set(ITEM_PROFILES.names) <= set(profiles.column_names)
    assert set(USER_MOTIVATIONS.names) <= set(users.column_names)
    assert result.items_processed == result.items_needed == profiles.num_rows > 0
    assert result.users_processed == 2 == users.num_rows
    assert result.items_ok + result.items_failed == profiles.num_rows
    assert _no_duplicates(profiles, "item_id") and _no_duplicates(users, "user_id")
    assert result.tokens_out > 0 and result.tokens_per_s > 0

    for table in (profiles, users):
        for row in table.to_pylist():
            assert row["status"] in {"ok", "failed"}
            assert (
                row["model"] == "smollm2-135m-instruct" and row["prompt_version"] == cfg.motivate.agents.prompt_version
            )
            assert len(row["content_hash"]) == 64 and row["attempts"] >= 0
            if row["status"] == "ok":
                vector = np.asarray(row["embedding"], dtype=np.float32)
                assert vector.shape == (576,) and np.isfinite(vector).all()
            else:
                assert row["failure_reason"] and row["embedding"] is None

    # LEAKAGE: the prompt saw exactly the last 3 training items, never the valid or test item
    sequences = delta.read(cfg.table_path("sequences")).to_pylist()
    seq = {s["user_id"]: s for s in sequences}
    for row in users.to_pylist():
        s = seq[row["user_id"]]
        assert row["history_item_ids"] == s["train_items"][-3:]
        for held_out in (s["valid_item"], s["test_item"]):
            if held_out not in s["train_items"]:
                assert held_out not in row["history_item_ids"]
        if row["status"] == "ok":
            for m in __import__("json").loads(row["motivations_json"]):
                assert set(m["evidence_item_ids"]) <= set(row["history_item_ids"])

    run = mlflow.get_run(result.mlflow_run_id)
    assert run.data.metrics["item_analyst.tokens_out"] > 0 and "motivation_analyst.tokens_per_s" in run.data.metrics
    assert run.data.metrics["reviewer.requests"] >= sum(
        r["status"] == "ok" for r in users.to_pylist()
    )  # every draft reviewed
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(result.mlflow_run_id, "prompts")}
    version = cfg.motivate.agents.prompt_version
    assert f"prompts/item_analyst.{version}.txt" in artifacts and f"prompts/reviewer.{version}.txt" in artifacts

    # a re-run on unchanged data does no LLM work and commits nothing
    versions = (delta.version(cfg.table_path("item_profiles")), delta.version(cfg.table_path("user_motivations")))
    again = run_motivate(
        motivate_cfg("motivate.execution.limit_users=2", "motivate.execution.retry_failed=false"), show_progress=False
    )
    assert (again.items_processed, again.users_processed, again.tokens_out) == (0, 0, 0)
    assert (again.item_profiles_version, again.user_motivations_version) == versions


def test_interrupted_run_resumes_without_duplicate_work(motivate_cfg, ray_local, monkeypatch):
    overrides = (
        "motivate.execution.limit_users=1",
        "motivate.execution.batch_rows=1",
        "motivate.execution.commit_rows=1",
        "motivate.agents.history_items=2",
        "motivate.agents.max_review_rounds=0",
        "motivate.agents.item_max_tokens=24",
        "motivate.agents.max_attempts=1",
    )
    cfg = motivate_cfg(*overrides)
    real_upsert, commits = delta.upsert, []

    def crash_after_first_commit(path, data, keys):
        if commits:
            raise RuntimeError("simulated crash")
        commits.append(data.num_rows)
        return real_upsert(path, data, keys)

    monkeypatch.setattr(stage_module.delta, "upsert", crash_after_first_commit)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_motivate(cfg, show_progress=False)
    monkeypatch.setattr(stage_module.delta, "upsert", real_upsert)
    kept = delta.read(cfg.table_path("item_profiles"))
    assert kept.num_rows == 1

    resumed = run_motivate(motivate_cfg(*overrides, "motivate.execution.retry_failed=false"), show_progress=False)
    assert resumed.items_processed == resumed.items_needed - 1  # the committed item is not redone
    profiles = delta.read(cfg.table_path("item_profiles"))
    assert profiles.num_rows == resumed.items_needed and _no_duplicates(profiles, "item_id")
    first = kept.column("item_id")[0].as_py()
    again = profiles.filter(pc.equal(profiles.column("item_id"), first))
    assert again.column("content_hash").to_pylist() == kept.column("content_hash").to_pylist()
    assert resumed.users_processed == 1


def test_catalog_profiles_and_a_seeded_user_sample(motivate_cfg, ray_local):
    """item_profiles=catalog embeds every item's catalog entry without generating; sample_users
    motivates a fixed random sample (the same seed gives the same users)."""
    overrides = (
        "motivate.agents.item_profiles=catalog",
        "motivate.execution.sample_users=3",
        "motivate.agents.max_review_rounds=0",
    )
    cfg = motivate_cfg(*overrides)
    result = run_motivate(cfg, show_progress=False)

    items = delta.read(cfg.table_path("items"))
    profiles = delta.read(cfg.table_path("item_profiles"))
    assert result.items_needed == items.num_rows == profiles.num_rows  # a user sample keeps the whole catalog
    assert result.items_ok == items.num_rows and result.items_failed == 0
    assert set(profiles.column("status").to_pylist()) == {"ok"}
    title = dict(zip(items.column("item_id").to_pylist(), items.column("title").to_pylist(), strict=True))
    for row in profiles.to_pylist():
        assert row["profile_text"].startswith("Title: ") and row["profile_json"] == "" and row["attempts"] == 0
        assert "\n" not in row["profile_text"] and np.isfinite(np.asarray(row["embedding"])).all()
        assert sanitize(title[row["item_id"]], 20).rstrip("…") in row["profile_text"]
    run = mlflow.get_run(result.mlflow_run_id)
    assert run.data.metrics["item_analyst.requests"] == 0 and run.data.metrics["embedding.requests"] >= items.num_rows

    users = delta.read(cfg.table_path("user_motivations"))
    sampled = sorted(users.column("user_id").to_pylist())
    all_users = sorted(delta.read(cfg.table_path("sequences"), columns=["user_id"]).column("user_id").to_pylist())
    assert len(sampled) == 3 and sampled != all_users[:3]  # a random draw, not the first ids
    order = np.random.default_rng(cfg.seed).permutation(len(all_users))
    assert sampled == sorted(all_users[k] for k in order[:3])

    again = run_motivate(motivate_cfg(*overrides, "motivate.execution.retry_failed=false"), show_progress=False)
    assert (again.items_processed, again.users_processed) == (0, 0)  # same seed, same sample: nothing to do

    # A window too small for a user's prompt: a fourth sampled user is refused, recorded with the window in its
    # hash. The same window skips it; another redoes it and nothing else (no window decided the other rows).
    def windowed(window: int):
        keep = ("motivate.execution.sample_users=4", "motivate.execution.retry_failed=false")
        return run_motivate(
            motivate_cfg(*overrides, *keep, f"motivate.llm.max_model_len={window}"), show_progress=False
        )

    refused = windowed(128)
    assert (refused.items_processed, refused.users_processed) == (0, 1)
    rows = {r["user_id"]: r for r in delta.read(cfg.table_path("user_motivations")).to_pylist()}
    (new,) = set(rows) - set(sampled)
    assert rows[new]["status"] == "failed" and "prompt_too_long" in rows[new]["failure_reason"]
    assert rows[new]["content_hash"].endswith("@window=128")
    assert all(len(rows[u]["content_hash"]) == 64 for u in sampled)
    assert windowed(128).users_processed == 0
    wider = windowed(160)
    assert (wider.items_processed, wider.users_processed) == (0, 1)
    assert delta.read(cfg.table_path("user_motivations")).num_rows == 4
    with pytest.raises(ValueError, match="limit_users or sample_users"):
        run_motivate(motivate_cfg(*overrides, "motivate.execution.limit_users=2"), show_progress=False)
