"""mlflow/: the MLproject's entry points run real commands; start_server.sh serves a sqlite store on 127.0.0.1."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
STAGES = ("ingest", "motivate", "quantize", "train", "evaluate", "recommend", "refresh")
SERVER_START_TIMEOUT_S = 120


def _cli_commands() -> set[str]:
    from momorec.platform.cli_commands import _registered_commands

    return set(_registered_commands())


def test_mlproject_has_one_entry_point_per_stage_and_each_command_exists(tmp_path):
    from mlflow.projects import _project_spec

    raw = yaml.safe_load((REPO / "mlflow" / "MLproject").read_text())
    assert raw["name"] and set(STAGES) <= set(raw["entry_points"])
    project = _project_spec.load_project(str(REPO / "mlflow"))  # MLflow's own parser
    commands = _cli_commands()
    for name in raw["entry_points"]:
        entry = project.get_entry_point(name)
        required = {p: "x" for p, spec in raw["entry_points"][name]["parameters"].items() if "default" not in spec}
        command = entry.compute_command(required, str(tmp_path))
        # "cd .. && python jobs/X.py --config C" or "cd .. && python -m momorec.cli CMD --config C"
        step = shlex.split(command.split("&&", 1)[1])
        assert command.startswith("cd .. &&"), command  # MLflow runs commands inside mlflow/
        assert step[0] == "python", command
        if step[1] == "-m":
            assert step[2] == "momorec.cli", command
            assert step[3] in commands, command
        else:
            assert (REPO / step[1]).is_file(), f"{name}: {step[1]} does not exist"
        config = step[step.index("--config") + 1]
        assert (REPO / config).is_file(), f"{name}: default config {config} does not exist"


def _wait_health(url: str, proc: subprocess.Popen, log: Path) -> None:
    import requests

    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(1.0)
    raise RuntimeError(f"mlflow server not healthy after {SERVER_START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group (it was started in its own session), then SIGKILL it."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


@pytest.mark.slow
def test_start_server_binds_localhost_and_stores_runs_in_sqlite(tmp_path):
    import psutil
    from mlflow.tracking import MlflowClient

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = tmp_path / "store"
    log = tmp_path / "server.log"
    env = {**os.environ, "MLFLOW_WORKERS": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            ["bash", str(REPO / "mlflow" / "start_server.sh"), str(port), str(store)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_health(url, proc, log)
        listening = [
            c.laddr
            for p in [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
            for c in p.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port
        ]
        assert listening and all(addr.ip == "127.0.0.1" for addr in listening), listening

        client = MlflowClient(url)  # over HTTP
        exp_id = client.create_experiment("server-test")
        run = client.create_run(exp_id, run_name="over-http")
        client.log_metric(run.info.run_id, "test.full.ndcg_10", 0.05)
        artifact = tmp_path / "note.txt"
        artifact.write_text("served artifact")
        client.log_artifact(run.info.run_id, str(artifact))
        client.set_terminated(run.info.run_id)
    finally:
        _stop(proc)

    stored = MlflowClient(f"sqlite:///{store / 'mlflow.db'}").get_run(run.info.run_id)  # straight from the sqlite file
    assert stored.data.metrics["test.full.ndcg_10"] == pytest.approx(0.05)
    assert [p.read_text() for p in (store / "artifacts").rglob("note.txt")] == ["served artifact"]
