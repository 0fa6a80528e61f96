"""`momorec submit` against a real local Ray head with token authentication (fixture `ray_head`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from momorec.platform import auth, submit

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def run_cli(
    args: list[str], token: str | None, home: str | None = None, timeout: int = 240
) -> subprocess.CompletedProcess:
    """`python -m momorec.platform.cli_commands ...` in a clean environment (no RAY_ADDRESS, no inherited token)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    if token is not None:
        env["RAY_AUTH_TOKEN"] = token
    if home is not None:
        env["HOME"] = home
    return subprocess.run(
        [sys.executable, "-m", "momorec.platform.cli_commands", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_submit_follow_runs_the_command_and_never_shows_the_token(ray_head):
    proc = run_cli(
        ["submit", "config", "-c", "configs/demo.yaml", "--address", ray_head.address, "--follow", "-v"],
        token=ray_head.token,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "submitted job raysubmit_" in proc.stdout
    assert "dataset: demo" in proc.stdout  # the job's own output, streamed back
    assert "SUCCEEDED" in output
    assert ray_head.token not in output


def test_followed_job_that_fails_exits_nonzero(ray_head, tmp_path):
    # --no-upload: the cluster's installed momorec runs; the config path does not exist there, so the job fails.
    proc = run_cli(
        [
            "submit",
            "config",
            "-c",
            "no/such/config.yaml",
            "--remote-config",
            "--no-upload",
            "--address",
            ray_head.address,
            "--follow",
        ],
        token=ray_head.token,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output[-3000:]
    assert "FAILED" in output
    assert "does not exist" in output  # momorec's own config error, from the job's log
    assert ray_head.token not in output


def _invoke_in_process(args: list[str], env: dict[str, str | None]):
    """The same CLI through typer's CliRunner (no interpreter start-up: these checks need no job)."""
    from typer.testing import CliRunner

    from momorec.platform.cli_commands import app

    return CliRunner().invoke(app, args, env={"RAY_AUTH_TOKEN_PATH": None, **env})


def test_wrong_token_is_a_clear_error(ray_head, tmp_path):
    wrong = "not-the-token-" + "x" * 20
    result = _invoke_in_process(
        ["submit", "config", "-c", str(REPO / "configs" / "demo.yaml"), "--address", ray_head.address],
        {"RAY_AUTH_TOKEN": wrong, "HOME": str(tmp_path)},
    )
    assert result.exit_code == 2, result.output[-3000:]
    assert "rejected the token from $RAY_AUTH_TOKEN" in result.output
    assert "Traceback" not in result.output
    assert wrong not in result.output and ray_head.token not in result.output


def test_missing_token_is_a_clear_error(ray_head, tmp_path):
    result = _invoke_in_process(
        ["submit", "config", "-c", str(REPO / "configs" / "demo.yaml"), "--address", ray_head.address],
        {"RAY_AUTH_TOKEN": None, "HOME": str(tmp_path)},
    )
    assert result.exit_code == 2, result.output[-3000:]
    assert "requires a token" in result.output
    assert "Traceback" not in result.output


def test_library_submit_with_token_file(ray_head, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(ray_head.token + "\n")
    token = auth.resolve_token(token_file, environ={})
    opts = submit.SubmitOptions(address=ray_head.address, working_dir=None)
    client = submit.connect(opts.address, token)
    job_id = submit.submit_entrypoint(client, "python -c \"print('hello from the cluster')\"", opts, token)
    assert submit.wait_for_job(client, job_id, timeout_s=180) == "SUCCEEDED"
    assert "hello from the cluster" in client.get_job_logs(job_id)
    with pytest.raises(submit.SubmitError, match="refused"):  # a submission id is used once
        submit.submit_entrypoint(client, "python -c pass", opts.model_copy(update={"submission_id": job_id}), token)
