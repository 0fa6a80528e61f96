"""Reliability: SIGKILL a running `momorec motivate` process, re-run it, and lose or repeat nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

import mlflow
from momorec.motivate.stage import run_motivate
from momorec.storage import delta
from tests.motivate.conftest import DEMO_CONFIG, FAST_MOTIVATE

pytestmark = [pytest.mark.llm, pytest.mark.ray, pytest.mark.spark, pytest.mark.slow]

SLICE = (
    "motivate.execution.limit_users=2",
    "motivate.execution.batch_rows=1",
    "motivate.execution.commit_rows=1",
    "motivate.agents.history_items=3",
    "motivate.agents.max_review_rounds=0",
    "motivate.agents.item_max_tokens=24",
    "motivate.agents.motivation_max_tokens=40",
    "motivate.agents.max_attempts=1",
    "motivate.execution.retry_failed=false",
)
KILL_TIMEOUT_S = 900


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the CLI and everything it started (its Ray head, raylet and actors): a real crash."""
    try:
        family = [proc.pid, *(p.pid for p in psutil.Process(proc.pid).children(recursive=True))]
    except psutil.NoSuchProcess:
        family = [proc.pid]
    for pid in family:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=60)


def test_killed_motivate_resumes_without_losing_or_repeating_rows(motivate_cfg, ray_local):
    cfg = motivate_cfg(*SLICE)
    profiles = cfg.table_path("item_profiles")
    args = [
        sys.executable,
        "-m",
        "momorec.cli",
        "motivate",
        "--config",
        str(DEMO_CONFIG),
        "--json",
        "--set",
        f"warehouse={cfg.warehouse}",
        *(a for o in (*FAST_MOTIVATE, *SLICE) for a in ("--set", o)),
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + KILL_TIMEOUT_S
        while not (delta.exists(profiles) and delta.read(profiles).num_rows >= 1):
            if proc.poll() is not None:
                pytest.fail(
                    f"motivate exited ({proc.returncode}) before the first commit:\n{proc.stderr.read()[-3000:]!r}"
                )
            if time.monotonic() > deadline:
                pytest.fail("no item profile was committed in time")
            time.sleep(0.5)
    finally:
        _kill_tree(proc)
    assert proc.returncode == -signal.SIGKILL

    before = delta.read(profiles)
    committed = before.column("item_id").to_pylist()
    assert 1 <= len(committed) and len(set(committed)) == len(committed)

    resumed = run_motivate(cfg, show_progress=False)
    after = delta.read(profiles)
    ids = after.column("item_id").to_pylist()
    assert len(ids) == len(set(ids)) == resumed.items_needed  # nothing lost, nothing duplicated
    # Rows finished before the kill were not sent to the LLM again.
    assert resumed.items_processed == resumed.items_needed - len(committed)
    requests = mlflow.get_run(resumed.mlflow_run_id).data.metrics.get("item_analyst.requests", 0)
    assert requests == resumed.items_processed
    kept = {r["item_id"]: r["content_hash"] for r in before.to_pylist()}
    assert all(r["content_hash"] == kept[r["item_id"]] for r in after.to_pylist() if r["item_id"] in kept)
    users = delta.read(cfg.table_path("user_motivations")).column("user_id").to_pylist()
    assert len(users) == len(set(users)) == resumed.users_needed == 2
