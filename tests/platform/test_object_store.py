"""The demo pipeline and a nightly refresh with the warehouse, the checkpoints, the codebooks and MLflow's
artifacts in an S3 bucket: a real S3-compatible server on 127.0.0.1 (moto), the real `momorec` CLI in
subprocesses, the LLM stage on a few users.

After the full run, every local folder of the run is deleted except the MLflow database (on a cluster,
the tracking server): the refresh must find everything it needs (tables, codebooks, the champion) in
the bucket and the registry.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import boto3
import pyarrow.compute as pc
import pytest

from momorec.config import load_config
from momorec.storage import delta
from scripts.make_new_logs import new_events, write_csv
from tests.platform.test_cli_any_folder import PIPELINE_TABLES, SLICE, _momorec, _project

pytestmark = [pytest.mark.spark, pytest.mark.ray, pytest.mark.llm, pytest.mark.slow]

TABLES = ("interactions", *PIPELINE_TABLES)


def _keys(bucket: str, prefix: str) -> list[str]:
    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def _no_credentials_or_endpoint_logged(cfg, log_dir: Path) -> None:
    import os

    from mlflow import MlflowClient

    secrets = [os.environ["AWS_SECRET_ACCESS_KEY"], os.environ["AWS_ENDPOINT_URL"]]
    client = MlflowClient(tracking_uri=cfg.tracking.tracking_uri)
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    runs = client.search_runs([experiment.experiment_id])
    assert runs
    for run in runs:
        for key, value in run.data.params.items():
            assert not any(s in value for s in secrets), f"MLflow param {key} of {run.info.run_name} holds a secret"
    for log_file in log_dir.glob("*.log"):
        text = log_file.read_text(errors="replace")
        assert secrets[0] not in text, f"{log_file} holds the secret key"


def test_the_demo_pipeline_and_a_refresh_on_an_s3_warehouse(tmp_path, s3_bucket):
    bucket = s3_bucket.removeprefix("s3://")
    project = _project(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    sets = [
        *SLICE,
        f"warehouse={s3_bucket}/warehouse",
        f"tracking.tracking_uri=sqlite:///{tmp_path / 'tracking' / 'mlflow.db'}",
        f"tracking.artifact_location={s3_bucket}/mlflow",
        f"motivate.llm.cache_dir={tmp_path / 'model-cache'}",
        f"log_dir={tmp_path / 'logs'}",
    ]
    (tmp_path / "tracking").mkdir()
    args = [arg for s in sets for arg in ("--set", s)]
    config = str(project / "configs" / "demo.yaml")

    start = time.perf_counter()
    done = _momorec(["run", "-c", config, *args], cwd=work, timeout=1500)
    run_s = time.perf_counter() - start
    assert done.returncode == 0, f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    print(f"momorec run on s3: {run_s:.0f} s")

    cfg = load_config(config, sets)
    for table in TABLES:
        assert delta.exists(cfg.table_path(table)), f"{table} is not in the bucket"
    keys = _keys(bucket, "")
    assert any(k.startswith("warehouse/demo/codebooks/item/") and k.endswith("codebook.npz") for k in keys)
    assert any(k.startswith("warehouse/demo/checkpoints/") and k.endswith(".pt") for k in keys), "checkpoints"
    assert any(k.startswith("mlflow/") for k in keys), "MLflow's artifacts are not in the bucket"
    assert not any("/_staging/" in k for k in keys), "a run's staging folder was left behind"
    assert not (work / "warehouse").exists() and not (work / "mlflow.db").exists()
    _no_credentials_or_endpoint_logged(cfg, tmp_path / "logs")

    # Nothing local survives but the tracking database (a server on a cluster) and the inputs.
    for folder in (work, tmp_path / "logs", tmp_path / "model-cache"):
        shutil.rmtree(folder, ignore_errors=True)
    work.mkdir()
    served_before = delta.version(cfg.table_path("recommendations"))
    (tmp_path / "night").mkdir()
    logs = Path(write_csv(new_events(cfg, 2, events=2, seed=0), str(tmp_path / "night" / "events.csv")))
    start = time.perf_counter()
    night = _momorec(["refresh", "-c", config, "--new-logs", str(logs), *args], cwd=work, timeout=1500)
    refresh_s = time.perf_counter() - start
    assert night.returncode == 0, f"stdout:\n{night.stdout[-3000:]}\nstderr:\n{night.stderr[-3000:]}"
    print(f"momorec refresh on s3: {refresh_s:.0f} s")

    sources = delta.read(cfg.table_path("sources"))
    assert str(logs) in sources.column("path").to_pylist()
    assert delta.version(cfg.table_path("recommendations")) > served_before
    models = delta.read(cfg.table_path("trained_models"))
    assert pc.count_distinct(models.column("train_run_id")).as_py() == 2, "the refresh trained no model"
    assert not any("/_staging/" in k for k in _keys(bucket, "warehouse/"))
