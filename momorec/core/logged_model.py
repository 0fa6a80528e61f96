"""The model as MLflow logs, registers and serves it: a pyfunc over the checkpoint, not a pickled module.

What is logged (`log_recommender`), under the seed's run as `model`, registered as a version of
`momorec-<dataset>-<architecture>`:
- artifacts/checkpoint.pt: the checkpoint (config + weights, read with weights_only=True);
- code/momorec: this package's source, so the model loads in a fresh process without the repo
  (MLflow puts `code/` first on sys.path when it loads the model);
- python_model: `RecommenderModel`, stateless (it rebuilds the network from the checkpoint in
  `load_context`); signature and input example: a batch of users' item histories -> top-k items.

    input   user_id: long, history: array<long> (item ids, oldest first)
    params  k: long = 10, exclude_seen: bool = True
    output  items: array<long> (best first), scores: array<float>

The platform itself (recommend, promotion, the refresh's warm start) reads the registered
version's checkpoint artifact (`registered_checkpoint`), so serving never needs the training
run's checkpoint folder.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from typing import TYPE_CHECKING, Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from momorec.core.checkpoint import FILE, load_checkpoint, model_from_checkpoint
from momorec.core.scoring import top_k
from momorec.storage import objectstore

if TYPE_CHECKING:
    from momorec.config import PlatformConfig

log = logging.getLogger(__name__)

ARTIFACT = "checkpoint"  # the key of the checkpoint in the pyfunc's artifacts
PARAMS: dict[str, Any] = {"k": 10, "exclude_seen": True}


def predict_frame(model, frame: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
    """Top-k items per row of `frame` (columns user_id, history) with a rebuilt model."""
    params = {**PARAMS, **(params or {})}
    histories = [np.asarray(h, dtype=np.int64) for h in frame["history"]]
    user_ids = frame["user_id"].to_numpy(np.int64) if "user_id" in frame else np.zeros(len(frame), np.int64)
    items, scores = top_k(model, user_ids, histories, int(params["k"]), bool(params["exclude_seen"]))
    return pd.DataFrame({"items": list(items), "scores": list(scores)})


class RecommenderModel(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc: rebuilds the recommender from its checkpoint artifact, then `predict_frame`."""

    def load_context(self, context) -> None:
        self.model = model_from_checkpoint(load_checkpoint(context.artifacts[ARTIFACT]))

    def predict(self, context, model_input, params: dict[str, Any] | None = None) -> pd.DataFrame:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return predict_frame(self.model, frame, params)


def input_example() -> pd.DataFrame:
    """Two users: one after items 1, 2; one with no user code after item 1."""
    return pd.DataFrame({"user_id": [1, 0], "history": [[1, 2], [1]]})


def registered_name(cfg: PlatformConfig, architecture: str | None = None) -> str:
    """The registry name of a dataset's models: `train.registered_model_name` or momorec-<dataset>-<arch>."""
    return cfg.train.registered_model_name or f"momorec-{cfg.dataset}-{architecture or cfg.train.model.architecture}"


def _package_source(folder: str) -> str:
    """A copy of the momorec package without caches (the model's `code_paths`)."""
    import momorec

    target = os.path.join(folder, "momorec")
    shutil.copytree(os.path.dirname(momorec.__file__), target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def log_recommender(checkpoint: str, registered_model_name: str | None) -> tuple[str, str | None]:
    """Log the checkpoint at `checkpoint` (any objectstore location) as the active run's `model`,
    registered under `registered_model_name` when given; returns (model uri, registered version)."""
    import torch
    from mlflow.models import infer_signature

    with tempfile.TemporaryDirectory() as folder:
        local = os.path.join(folder, FILE)
        with open(local, "wb") as fh:  # MLflow uploads artifacts from local files
            fh.write(objectstore.read_bytes(checkpoint))
        example = input_example()
        output = predict_frame(model_from_checkpoint(load_checkpoint(local)), example)
        with warnings.catch_warnings():
            # MLflow warns that int columns cannot hold missing values: item ids never are missing.
            warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer", category=UserWarning)
            signature = infer_signature(example, output, params=PARAMS)
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=RecommenderModel(),
            artifacts={ARTIFACT: local},
            code_paths=[_package_source(folder)],
            signature=signature,
            input_example=example,
            registered_model_name=registered_model_name,
            pip_requirements=[
                f"torch=={torch.__version__.split('+')[0]}",
                "numpy",
                "pandas",
                "pyarrow",
                "pydantic>=2",
            ],
        )
    version = getattr(info, "registered_model_version", None)
    return info.model_uri, None if version is None else str(version)


def registered_checkpoint(cfg: PlatformConfig, model_uri: str) -> dict:
    """The checkpoint dict of a logged or registered model (`models:/<name>@champion`,
    `models:/<name>/<version>`, runs:/...), downloaded from MLflow's artifact store."""
    from mlflow.artifacts import download_artifacts

    from momorec.tracking import tracking_uri

    uri = tracking_uri(cfg.tracking)
    with tempfile.TemporaryDirectory() as folder:
        local = download_artifacts(
            artifact_uri=f"{model_uri.rstrip('/')}/artifacts/{FILE}",
            dst_path=folder,
            tracking_uri=uri,
            registry_uri=uri,
        )
        return load_checkpoint(local)


def version_uri(cfg: PlatformConfig, version: str, architecture: str | None = None) -> str:
    return f"models:/{registered_name(cfg, architecture)}/{version}"


def row_checkpoint(cfg: PlatformConfig, row: dict) -> dict:
    """The checkpoint dict of a `trained_models` row: its registered version's, from the registry;
    the training run's checkpoint location only for a model that was never registered."""
    if row.get("registered_version"):
        return registered_checkpoint(cfg, version_uri(cfg, row["registered_version"], row.get("architecture")))
    return load_checkpoint(row["checkpoint"])
