"""The registered model loads in a fresh process, away from the repo, and serves its input example."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from momorec.core.checkpoint import TrainState, load_checkpoint, model_from_checkpoint, save_checkpoint
from momorec.core.logged_model import input_example, log_recommender, predict_frame, registered_checkpoint
from momorec.models import ModelConfig, build_model

REPO = Path(__file__).resolve().parents[2]
NAME = "momorec-toy-sasrec"

# Run with `python -I` (no cwd, no PYTHONPATH, no user site on sys.path) from a temporary folder.
LOAD_AND_PREDICT = """
import json, sys
import mlflow
from mlflow.models import Model

uri = sys.argv[1]
model = mlflow.pyfunc.load_model(uri)
example = Model.load(uri).load_input_example()
out = model.predict(example, params={"k": 3})
import momorec
print(json.dumps({"items": [list(map(int, r)) for r in out["items"]], "package": momorec.__file__}))
"""


def _checkpoint(folder: Path) -> str:
    cfg = ModelConfig(hidden_size=8, inner_size=16, num_layers=1, num_heads=1, max_len=5)
    model = build_model(cfg, num_items=9, seed=0)
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    state = TrainState(epoch=1, best_epoch=0, best_metric=0.1, best_state=weights)
    return save_checkpoint(str(folder), model, None, state, 0, None, None)


def test_the_champion_loads_and_predicts_in_a_fresh_process_without_the_repo(tmp_path, tracking_env):
    import mlflow

    checkpoint = _checkpoint(tmp_path / "checkpoints")
    mlflow.create_experiment("logged-model", artifact_location=str(tmp_path / "artifacts"))
    mlflow.set_experiment("logged-model")
    with mlflow.start_run():
        _, version = log_recommender(checkpoint, NAME)
    mlflow.MlflowClient().set_registered_model_alias(NAME, "champion", version)
    uri = f"models:/{NAME}@champion"

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_env}
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [sys.executable, "-I", "-c", LOAD_AND_PREDICT, uri],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    served = json.loads(done.stdout.strip().splitlines()[-1])
    # the model's own copy of the package, not the repo's
    assert not served["package"].startswith(str(REPO)), served["package"]
    assert f"{os.sep}code{os.sep}momorec{os.sep}" in served["package"]

    here = predict_frame(model_from_checkpoint(load_checkpoint(checkpoint)), input_example(), {"k": 3})
    assert served["items"] == [list(map(int, row)) for row in here["items"]]
    history = input_example()["history"]
    for items, seen in zip(served["items"], history, strict=True):
        assert len(items) == 3 and not set(items) & {0, *seen}

    # the platform reads the same weights from the registry, checkpoint folder or not
    payload = registered_checkpoint(_cfg(tmp_path), uri)
    for key, value in load_checkpoint(checkpoint)["model_state"].items():
        torch.testing.assert_close(payload["model_state"][key], value)


def _cfg(tmp_path: Path):
    from momorec.config import load_config

    return load_config(None, ["dataset=toy", f"warehouse={tmp_path / 'wh'}"])
