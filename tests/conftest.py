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
    its objects in memory and stops with the session.
    """
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {**S3_TEST_ENV, "AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ALLOW_HTTP": "true"}
    yield env
    server.stop()


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
