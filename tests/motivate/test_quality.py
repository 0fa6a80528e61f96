"""Training-free quality numbers: the pure math on hand-built arrays, then `inspect_motivations` /
`momorec inspect` on a few-row warehouse written here (no LLM)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from momorec.motivate import quality as q
from momorec.motivate.runner import AgentStats
from momorec.storage import delta, schemas
from tests.conftest import DEMO_CONFIG

NO_EXCLUSION = q.Ragged.from_lists([[]])


# ---- ranking ------------------------------------------------------------------------------------
def test_a_target_ranked_first_scores_one_and_third_scores_one_over_log2_4():
    scores = np.array([[0.9, 0.1, 0.5, 0.7]])
    first = q.target_ranks(scores, np.array([0]), NO_EXCLUSION)
    third = q.target_ranks(scores, np.array([2]), NO_EXCLUSION)
    assert first.tolist() == [0] and third.tolist() == [2]
    assert q.rank_metrics(first) == {"hr_10": 1.0, "ndcg_10": 1.0, "users": 1}
    assert q.rank_metrics(third)["ndcg_10"] == pytest.approx(1 / np.log2(4))
    assert q.rank_metrics(np.array([10]))["hr_10"] == 0.0  # rank 10 is the 11th place


def test_excluded_items_cannot_outrank_the_target_but_a_target_in_the_history_still_competes():
    scores = np.array([[0.9, 0.8, 0.5, 0.1], [0.9, 0.8, 0.5, 0.1]])
    exclude = q.Ragged.from_lists([[0, 1], [2, 0]])  # user 1's target (column 2) is also a training item
    assert q.target_ranks(scores, np.array([2, 2]), exclude).tolist() == [0, 1]


def test_ties_count_against_the_target_and_a_target_without_a_score_is_a_miss():
    scores = np.array([[0.3, 0.3, 0.3], [0.2, np.nan, 0.9]])
    ranks = q.target_ranks(scores, np.array([0, 1]), q.Ragged.from_lists([[], []]))
    assert ranks.tolist() == [2, q.MISS]  # not rank 3 of 3 items: that would be a lucky top-10 place
    assert q.rank_metrics(ranks)["hr_10"] == 0.5


def test_cosine_ranks_ignore_vector_length_and_items_without_a_vector():
    users = np.array([[2.0, 0.0]])  # cosine with the items: 1, 0, 0.707, none
    items = np.array([[1.0, 0.0], [0.0, 1.0], [3.0, 3.0], [np.nan, np.nan]])
    assert q.cosine_ranks(users, items, np.array([2]), NO_EXCLUSION).tolist() == [1]
    assert q.cosine_ranks(users, items, np.array([2]), q.Ragged.from_lists([[0]])).tolist() == [0]
    assert q.cosine_ranks(users, items, np.array([3]), NO_EXCLUSION).tolist() == [q.MISS]


def test_ranks_agree_with_the_evaluator_and_do_not_depend_on_the_chunk_size():
    import torch

    from momorec.core.metrics import full_ranks

    rng = np.random.default_rng(3)
    n_users, n_items, dim = 37, 50, 8
    users, items = rng.normal(size=(n_users, dim)), rng.normal(size=(n_items, dim))
    histories = [rng.choice(n_items, size=rng.integers(0, 6), replace=True).tolist() for _ in range(n_users)]
    targets = rng.integers(0, n_items, size=n_users)
    histories[0].append(int(targets[0]))  # a repeat purchase: the target is also a training item
    exclude = q.Ragged.from_lists(histories)
    ours = q.cosine_ranks(users, items, targets, exclude, chunk=1000)
    assert np.array_equal(ours, q.cosine_ranks(users, items, targets, exclude, chunk=5))

    # the evaluator's layout: column 0 is padding, item column j is item id j + 1
    cos = q.unit_rows(users) @ q.unit_rows(items).T
    scores = torch.cat([torch.zeros(n_users, 1, dtype=torch.float64), torch.from_numpy(cos.astype(np.float64))], 1)
    width = max(len(h) for h in histories)
    padded = torch.tensor([[i + 1 for i in h] + [0] * (width - len(h)) for h in histories])
    assert ours.tolist() == full_ranks(scores, padded, torch.from_numpy(targets + 1)).tolist()


def test_popularity_ranks_the_most_counted_items_first():
    histories = q.Ragged.from_lists([[0, 0, 1], [0, 2, -1]])  # -1: an id outside the catalog
    counts = q.popularity_counts(4, histories)
    assert counts.tolist() == [3.0, 1.0, 1.0, 0.0]
    ranks = q.popularity_ranks(counts, np.array([1, 3]), q.Ragged.from_lists([[0], []]))
    assert ranks.tolist() == [1, 3]  # user 0: item 0 excluded, item 2 ties -> 1; user 1: last of 4


def test_history_mean_averages_unit_vectors_and_skips_items_without_one():
    items = np.array([[2.0, 0.0], [0.0, 5.0], [np.nan, np.nan]])
    means = q.history_mean_vectors(items, q.Ragged.from_lists([[0, 1, 2], [2], [1]]), chunk=2)
    np.testing.assert_allclose(means[0], [0.5, 0.5])
    assert np.isnan(means[1]).all()
    np.testing.assert_allclose(means[2], [0.0, 1.0])


# ---- the random baseline -------------------------------------------------------------------------
def test_candidates_drop_distinct_exclusions_but_not_the_target():
    exclude = q.Ragged.from_lists([[1, 1, 2], [0, 3, -1], []])
    assert q.candidate_counts(6, np.array([5, 0, 2]), exclude).tolist() == [4, 5, 6]


def test_random_closed_form_is_exact_on_a_small_catalog_and_matches_a_seeded_simulation():
    five = q.random_metrics(np.array([5]))
    assert five["hr_10"] == 1.0
    assert five["ndcg_10"] == pytest.approx(np.mean([1 / np.log2(r + 2) for r in range(5)]))

    n_items, rounds = 30, 4000
    rng = np.random.default_rng(2026)
    lists = [[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14], [], [3, 4]]
    targets = np.array([20, 0, 4])  # user 2's target is one of its training items
    exclude = q.Ragged.from_lists(lists)
    expected = q.random_metrics(q.candidate_counts(n_items, targets, exclude))
    ranks = np.concatenate(
        [q.target_ranks(rng.random((3, n_items)), targets, exclude) for _ in range(rounds)]
    )  # (rounds * 3,) uniformly random scores
    simulated = q.rank_metrics(ranks)
    hr_se = np.sqrt(expected["hr_10"] * (1 - expected["hr_10"]) / ranks.size)
    assert simulated["hr_10"] == pytest.approx(expected["hr_10"], abs=4 * hr_se)
    assert simulated["ndcg_10"] == pytest.approx(expected["ndcg_10"], abs=4 * hr_se)
    assert expected["hr_10"] == pytest.approx(np.mean([10 / 15, 10 / 30, 10 / 29]))


# ---- grounding, specificity, review --------------------------------------------------------------
CATEGORIES = {
    1: ["Beauty", "Makeup", "Nails", "Nail Polish"],
    2: ["Beauty", "Hair Care", "Styling Products"],
    3: ["Beauty", "Skin Care", "Face"],
    5: ["Beauty", "Fragrance"],
}
REASONS = [
    "Needs to paint their nails",
    "Cares about hair styling",
    "Wants to smell good",
    "Wants to try new fragrance",
]
EVIDENCE = [[1], [2], [3], [5, 1]]
# MATCH[i][j]: reason i names a category of evidence j (by hand: "nails" ~ Nails, "hair" ~ Hair, ...)
MATCH = np.array([[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]])


def test_category_match_names_the_cited_items_and_the_shuffled_control_pairs_other_evidence():
    histories = [[1, 2], [1, 2], [3], [4, 5]]  # item 1 is not in the last user's history
    scores = q.grounding(REASONS, EVIDENCE, histories, CATEGORIES, seed=7)
    assert scores["category_match"] == 0.75
    assert scores["evidence_in_history"] == 4 / 5
    assert scores["motivations"] == 4
    order = np.random.default_rng(7).permutation(4)
    assert scores["category_match_shuffled"] == MATCH[np.arange(4), order].mean()
    assert not q.words_match(q.content_words("Cares about their looks"), q.content_words("Beauty Products"))


def test_in_range_share_counts_schema_valid_generations():
    assert q.in_range_share(9, 1) == 0.9
    assert q.in_range_share(0, 0) is None


def test_entropy_of_uniform_codes_is_log2_k_and_specificity_normalises_by_it():
    assert q.entropy_bits([0, 1, 2, 3] * 5) == pytest.approx(2.0)
    assert q.entropy_bits([7, 7, 7]) == 0.0
    out = q.specificity(["Wants  a", "wants a", "Needs b", "Cares c"], [0, 1, 2, 3], codebook_size=16)
    assert out["distinct_share"] == 0.75  # case and spacing ignored
    assert out["first_code_entropy"] == pytest.approx(2.0)
    assert out["first_code_entropy_norm"] == pytest.approx(1.0)  # log2(min(16, 4 users)) = 2
    assert q.specificity(["a"], None)["first_code_entropy"] is None


def test_review_summary_and_revision_gain():
    out = q.review_summary([True, False, True, False], [0, 1, 1, 2])
    assert out["accepted_share"] == 0.5 and out["revised_share"] == 0.75
    assert out["accepted_after_revision_share"] == pytest.approx(1 / 3)
    assert out["mean_rounds"] == 1.0
    gain = q.revision_gain([0.0, 0.5, 1.0], [1.0, 0.5, 0.5])  # gains +1, 0, -0.5
    assert gain == {"mean_gain": pytest.approx(1 / 6), "improved_share": 1 / 3, "worsened_share": 1 / 3, "users": 3}


# ---- inspect_motivations on Delta tables -------------------------------------------------------
ITEM_VECS = {1: [1, 0, 0], 2: [0, 1, 0], 3: [0, 0, 1], 4: [1, 1, 0], 5: [0, 1, 1]}  # item 6: no profile


def _motivation(user_id, status, history, motivations, text, embedding, accepted, rounds):
    return {
        "user_id": user_id,
        "status": status,
        "failure_reason": "",
        "motivation_text": text,
        "motivations_json": json.dumps(motivations),
        "review_rounds": rounds,
        "accepted": accepted,
        "history_item_ids": history,
        "embedding": embedding,
        "content_hash": "h",
        "prompt_version": "v",
        "model": "m",
        "attempts": 1,
    }


@pytest.fixture()
def warehouse(tmp_path, tracking_env):
    from momorec.config import load_config

    cfg = load_config(DEMO_CONFIG, [f"warehouse={tmp_path / 'wh'}", f"log_dir={tmp_path / 'logs'}"])
    cats = {**CATEGORIES, 4: ["Beauty", "Makeup", "Nails"], 6: ["Beauty", "Tools"]}
    items = [{"item_id": i, "item": f"I{i}", "title": f"t{i}", "categories": cats[i]} for i in range(1, 7)]
    delta.write(cfg.table_path("items"), pa.Table.from_pylist(items, schema=schemas.ITEMS))
    profiles = [
        {"item_id": i, "status": "ok", "embedding": [float(x) for x in v], "model": "m"} for i, v in ITEM_VECS.items()
    ]
    profiles.append({"item_id": 6, "status": "failed", "embedding": None, "model": "m"})
    delta.write(cfg.table_path("item_profiles"), pa.Table.from_pylist(profiles, schema=schemas.ITEM_PROFILES))
    sequences = [  # user 3's motivation failed: it counts only towards popularity
        {"user_id": 1, "train_items": [1, 2], "valid_item": 3, "test_item": 5},
        {"user_id": 2, "train_items": [3], "valid_item": 6, "test_item": 1},
        {"user_id": 3, "train_items": [1, 4], "valid_item": 2, "test_item": 3},
        {"user_id": 4, "train_items": [4, 5], "valid_item": 1, "test_item": 3},
    ]
    delta.write(cfg.table_path("sequences"), pa.Table.from_pylist(sequences, schema=schemas.SEQUENCES))
    m = [{"reason": r, "evidence_item_ids": e} for r, e in zip(REASONS, EVIDENCE, strict=True)]
    users = [
        _motivation(
            1, "ok", [1, 2], m[:2], "Needs to paint their nails. Cares about hair styling.", [0, 0, 2], True, 0
        ),
        _motivation(2, "ok", [3], m[2:3], "Wants to smell good.", [0.0, 0.0, 1.0], False, 1),
        _motivation(3, "failed", [1, 4], [], "", None, False, 0),
        _motivation(4, "ok", [4, 5], m[3:], "wants to  smell GOOD.", [1.0, 0.0, 0.0], True, 1),
    ]
    delta.write(cfg.table_path("user_motivations"), pa.Table.from_pylist(users, schema=schemas.USER_MOTIVATIONS))
    codes = [{"entity_type": "user", "entity_id": u, "codes": c} for u, c in ((1, [0, 1]), (2, [1, 0]), (4, [0, 0]))]
    codes.append({"entity_type": "item", "entity_id": 1, "codes": [5, 5]})
    delta.write(cfg.table_path("semantic_ids"), pa.Table.from_pylist(codes, schema=schemas.SEMANTIC_IDS))
    return cfg


def _analyst_stats(ok: int, invented: int) -> dict[str, AgentStats]:
    stats = AgentStats(generations=ok + invented + 5, ok=ok)
    stats.attempt_failures.update({"invented_items": invented, "schema": 5})
    return {"motivation_analyst": stats}


def test_inspect_motivations_computes_every_number_on_the_same_users(warehouse):
    from momorec.motivate.inspect import inspect_motivations

    result = inspect_motivations(warehouse, agent_stats=_analyst_stats(9, 1), chunk_users=2)
    assert (result.users, result.retrieval_users, result.items, result.items_embedded) == (3, 3, 6, 5)
    assert result.target_embedded_share == pytest.approx(2 / 3)  # user 2's validation item has no embedding
    # by hand, 0-based ranks of users 1, 2, 4 (training items excluded, ties against the target):
    # motivation 0, miss, 0; mean of the prompt history 2, miss, 2; popularity 2, 4, 0
    r = result.retrieval
    assert {name: s.users for name, s in r.items()} == dict.fromkeys(
        ("motivation", "history_mean", "popularity", "random"), 3
    )
    assert (r["motivation"].hr_10, r["motivation"].ndcg_10) == pytest.approx((2 / 3, 2 / 3))
    assert (r["history_mean"].hr_10, r["history_mean"].ndcg_10) == pytest.approx((2 / 3, 1 / 3))
    assert r["popularity"].ndcg_10 == pytest.approx((0.5 + 1 / np.log2(6) + 1) / 3)
    prefix = np.cumsum(1 / np.log2(np.arange(10) + 2))
    assert r["random"].ndcg_10 == pytest.approx(np.mean([prefix[3] / 4, prefix[4] / 5, prefix[3] / 4]))

    g = result.grounding
    assert (g.evidence_in_range, g.evidence_in_range_generations, g.stats_run_id) == (0.9, 10, None)
    assert (g.category_match, g.evidence_in_history, g.motivations) == (0.75, 4 / 5, 4)
    order = np.random.default_rng(warehouse.seed).permutation(4)
    assert g.category_match_shuffled == MATCH[np.arange(4), order].mean()

    s = result.specificity
    assert s.distinct_share == pytest.approx(2 / 3)
    h = -(2 / 3 * np.log2(2 / 3) + 1 / 3 * np.log2(1 / 3))
    assert (s.first_code_entropy, s.coded_users) == (pytest.approx(h), 3)
    assert s.first_code_entropy_norm == pytest.approx(h / np.log2(3))

    v = result.review
    assert (v.accepted_share, v.revised_share, v.accepted_after_revision_share) == pytest.approx((2 / 3, 2 / 3, 0.5))
    assert (v.ndcg_10_accepted, v.ndcg_10_not_accepted, v.users_accepted, v.users_not_accepted) == (1.0, 0.0, 2, 1)

    metrics = result.metrics()
    assert metrics["quality.retrieval.motivation.ndcg_10"] == pytest.approx(2 / 3)
    assert metrics["quality.grounding.category_match"] == 0.75
    assert metrics["quality.users"] == 3.0
    assert "quality.grounding.stats_run_id" not in metrics


def test_momorec_inspect_reads_the_motivate_runs_counters_and_logs_quality_metrics(warehouse):
    from typer.testing import CliRunner

    import mlflow
    from momorec.cli import app
    from momorec.tracking import stage_run

    with stage_run(warehouse, "motivate") as motivate:
        mlflow.log_dict({k: v.to_dict() for k, v in _analyst_stats(3, 1).items()}, "agent_stats.json")

    out = CliRunner().invoke(
        app,
        ["inspect", "-c", str(DEMO_CONFIG), "--json", "--set", f"warehouse={warehouse.warehouse}", "--set",
         f"log_dir={warehouse.log_dir}"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["grounding"]["stats_run_id"] == motivate.info.run_id
    assert result["grounding"]["evidence_in_range"] == 0.75

    run = mlflow.get_run(result["mlflow_run_id"])
    assert run.data.tags["momorec.stage"] == "inspect"
    assert run.data.metrics["quality.retrieval.motivation.ndcg_10"] == pytest.approx(2 / 3)
    assert run.data.metrics["quality.retrieval.random.hr_10"] == 1.0
    assert run.data.metrics["quality.grounding.evidence_in_range"] == 0.75
    assert run.data.metrics["quality.specificity.distinct_share"] == pytest.approx(2 / 3)
    assert run.data.metrics["quality.review.accepted_share"] == pytest.approx(2 / 3)

    table = CliRunner().invoke(
        app,
        ["inspect", "-c", str(DEMO_CONFIG), "--set", f"warehouse={warehouse.warehouse}", "--set",
         f"log_dir={warehouse.log_dir}"],
    )  # fmt: skip
    assert table.exit_code == 0, table.output
    assert "quality.retrieval.motivation.ndcg_10" in table.output and "0.6667" in table.output
