"""The quantize stage end to end: synthetic motivate outputs in Delta -> semantic_ids + codebooks + MLflow."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from momorec.config import load_config
from momorec.quantize.codebook import latest_codebook_dir, load_codebook
from momorec.quantize.config import QuantizeConfig
from momorec.quantize.stage import run_quantize
from momorec.storage import delta, schemas

DIM = 24
N_USERS, TRAIN_ITEMS, ALL_ITEMS = 60, 40, 50  # items 41..50 occur only as valid/test items


def _vectors_table(id_name: str, ids, vectors, status=None) -> pa.Table:
    return pa.table(
        {
            id_name: pa.array(ids, pa.int64()),
            "status": pa.array(status or ["ok"] * len(ids), pa.string()),
            "embedding": pa.array(
                [None if v is None else list(map(float, v)) for v in vectors], pa.list_(pa.float32())
            ),
        }
    )


@pytest.fixture()
def warehouse_cfg(tmp_path, tracking_env, make_clustered):
    """Demo config on a tmp warehouse holding sequences, item_profiles and user_motivations."""
    cfg = load_config(
        "configs/demo.yaml",
        [
            f"warehouse={tmp_path / 'wh'}",
            "quantize.pca_dim=8",
            "quantize.levels=2",
            "quantize.codes=[6, 4]",
            "quantize.iterations=8",
            "quantize.use_ray=never",
        ],
    )
    rng = np.random.default_rng(0)
    rows = []
    for user in range(1, N_USERS + 1):
        train = rng.choice(np.arange(1, TRAIN_ITEMS + 1), size=4, replace=False).tolist()
        valid, test = (
            int(rng.integers(TRAIN_ITEMS + 1, ALL_ITEMS + 1)),
            int(rng.integers(TRAIN_ITEMS + 1, ALL_ITEMS + 1)),
        )
        items = [*train, valid, test]
        rows.append(
            {"user_id": user, "items": items, "train_items": train, "valid_item": valid, "test_item": test, "length": 6}
        )
    delta.write(cfg.table_path("sequences"), pa.Table.from_pylist(rows, schema=schemas.SEQUENCES))
    # every train item appears in some prefix (60 users x 4 draws over 40 items): check, don't hope
    seen = {i for r in rows for i in r["train_items"]}
    assert seen == set(range(1, TRAIN_ITEMS + 1))

    item_vecs = make_clustered(ALL_ITEMS, DIM, 6, seed=1)
    item_vecs[TRAIN_ITEMS:] += 40.0  # valid/test-only items sit far away: a leak would move the PCA mean
    bad = [[np.nan] * DIM, [1.0] * (DIM - 1), None]
    items = _vectors_table(
        "item_id",
        list(range(1, ALL_ITEMS + 1)) + [51, 52, 53, 54],
        list(item_vecs) + bad + [[0.0] * DIM],
        ["ok"] * (ALL_ITEMS + 3) + ["failed"],
    )
    delta.write(cfg.table_path("item_profiles"), items)
    user_vecs = make_clustered(N_USERS, DIM, 5, seed=2)
    users = _vectors_table("user_id", list(range(1, N_USERS + 1)), list(user_vecs))
    delta.write(cfg.table_path("user_motivations"), users)
    return cfg, item_vecs


def _semantic_ids(cfg, entity):
    table = delta.read(cfg.table_path("semantic_ids"))
    table = table.filter(pc.equal(table.column("entity_type"), entity)).sort_by("entity_id")
    return table.to_pydict()


def test_stage_end_to_end(warehouse_cfg):
    import mlflow

    cfg, item_vecs = warehouse_cfg
    result = run_quantize(cfg, show_progress=False)
    item, user = result.entities["item"], result.entities["user"]

    # counts: rows in = rows coded + rows rejected, each reason counted
    assert (item.rows_in, item.rows_coded, item.rows_rejected) == (54, 50, 4)
    assert item.rejects == {"non_finite": 1, "wrong_dim": 1, "null_embedding": 1, "status_not_ok": 1}
    assert (user.rows_in, user.rows_coded, user.rows_rejected) == (60, 60, 0)

    # leakage: only items of some train prefix are fit members; the PCA mean is theirs alone
    assert (item.fit_rows, item.assigned_rows) == (TRAIN_ITEMS, ALL_ITEMS - TRAIN_ITEMS)
    book = load_codebook(latest_codebook_dir(cfg, "item"))
    assert sorted(book.fit_entity_ids.tolist()) == list(range(1, TRAIN_ITEMS + 1))
    assert book.version() == item.codebook_version  # the loaded arrays hash to their folder's name
    np.testing.assert_allclose(book.projection.mean, item_vecs[:TRAIN_ITEMS].mean(axis=0), atol=1e-4)
    rows = _semantic_ids(cfg, "item")
    assert rows["entity_id"] == list(range(1, ALL_ITEMS + 1))
    assert rows["fit_member"] == [i <= TRAIN_ITEMS for i in rows["entity_id"]]
    assert all(len(c) == 2 and 0 <= c[0] < 6 and 0 <= c[1] < 4 for c in rows["codes"])
    assert set(rows["codebook_version"]) == {item.codebook_version}
    assert all(r >= 0 for r in rows["residual_norm"])
    assert item.drift is not None and item.drift > 1.0  # the far-away assigned items fit worse
    assert len(_semantic_ids(cfg, "user")["entity_id"]) == 60

    # codebook artifact on disk
    assert book.centroids.shape == (2, 6, 8) and book.codes_per_level.tolist() == [6, 4]
    with open(os.path.join(item.codebook_dir, "meta.json")) as fh:
        meta = json.load(fh)
    assert meta["fit_rel_error"] == pytest.approx(item.fit_rel_error)
    assert meta["entity_type"] == "item" and len(meta["metrics"]) == 2

    # per-level metrics: error falls level by level
    assert item.levels[1].rel_error < item.levels[0].rel_error < 1.0
    assert 0 < item.levels[0].utilization <= 1.0

    # MLflow: metrics, table versions and the codebook as artifacts of the stage run
    run = mlflow.get_run(result.mlflow_run_id)
    assert run.data.metrics["item.all.L1.rel_error"] == pytest.approx(item.levels[1].rel_error)
    assert run.data.params["delta.written.semantic_ids"] == str(result.table_version)
    client = mlflow.tracking.MlflowClient()
    listed = [a.path for a in client.list_artifacts(result.mlflow_run_id, f"codebooks/item/{item.codebook_version}")]
    assert any(p.endswith("codebook.npz") for p in listed) and any(p.endswith("meta.json") for p in listed)


def test_stage_rerun_is_deterministic_and_assign_mode_freezes(warehouse_cfg):
    cfg, _ = warehouse_cfg
    first = run_quantize(cfg, show_progress=False)
    codes_before = _semantic_ids(cfg, "item")["codes"]
    again = run_quantize(cfg, show_progress=False)
    assert again.entities["item"].codebook_version == first.entities["item"].codebook_version
    assert _semantic_ids(cfg, "item")["codes"] == codes_before

    frozen = run_quantize(
        cfg.model_copy(update={"quantize": cfg.quantize.model_copy(update={"mode": "assign"})}), False
    )
    assert frozen.entities["item"].action == "assign"
    assert frozen.entities["item"].codebook_version == first.entities["item"].codebook_version
    assert _semantic_ids(cfg, "item")["codes"] == codes_before
    assert frozen.table_version == again.table_version + 1


def test_stage_only_users_keeps_item_rows(warehouse_cfg):
    cfg, _ = warehouse_cfg
    run_quantize(cfg, show_progress=False)
    users_only = cfg.model_copy(update={"quantize": cfg.quantize.model_copy(update={"entities": ["user"]})})
    result = run_quantize(users_only, show_progress=True)  # the rich progress bar and metrics table path
    assert list(result.entities) == ["user"]
    assert len(_semantic_ids(cfg, "item")["entity_id"]) == ALL_ITEMS  # untouched


def test_per_entity_settings_code_items_and_users_apart_in_one_run(warehouse_cfg):
    cfg, _ = warehouse_cfg
    shared = run_quantize(cfg, show_progress=False)
    shared_user_codes = _semantic_ids(cfg, "user")["codes"]
    per_entity = cfg.quantize.model_dump() | {
        "per_entity": {"item": {"pca_dim": 12, "pca_whiten": True, "levels": 3, "codes": [5, 4, 3]}}
    }
    apart = cfg.model_copy(update={"quantize": QuantizeConfig.model_validate(per_entity)})
    result = run_quantize(apart, show_progress=False)
    item, user = result.entities["item"], result.entities["user"]
    assert (item.reduced_dim, len(item.levels)) == (12, 3)
    assert all(len(c) == 3 and c[0] < 5 and c[1] < 4 and c[2] < 3 for c in _semantic_ids(cfg, "item")["codes"])
    with open(os.path.join(item.codebook_dir, "meta.json")) as fh:
        meta = json.load(fh)
    assert meta["config"]["pca_whiten"] and meta["config"]["codes"] == [5, 4, 3]  # what the codebook was fit with
    # the users keep the shared settings: the same codebook and codes as a run without per_entity
    assert (user.reduced_dim, len(user.levels)) == (8, 2)
    assert user.codebook_version == shared.entities["user"].codebook_version
    assert _semantic_ids(cfg, "user")["codes"] == shared_user_codes


def test_stage_errors_are_clear(warehouse_cfg):
    cfg, _ = warehouse_cfg
    too_many = cfg.model_copy(update={"quantize": cfg.quantize.model_copy(update={"codes": [64, 4]})})
    with pytest.raises(ValueError, match="K=64"):
        run_quantize(too_many, show_progress=False)
    missing = cfg.model_copy(update={"dataset": "nothing_here"})
    with pytest.raises(FileNotFoundError, match="sequences"):
        run_quantize(missing, show_progress=False)


@pytest.mark.ray
def test_stage_on_ray_matches_local(warehouse_cfg, ray_local):
    cfg, _ = warehouse_cfg
    run_quantize(cfg, show_progress=False)
    local = _semantic_ids(cfg, "user")["codes"]
    on_ray = cfg.model_copy(update={"quantize": cfg.quantize.model_copy(update={"use_ray": "always", "num_shards": 2})})
    result = run_quantize(on_ray, show_progress=False)
    assert result.entities["user"].used_ray
    assert _semantic_ids(cfg, "user")["codes"] == local


def test_cli_json(warehouse_cfg):
    from typer.testing import CliRunner

    from momorec.cli import app

    cfg, _ = warehouse_cfg
    args = ["quantize", "--config", "configs/demo.yaml", "--json", "--set", f"warehouse={cfg.warehouse}"]
    for key in ("pca_dim=8", "levels=2", "codes=[6,4]", "iterations=4", "use_ray=never"):
        args += ["--set", f"quantize.{key}"]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    payload = json.loads(out.stdout.strip().splitlines()[-1])
    assert payload["stage"] == "quantize" and set(payload["entities"]) == {"item", "user"}
    assert payload["entities"]["item"]["levels"][0]["codes"] == 6


def test_auto_mode_assigns_until_drift_then_refits(warehouse_cfg, make_clustered):
    cfg, _ = warehouse_cfg
    first = run_quantize(cfg, show_progress=False)
    auto = cfg.model_copy(update={"quantize": cfg.quantize.model_copy(update={"mode": "auto"})})
    same = run_quantize(auto, show_progress=False)
    assert {s.action for s in same.entities.values()} == {"assign"}  # nothing new: frozen codebooks kept

    far = make_clustered(20, DIM, 2, seed=3) + 50.0  # 20 new users unlike any seen at fit time
    delta.write(
        cfg.table_path("user_motivations"), _vectors_table("user_id", list(range(61, 81)), list(far)), mode="append"
    )
    drifted = run_quantize(auto, show_progress=False)
    assert drifted.entities["item"].action == "assign"
    assert drifted.entities["user"].action == "refit"
    assert drifted.entities["user"].codebook_version != first.entities["user"].codebook_version
    assert drifted.entities["user"].rows_coded == 80 and drifted.entities["user"].fit_rows == 80


def test_small_read_batches_give_the_same_codes_and_a_capped_fit_sees_a_seeded_sample(warehouse_cfg):
    """The stage reads the embedding files a batch at a time (quantize.batch_rows): any batch size codes every
    row alike; quantize.fit_max_rows caps the fit to a seeded sample and still codes every entity."""
    cfg, _ = warehouse_cfg
    run_quantize(cfg, show_progress=False)
    whole = {e: _semantic_ids(cfg, e) for e in ("item", "user")}
    small = cfg.model_copy(update={"quantize": cfg.quantize.model_copy(update={"batch_rows": 7})})
    run_quantize(small, show_progress=False)
    for entity in ("item", "user"):
        again = _semantic_ids(small, entity)
        assert again["codes"] == whole[entity]["codes"] and again["fit_member"] == whole[entity]["fit_member"]

    capped = cfg.model_copy(update={"quantize": cfg.quantize.model_copy(update={"fit_max_rows": 30})})
    result = run_quantize(capped, show_progress=False)
    user = result.entities["user"]
    assert (user.fit_rows, user.assigned_rows, user.rows_coded) == (30, N_USERS - 30, N_USERS)
    members = _semantic_ids(capped, "user")["fit_member"]
    run_quantize(capped, show_progress=False)
    assert _semantic_ids(capped, "user")["fit_member"] == members, "the sample is seeded"
    assert result.entities["item"].fit_rows == 30 and result.entities["item"].rows_coded == ALL_ITEMS
