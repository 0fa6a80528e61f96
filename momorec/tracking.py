"""MLflow helpers: where runs go, and one run per stage.

Tracking URI: the config's, else `MLFLOW_TRACKING_URI`, else a sqlite store `mlflow.db` in the
working folder (MLflow 3 refuses a plain file store by default).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from typing import Any

from momorec.config import PlatformConfig, TrackingConfig

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def tracking_uri(cfg: TrackingConfig) -> str:
    if cfg.tracking_uri:
        return cfg.tracking_uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return "sqlite:///" + os.path.abspath("mlflow.db")


def artifact_root(cfg: TrackingConfig, uri: str) -> str | None:
    """Where a new experiment's artifacts go: the config's location; for a local sqlite store the folder
    `mlartifacts` beside the database (MLflow's own default, ./mlruns, depends on the working folder);
    else the tracking server's default."""
    if cfg.artifact_location:
        return cfg.artifact_location
    if uri.startswith("sqlite:///"):
        return os.path.join(os.path.dirname(os.path.abspath(uri[len("sqlite:///") :])), "mlartifacts")
    return None


def configure(cfg: TrackingConfig) -> str:
    """Point MLflow at the store and experiment of `cfg`; return the tracking URI."""
    import mlflow

    uri = tracking_uri(cfg)
    mlflow.set_tracking_uri(uri)
    if mlflow.get_experiment_by_name(cfg.experiment) is None:
        mlflow.create_experiment(cfg.experiment, artifact_location=artifact_root(cfg, uri))
    mlflow.set_experiment(cfg.experiment)
    return uri


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for key, child in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), child, out)
    elif isinstance(value, list | tuple) and value and all(isinstance(v, Mapping) for v in value):
        for i, child in enumerate(value):
            _flatten(f"{prefix}.{i}", child, out)
    else:
        text = json.dumps(value) if not isinstance(value, str) else value
        out[prefix] = text[:6000]  # MLflow's param value limit


def flat_params(tree: Mapping[str, Any]) -> dict[str, Any]:
    """A nested config as dotted MLflow params (`ingest.kcore` = "5")."""
    out: dict[str, Any] = {}
    _flatten("", tree, out)
    return out


@contextlib.contextmanager
def stage_run(
    cfg: PlatformConfig, stage: str, params: Mapping[str, Any] | None = None, run_id: str | None = None
) -> Iterator[Any]:
    """An MLflow run for one stage, nested under the pipeline's parent run when one is active.

    Logs the stage's config section as params, the dataset, and the stage's wall time on exit (also
    when the stage fails: the run is then marked FAILED). `run_id` continues an earlier run instead
    (a train run whose driver died).
    """
    import mlflow

    configure(cfg.tracking)
    nested = mlflow.active_run() is not None
    start = time.perf_counter()
    with mlflow.start_run(
        run_id=run_id,
        run_name=None if run_id else stage,
        nested=nested,
        tags={"momorec.stage": stage, "momorec.dataset": cfg.dataset},
    ) as run:
        mlflow.log_params(flat_params({"dataset": cfg.dataset, "warehouse": cfg.warehouse, "seed": cfg.seed}))
        if params:
            mlflow.log_params(flat_params(params))
        try:
            yield run
        finally:
            mlflow.log_metric("wall_time_s", time.perf_counter() - start)


def log_table_versions(read: Mapping[str, int | None], written: Mapping[str, int | None]) -> None:
    """Record which Delta versions a stage read and wrote (params: they identify the data)."""
    import mlflow

    params = {f"delta.read.{k}": str(v) for k, v in read.items()}
    params.update({f"delta.written.{k}": str(v) for k, v in written.items()})
    if params:
        mlflow.log_params(params)
