"""Submission pieces without a cluster: token sources, redaction, entrypoint, runtime env, overlays."""

from __future__ import annotations

import io
import shlex
from pathlib import Path

import pytest

from momorec.config import ConfigError, load_config
from momorec.platform import auth, overlay, submit

REPO = Path(__file__).resolve().parents[2]


# ---- token ------------------------------------------------------------------------------------


def test_token_order_follows_ray(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # ~/.ray/auth_token under a fresh home
    path_file = tmp_path / "path-token"
    path_file.write_text("from-path\n")
    option_file = tmp_path / "option-token"
    option_file.write_text("from-option")
    env = {"RAY_AUTH_TOKEN": "from-env", "RAY_AUTH_TOKEN_PATH": str(path_file)}

    assert auth.resolve_token(option_file, env).secret.get_secret_value() == "from-option"
    assert auth.resolve_token(None, env).secret.get_secret_value() == "from-env"
    assert auth.resolve_token(None, {"RAY_AUTH_TOKEN_PATH": str(path_file)}).secret.get_secret_value() == "from-path"
    assert auth.resolve_token(None, {}) is None
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("from-default")
    default = auth.resolve_token(None, {})
    assert default.secret.get_secret_value() == "from-default" and "default token file" in default.source


def test_named_but_unusable_token_file_is_an_error(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("  \n")
    with pytest.raises(auth.TokenError, match="is empty"):
        auth.resolve_token(empty, {})
    with pytest.raises(auth.TokenError, match="cannot read"):
        auth.resolve_token(None, {"RAY_AUTH_TOKEN_PATH": str(tmp_path / "missing")})


def test_token_is_masked_in_repr_and_messages():
    token = auth.RayToken(auth.SecretStr("s3cr3t-value"), "$RAY_AUTH_TOKEN")
    assert "s3cr3t-value" not in repr(token) and "s3cr3t-value" not in str(token)
    assert token.headers() == {"Authorization": "Bearer s3cr3t-value"}
    assert token.redact("bad header Bearer s3cr3t-value!") == "bad header Bearer ***!"


def test_redacting_writer_masks_a_token_split_across_chunks():
    token = auth.RayToken(auth.SecretStr("ABCDEFGH"), "test")
    out = io.StringIO()
    writer = submit.RedactingWriter(out, token)
    for chunk in ["log: AB", "CD", "EFGH tail A", "Bx\n", "ABC"]:
        writer.write(chunk)
    writer.close()
    assert out.getvalue() == "log: *** tail ABx\nABC"


# ---- the job ----------------------------------------------------------------------------------


def test_stage_entrypoint_is_the_cli_with_quoted_arguments():
    entry = submit.stage_entrypoint(
        "refresh", "configs/demo.yaml", ["train.seeds=[1, 2]"], ["--new-logs", "s3://b/d=1/"]
    )
    assert shlex.split(entry) == [
        "python",
        "-m",
        "momorec.cli",
        "refresh",
        "--config",
        "configs/demo.yaml",
        "--set",
        "train.seeds=[1, 2]",
        "--new-logs",
        "s3://b/d=1/",
    ]


def test_job_config_path_is_relative_to_the_upload(tmp_path):
    assert submit.job_config_path(REPO / "configs" / "demo.yaml", str(REPO)) == "configs/demo.yaml"
    outside = tmp_path / "c.yaml"
    outside.write_text("dataset: x\n")
    with pytest.raises(submit.SubmitError, match="outside the uploaded working dir"):
        submit.job_config_path(outside, str(REPO))
    assert submit.job_config_path("/cluster/conf.yaml", None) == "/cluster/conf.yaml"


def test_runtime_env_carries_code_env_and_packages_but_never_the_token():
    opts = submit.SubmitOptions(address="http://h:8265", env={"EXTRA": "1"}, pip=["tqdm==4.66.0"])
    env = submit.runtime_env(opts, None, environ={"MLFLOW_TRACKING_URI": "http://mlflow:5000", "UNRELATED": "x"})
    assert env["working_dir"] == str(REPO)
    assert ".venv" in env["excludes"] and "warehouse" in env["excludes"]
    assert env["env_vars"] == {"MLFLOW_TRACKING_URI": "http://mlflow:5000", "EXTRA": "1"}
    assert env["pip"] == ["tqdm==4.66.0"]

    token = auth.RayToken(auth.SecretStr("tok-123"), "test")
    with pytest.raises(submit.SubmitError, match="RAY_AUTH_TOKEN"):
        submit.runtime_env(opts.model_copy(update={"env": {"RAY_AUTH_TOKEN": "tok-123"}}), token, environ={})
    with pytest.raises(submit.SubmitError, match="SOME_VAR") as err:
        submit.runtime_env(opts.model_copy(update={"env": {"SOME_VAR": "x tok-123"}}), token, environ={})
    assert "tok-123" not in str(err.value)
    assert "working_dir" not in submit.runtime_env(opts.model_copy(update={"working_dir": None}), None, environ={})


def test_unreachable_head_is_a_clear_error():
    with pytest.raises(submit.SubmitError, match="cannot reach the Ray dashboard"):
        submit.connect("http://127.0.0.1:9", None)


def test_submittable_commands_come_from_the_cli():
    from momorec.platform.cli_commands import _registered_commands

    names = _registered_commands()
    assert {"ingest", "train", "evaluate", "run", "config"} <= set(names)
    assert "submit" not in names


# ---- overlays ---------------------------------------------------------------------------------


def test_spark_cluster_overlay_applies_on_a_dataset_config():
    sets = overlay.overlay_sets(REPO / "infra" / "spark-cluster.yaml")
    cfg = load_config(REPO / "configs" / "beauty.yaml", sets)
    assert cfg.spark.master.startswith(("spark://", "k8s://", "yarn"))
    assert cfg.spark.shuffle_partitions >= 64
    assert cfg.spark.conf["spark.executor.memory"]
    # the dataset's own settings survive the overlay
    assert cfg.dataset == "beauty" and cfg.quantize.codes == 256


def test_overlay_leaves_and_dotted_maps(tmp_path):
    path = tmp_path / "o.yaml"
    path.write_text(
        "spark:\n  master: spark://m:7077\n  conf: {spark.a.b: '1'}\ntrain:\n  model: {architecture: gru4rec}\n"
    )
    assert overlay.overlay_sets(path) == [
        'spark.master="spark://m:7077"',
        'spark.conf={"spark.a.b":"1"}',
        'train.model.architecture="gru4rec"',
    ]
    cfg = load_config(REPO / "configs" / "demo.yaml", overlay.overlay_sets(path))
    assert cfg.train.model.architecture == "gru4rec" and cfg.train.model.max_len == 50  # siblings kept
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        overlay.overlay_sets(bad)


# ---- the command line (no cluster: --dry-run) -------------------------------------------------


def test_cli_dry_run_builds_the_job_without_submitting(tmp_path):
    import json

    from typer.testing import CliRunner

    from momorec.platform.cli_commands import app

    token_file = tmp_path / "token"
    token_file.write_text("tok-dry-run-123")
    args = [
        "submit",
        "recommend",
        "-c",
        str(REPO / "configs" / "demo.yaml"),
        "--address",
        "http://head:8265",
        "--overlay",
        str(REPO / "infra" / "spark-cluster.yaml"),
        "--set",
        "seed=7",
        "--env",
        "FOO=bar",
        "--token-file",
        str(token_file),
        "--dry-run",
        "--json",
        "--",
        "--top-k",
        "5",
    ]
    result = CliRunner().invoke(app, args, env={"MLFLOW_TRACKING_URI": "http://mlflow:5000"})
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    entry = shlex.split(plan["entrypoint"])
    assert entry[:6] == ["python", "-m", "momorec.cli", "recommend", "--config", "configs/demo.yaml"]
    sets = [entry[i + 1] for i, a in enumerate(entry) if a == "--set"]
    assert sets[0].startswith("spark.master=") and sets[-1] == "seed=7"  # overlay first, the command line wins
    assert entry[-2:] == ["--top-k", "5"]
    assert plan["runtime_env"]["env_vars"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert plan["runtime_env"]["env_vars"]["FOO"] == "bar"
    assert plan["token_source"].startswith("file ") and "tok-dry-run-123" not in result.output

    bad = CliRunner().invoke(
        app, ["submit", "nonsense", "-c", str(REPO / "configs" / "demo.yaml"), "--address", "http://h:1"]
    )
    assert bad.exit_code == 2 and "unknown momorec command 'nonsense'" in bad.output
    bad = CliRunner().invoke(
        app,
        [
            "submit",
            "config",
            "-c",
            str(REPO / "configs" / "demo.yaml"),
            "--address",
            "http://h:1",
            "--set",
            "nope.key=1",
            "--dry-run",
        ],
    )
    assert bad.exit_code == 2 and "nope" in bad.output
