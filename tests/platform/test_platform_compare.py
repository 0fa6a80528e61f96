"""`momorec compare` on a real sqlite MLflow store (fixture `tracking_env`) holding runs the test logs itself."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from momorec.platform import compare
from momorec.platform.cli_commands import app

EXPERIMENT = "compare-test"
# seed -> (test.full.ndcg_10, test.sampled100.hr_10): MoMoREC wins full ranking, the baseline wins sampled.
BASELINE = {1: (0.040, 0.300), 2: (0.042, 0.320)}
MOMOREC = {1: (0.050, 0.280), 2: (0.054, 0.290)}


def _run(client, exp_id: str, name: str, tags: dict, params: dict | None = None, metrics: dict | None = None) -> str:
    run = client.create_run(exp_id, run_name=name, tags=tags)
    for key, value in (params or {}).items():
        client.log_param(run.info.run_id, key, value)
    for key, value in (metrics or {}).items():
        client.log_metric(run.info.run_id, key, value)
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def _log_model(client, exp_id: str, semantic: str, seeds: dict[int, tuple[float, float]]) -> tuple[str, str]:
    """A train run (its config as params) and an evaluate run with one nested run per seed, as the stages log them."""
    train = _run(
        client,
        exp_id,
        "train",
        {"momorec.stage": "train"},
        {
            "train.model.architecture": "sasrec",
            "train.model.item_semantic.mode": semantic,
            "train.model.user_semantic.mode": semantic,
            "train.seeds": json.dumps(sorted(seeds)),
        },
        {"valid.full.ndcg_10.mean": 0.07 if semantic == "frozen" else 0.06},
    )
    ndcgs, hrs = [v[0] for v in seeds.values()], [v[1] for v in seeds.values()]
    evaluate = _run(
        client,
        exp_id,
        "evaluate",
        {"momorec.stage": "evaluate"},
        {"train_run_id": train},
        {
            "test.full.ndcg_10.mean": sum(ndcgs) / 2,
            "test.full.ndcg_10.std": abs(ndcgs[0] - ndcgs[1]) / 2,
            "test.sampled100.hr_10.mean": sum(hrs) / 2,
            "test.sampled100.hr_10.std": abs(hrs[0] - hrs[1]) / 2,
            "wall_time_s": 10.0 if semantic == "none" else 12.0,
        },
    )
    for seed, (ndcg, hr) in seeds.items():
        _run(
            client,
            exp_id,
            f"seed-{seed}",
            {"momorec.seed": str(seed), "mlflow.parentRunId": evaluate},
            metrics={"test.full.ndcg_10": ndcg, "test.sampled100.hr_10": hr},
        )
    return train, evaluate


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """A real sqlite MLflow store (as the `tracking_env` fixture makes), built once for this module."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('compare') / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp_id = client.create_experiment(EXPERIMENT)
    base = _log_model(client, exp_id, "none", BASELINE)
    ours = _log_model(client, exp_id, "frozen", MOMOREC)
    return {"uri": uri, "baseline": base, "momorec": ours}


def test_parse_metric_reads_protocol_and_direction():
    info = compare.parse_metric("test.sampled100.hr_10.mean")
    assert (info.name, info.split, info.protocol, info.measure, info.higher_is_better) == (
        "test.sampled100.hr_10",
        "test",
        "sampled100",
        "hr_10",
        True,
    )
    assert compare.protocol_label(info) == "sampled, 100 negatives"
    assert compare.parse_metric("wall_time_s").higher_is_better is False
    assert compare.parse_metric("compare.test.full.ndcg_10.p_value").higher_is_better is False


def test_collect_folds_seeds_and_marks_best_per_metric(experiment):
    result = compare.collect(EXPERIMENT, tracking_uri=experiment["uri"])
    assert [m.name for m in result.metrics] == ["test.full.ndcg_10", "test.sampled100.hr_10", "valid.full.ndcg_10"]
    assert len(result.runs) == 4  # 2 train + 2 evaluate; the 4 per-seed runs fold into their parents
    by_id = {row.run_id: row for row in result.runs}
    base_eval, ours_eval = by_id[experiment["baseline"][1]], by_id[experiment["momorec"][1]]
    assert base_eval.seeds == [1, 2] and ours_eval.seeds == [1, 2]
    assert base_eval.model == "sasrec (baseline)" and ours_eval.model == "sasrec + item:frozen, user:frozen"
    assert ours_eval.values["test.full.ndcg_10"] == pytest.approx(0.052)
    assert ours_eval.stds["test.full.ndcg_10"] == pytest.approx(0.002)
    best = {m.name: m.best_run_ids for m in result.metrics}
    assert best["test.full.ndcg_10"] == [ours_eval.run_id]
    assert best["test.sampled100.hr_10"] == [base_eval.run_id]  # best is per metric, not per run
    assert best["valid.full.ndcg_10"] == [experiment["momorec"][0]]

    lower = compare.collect(EXPERIMENT, ["wall_time_s"], tracking_uri=experiment["uri"])
    assert lower.metrics[0].best_run_ids == [base_eval.run_id]  # time: smaller wins
    assert len(compare.collect(EXPERIMENT, ["test.full.ndcg_10"], experiment["uri"], per_seed=True).runs) == 6


def test_cli_table_plot_and_json(experiment, tmp_path):
    runner = CliRunner()
    png = tmp_path / "cmp.png"
    result = runner.invoke(app, ["compare", "-e", EXPERIMENT, "--tracking-uri", experiment["uri"], "--plot", str(png)])
    assert result.exit_code == 0, result.output
    assert "★" in result.output and "full ranking" in result.output and "sampled, 100 negatives" in result.output
    assert "sasrec (baseline)" in result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    height, width = matplotlib.image.imread(png).shape[:2]
    assert width > 500 and height > 300

    result = runner.invoke(
        app, ["compare", "-e", EXPERIMENT, "--tracking-uri", experiment["uri"], "--json", "-m", "test.full.ndcg_10"]
    )
    payload = json.loads(result.stdout)
    assert payload["metrics"][0]["best_run_ids"] == [experiment["momorec"][1]]
    assert {r["run_id"] for r in payload["runs"]} == {experiment["baseline"][1], experiment["momorec"][1]}


def test_cli_errors_name_what_exists(experiment):
    runner = CliRunner()
    result = runner.invoke(
        app, ["compare", "-e", EXPERIMENT, "--tracking-uri", experiment["uri"], "-m", "test.full.mrr_3"]
    )
    assert result.exit_code == 2 and "logged by no run" in result.output and "test.full.ndcg_10" in result.output
    result = runner.invoke(app, ["compare", "-e", "nope", "--tracking-uri", experiment["uri"]])
    assert result.exit_code == 2 and "no experiment 'nope'" in result.output and EXPERIMENT in result.output
