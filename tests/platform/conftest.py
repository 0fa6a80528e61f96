"""Fixtures of the platform tests: a real Ray head with token authentication, started and stopped here.

The head runs `ray start --head --block` in its own session, on free ports and its own temp dir, so it
never meets the in-process `ray_local` of other tests. It is stopped by signalling exactly the
processes of that session (never `ray stop`, which stops every Ray on the machine).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
HEAD_START_TIMEOUT_S = 180


@dataclass(frozen=True)
class RayHead:
    address: str
    token: str
    log: Path


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def head_env(token: str) -> dict[str, str]:
    """The head's environment: token auth on, this venv's python first on PATH (the job's `python`)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH")}
    env.update(
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=token,
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        RAY_USAGE_STATS_ENABLED="0",
        MLFLOW_DISABLE_TELEMETRY="true",
    )
    return env


def _session_pids(sid: int) -> list[int]:
    import psutil

    pids = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getsid(proc.pid) == sid:
                pids.append(proc.pid)
        except (ProcessLookupError, PermissionError):
            continue
    return pids


def stop_session(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """SIGTERM the head's process group, then SIGKILL whatever is left in its session (workers too)."""
    sid = proc.pid  # start_new_session=True: the head's pid is its session and group id
    try:
        os.killpg(sid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
    for pid in _session_pids(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _wait_ready(address: str, token: str, proc: subprocess.Popen, log: Path) -> None:
    import requests

    deadline = time.monotonic() + HEAD_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            r = requests.get(f"{address}/api/version", headers={"Authorization": f"Bearer {token}"}, timeout=3)
            if r.status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(1.0)
    raise RuntimeError(f"Ray head not ready after {HEAD_START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def ray_head():
    """A real single-node Ray cluster (1 CPU, dashboard/Jobs API on a free port) with token auth on."""
    token = secrets.token_urlsafe(24)
    gcs, dash, client, agent, agent_grpc, runtime_env, metrics = free_ports(7)
    temp = Path(tempfile.mkdtemp(prefix="mmrh", dir="/tmp"))  # short: Ray's socket paths must stay < 108 chars
    log = temp / "head.log"
    cmd = [
        str(VENV_BIN / "ray"),
        "start",
        "--head",
        "--block",
        "--num-cpus",
        "1",
        "--include-dashboard",
        "true",
        "--dashboard-host",
        "127.0.0.1",
        "--port",
        str(gcs),
        "--dashboard-port",
        str(dash),
        "--ray-client-server-port",
        str(client),
        "--dashboard-agent-listen-port",
        str(agent),
        "--dashboard-agent-grpc-port",
        str(agent_grpc),
        "--runtime-env-agent-port",
        str(runtime_env),
        "--metrics-export-port",
        str(metrics),
        "--temp-dir",
        str(temp),
        "--disable-usage-stats",
    ]
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd, env=head_env(token), stdout=out, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True
        )
    address = f"http://127.0.0.1:{dash}"
    try:
        _wait_ready(address, token, proc, log)
        yield RayHead(address=address, token=token, log=log)
    finally:
        stop_session(proc)
        shutil.rmtree(temp, ignore_errors=True)
