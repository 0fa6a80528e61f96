"""The train and evaluate stages end to end: Delta in, MLflow and Delta out, semantic IDs, significance."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from training_toydata import write_semantic_ids

from momorec.evaluate.stage import run_evaluate
from momorec.storage import delta
from momorec.train.stage import run_train

LEVELS, K, DIM = 2, 4, 12


def write_codebook(dataset_root: str, entity_type: str, seed: int = 0) -> str:
    """A frozen codebook in the quantize stage's layout (codebook.npz + meta.json + LATEST)."""
    rng = np.random.default_rng(seed)
    version = f"{entity_type}cb{seed}"
    folder = os.path.join(dataset_root, "codebooks", entity_type, version)
    os.makedirs(folder, exist_ok=True)
    np.savez(
        os.path.join(folder, "codebook.npz"),
        centroids=rng.normal(size=(LEVELS, K, DIM)).astype(np.float32),
        codes_per_level=np.full(LEVELS, K, np.int64),
        biases=np.zeros((LEVELS, K), np.float32),
        pca_mean=np.zeros(DIM, np.float32),
    )
    with open(os.path.join(folder, "meta.json"), "w", encoding="utf-8") as fh:
        json.dump({"version": version, "fit_rel_error": 0.1}, fh)
    with open(os.path.join(dataset_root, "codebooks", entity_type, "LATEST"), "w", encoding="utf-8") as fh:
        fh.write(version + "\n")
    return version


def quick(cfg, *overrides: tuple[str, object]):
    cfg = cfg.model_copy(deep=True)
    cfg.train.epochs = 3
    cfg.train.patience = 3
    for path, value in overrides:
        node = cfg
        *parents, last = path.split(".")
        for part in parents:
            node = getattr(node, part)
        setattr(node, last, value)
    return cfg


def test_train_then_evaluate_with_mlflow_and_significance(toy_cfg):
    import mlflow

    cfg = quick(toy_cfg, ("train.seeds", [1, 2]))
    trained = run_train(cfg, show_progress=False)
    assert trained.seeds == [1, 2] and len(trained.models) == 2
    assert all(os.path.isfile(m["checkpoint"]) for m in trained.models)
    assert trained.valid["valid.full.ndcg_10"]["n"] == 2
    assert delta.read(cfg.table_path("trained_models")).num_rows == 2

    client = mlflow.MlflowClient()
    seed_run = client.get_run(trained.models[0]["seed_run_id"])
    assert "valid.full.ndcg_10" in seed_run.data.metrics and "train.loss" in seed_run.data.metrics
    history = client.get_metric_history(seed_run.info.run_id, "train.loss")
    assert len(history) == 3  # one point per epoch
    stage_run = client.get_run(trained.mlflow_run_id)
    assert stage_run.data.params["delta.read.sequences"] == "0"
    assert stage_run.data.params["train.model.architecture"] == "sasrec"
    versions = client.search_model_versions("name='momorec-toy-sasrec'")
    assert len(versions) == 2  # one registered version per seed
    import pandas as pd

    loaded = mlflow.pyfunc.load_model(trained.models[0]["model_uri"])
    out = loaded.predict(pd.DataFrame({"user_id": [1], "history": [[3, 4]]}), params={"k": 5})
    items = list(out["items"][0])
    assert len(items) == 5 and not {0, 3, 4} & set(items)  # padding and seen items are never recommended

    evaluated = run_evaluate(cfg, show_progress=False)
    assert evaluated.train_run_id == trained.mlflow_run_id
    assert set(evaluated.metrics) == {"full", "sampled10"}
    assert evaluated.metrics["full"]["ndcg_10"]["n"] == 2
    assert 0 <= evaluated.metrics["full"]["ndcg_10"]["mean"] <= 1
    assert set(evaluated.per_seed["1"]) >= {"test.full.ndcg_10", "test.sampled10.hr_10", "test.full.hr_20"}
    eval_run = client.get_run(evaluated.mlflow_run_id)
    assert "test.full.ndcg_10.mean" in eval_run.data.metrics and "test.full.ndcg_10.std" in eval_run.data.metrics
    ranks = delta.read(cfg.table_path("evaluation_ranks"))
    assert ranks.num_rows == 2 * 2 * 60  # seeds x protocols x users

    # a second, untrained-ish run (1 epoch, tiny lr) compared with the first: paired tests on the same users
    weak = quick(
        cfg, ("train.seeds", [1]), ("train.epochs", 1), ("train.learning_rate", 1e-5), ("train.log_model", False)
    )
    weak_run = run_train(weak, show_progress=False)
    weak_eval = quick(weak, ("evaluate.compare_with", trained.mlflow_run_id), ("evaluate.protocols", ["full"]))
    compared = run_evaluate(weak_eval, show_progress=False)
    assert compared.train_run_id == weak_run.mlflow_run_id
    sig = compared.significance["test.full.ndcg_10"]
    assert sig["n"] == 60 and sig["mean_diff"] < 0 and sig["wilcoxon_pvalue"] < 0.05


def test_semantic_ids_frozen_items_and_trainable_users_with_a_missing_user(toy_cfg):
    root = toy_cfg.dataset_root
    write_semantic_ids(root, "item", 25, LEVELS, K, version="itemcb0")
    write_semantic_ids(root, "user", 60, LEVELS, K, version="usercb1", seed=1, skip={7})
    write_codebook(root, "item", seed=0)
    cfg = quick(
        toy_cfg,
        ("train.model.item_semantic.mode", "frozen"),
        ("train.model.user_semantic.mode", "trainable"),
        ("train.log_model", False),
    )
    with pytest.raises(ValueError, match="misses 1 of 60 users"):
        run_train(cfg, show_progress=False)
    cfg.train.model.user_semantic.on_missing = "reserved"
    trained = run_train(cfg, show_progress=False)
    assert trained.semantic["semantic.item.version"] == "itemcb0"
    assert trained.semantic["semantic.user.missing"] == 1
    row = delta.read(cfg.table_path("trained_models")).to_pylist()[-1]
    assert row["item_codebook_version"] == "itemcb0" and row["user_codebook_version"] == "usercb1"
    evaluated = run_evaluate(cfg, show_progress=False)
    assert evaluated.metrics["full"]["hr_10"]["n"] == 1


def test_train_fails_clearly_without_tables(tmp_path, tracking_env):
    from momorec.config import load_config

    cfg = load_config(None, ["dataset=nothing", f"warehouse={tmp_path}"])
    with pytest.raises(FileNotFoundError, match="run `momorec ingest` first"):
        run_train(cfg, show_progress=False)
    with pytest.raises(FileNotFoundError, match="run `momorec train` first"):
        run_evaluate(cfg, show_progress=False)
