"""`momorec train` and `momorec evaluate` from the CLI on the demo sample, after the real ingest stage."""

from __future__ import annotations

import json

import pytest
from tests_demo_paths import DEMO_CONFIG  # noqa: F401  (documents which config this runs)
from typer.testing import CliRunner

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def test_cli_train_and_evaluate_on_the_demo(spark, demo_cfg, tmp_path):
    from momorec.cli import app
    from momorec.ingest.stage import run_ingest

    ingest = run_ingest(demo_cfg, show_progress=False)
    assert ingest.users > 0
    common = [
        "--config",
        str(DEMO_CONFIG),
        "--set",
        f"warehouse={demo_cfg.warehouse}",
        "--set",
        "train.model.item_semantic.mode=none",
        "--set",
        "train.model.user_semantic.mode=none",
        "--set",
        "train.launcher=local",
        "--set",
        "train.epochs=3",
        "--set",
        "train.seeds=[1, 2]",
    ]
    runner = CliRunner()
    trained = runner.invoke(app, ["train", *common, "--json"])
    assert trained.exit_code == 0, trained.output
    train_result = json.loads(trained.stdout.strip().splitlines()[-1])
    assert train_result["users"] == ingest.users and len(train_result["models"]) == 2

    evaluated = runner.invoke(app, ["evaluate", *common, "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    result = json.loads(evaluated.stdout.strip().splitlines()[-1])
    assert result["train_run_id"] == train_result["mlflow_run_id"]
    assert result["metrics"]["full"]["ndcg_10"]["n"] == 2
    assert result["metrics"]["sampled100"]["hr_10"]["mean"] >= result["metrics"]["full"]["hr_10"]["mean"]

    bad = runner.invoke(
        app, ["train", *common, "--set", "train.model.item_semantic.mode=frozen", "--set", "dataset=absent"]
    )
    assert bad.exit_code == 1 and "momorec ingest" in bad.output
