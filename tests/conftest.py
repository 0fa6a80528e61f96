"""Shared fixtures: one real local Spark and one real local Ray per test session, never per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"
DEMO_CONFIG = REPO / "configs" / "demo.yaml"

# The demo's LLM stage cut down for tests: the HF engine in float32, short answers, one attempt, 2 epochs.
DEMO_LLM_SLICE = [
    "spark.master=local[2]",
    "motivate.llm.engine=hf",
    "motivate.llm.dtype=float32",
    "motivate.agents.item_max_tokens=48",
    "motivate.agents.motivation_max_tokens=64",
    "motivate.agents.review_max_tokens=32",
    "motivate.agents.max_attempts=1",
    "train.epochs=2",
    "train.seeds=[2026]",
]


# The longest test files, longest first (file totals of CI's --durations, Intel Xeon, 2026-12-07: 443, 315, 250,
# 250, 225, 116, 115, 90 and 78 s). `make test` runs two pytest-xdist workers that each take one whole file at a
# time, in collection order (`--dist loadfile --no-loadscope-reorder`): these start first, so the two longest run
# side by side and the short files fill in after them, instead of a 7-minute file starting last.
LONGEST_FIRST = (
    "platform/test_kill_matrix.py",
    "platform/test_object_store.py",
    "platform/test_scale.py",
    "motivate/test_motivate_stage.py",
    "ingest/test_incremental_ingest.py",
    "platform/test_cli_any_folder.py",
    "platform/test_notebooks.py",
    "train/test_driver_resume.py",
    "motivate/test_motivate_kill.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {REPO / "tests" / name: k for k, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path, len(rank)))  # stable: each file's tests stay in order


def shared_dataset(*parts: str) -> Path:
    """A path under ../shared/datasets; the test skips (saying why) only when ../shared is absent."""
    path = SHARED_DATASETS.joinpath(*parts)
    if not SHARED_DATASETS.exists():
        pytest.skip(f"../shared/datasets is absent ({SHARED_DATASETS}); full-benchmark test needs it")
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from ../shared/datasets")
    return path


@pytest.fixture(scope="session")
def spark():
    from momorec.config import SparkConfig
    from momorec.storage.spark import get_spark

    session = get_spark(SparkConfig(master="local[2]", shuffle_partitions=2, driver_memory="3g"))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray with more logical CPUs than cores (the 2-core actor-pool deadlock, DESIGN.md)."""
    from momorec.config import RayConfig
    from momorec.storage.ray_runtime import init_ray

    ray = init_ray(RayConfig(num_cpus=4, object_store_memory_mb=1024))
    yield ray
    ray.shutdown()


@pytest.fixture()
def tracking_env(tmp_path, monkeypatch):
    """A fresh sqlite MLflow store for one test (its artifacts go beside it: momorec.tracking.configure)."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)  # an earlier test's stage set this process's URI to its own store
    yield uri
    mlflow.set_tracking_uri(None)


@pytest.fixture()
def demo_cfg(tmp_path, tracking_env):
    """The demo config with its warehouse in a temporary folder and MLflow in a fresh store."""
    from momorec.config import load_config

    return load_config(DEMO_CONFIG, [f"warehouse={tmp_path / 'warehouse'}", "spark.master=local[2]"])


S3_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "momorec-test-key-id",
    "AWS_SECRET_ACCESS_KEY": "momorec-test-secret-7f3a",
    "AWS_REGION": "us-east-1",
}


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server (moto's standalone server) on 127.0.0.1, for the whole session.

    Yields the environment a client needs (endpoint, http allowed, throwaway keys); the server holds
    its objects in memory and stops with the session. It runs in a process of its own: in this one,
    its flask/werkzeug globals broke vLLM's start (vLLM 0.32's kernel-override scan calls hasattr on
    every module global, and werkzeug's unbound LocalProxy raises there).
    """
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as probe:  # a free port; the server binds it a moment later
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
            break
        except OSError as error:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise RuntimeError(f"moto's S3 server did not start on {endpoint}: {error}") from error
            time.sleep(0.2)
    env = {**S3_TEST_ENV, "AWS_ENDPOINT_URL": endpoint, "AWS_ALLOW_HTTP": "true"}
    yield env
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture
def s3_bucket(s3_server, monkeypatch, request):
    """A fresh bucket on the test S3 server, with this process's environment pointing at the server.

    Yields "s3://<bucket>"; the bucket is named after the test, with a unique suffix.
    """
    import re

    import boto3

    for key, value in s3_server.items():
        monkeypatch.setenv(key, value)
    import uuid

    # Named after the test, and unique: parametrized tests share a name prefix.
    name = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower())[:40].strip("-") + f"-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    yield f"s3://{name}"
