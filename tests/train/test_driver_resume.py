"""A restarted driver resumes: `momorec train` is SIGKILLed after its first checkpoint, run again, and
continues the same MLflow run from the saved epoch, checkpoints on S3 (local launcher and Ray Train).

About 40 s (local) and 120 s (ray, mostly starting Ray and its worker twice) on 2 cores; 15 s in process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from training_toydata import ring_sequences, write_sequences

from momorec.core.checkpoint import load_checkpoint, train_state
from momorec.storage import objectstore

pytestmark = [pytest.mark.slow]

MOMOREC = str(Path(sys.executable).parent / "momorec")
EPOCHS = {"local": 15, "ray": 4}


def _config(tmp_path: Path, launcher: str, checkpoint_dir: str) -> Path:
    write_sequences(str(tmp_path / "wh" / "toy"), ring_sequences(400, 40, 12), 40)
    train = {
        "launcher": launcher,
        "epochs": EPOCHS[launcher],
        "patience": EPOCHS[launcher],
        "batch_size": 16,
        "learning_rate": 0.01,
        "seeds": [5],
        "checkpoint_dir": checkpoint_dir,
        "torch_threads": 1,
        "log_model": False,  # tests/train/test_logged_model.py covers the logged model
        "model": {"hidden_size": 16, "inner_size": 32, "num_layers": 1, "max_len": 10},
    }
    if launcher == "ray":  # one worker: restarts with several are test_ray_train's
        train.update(num_workers=1, cpus_per_worker=1)
    path = tmp_path / "train.yaml"
    config = {"dataset": "toy", "warehouse": str(tmp_path / "wh"), "train": train, "ray": {"num_cpus": 4}}
    path.write_text(yaml.safe_dump(config))
    return path


def _checkpoints(checkpoint_dir: str) -> list[str]:
    """What the training has saved so far: the local launcher's seed checkpoint, or Ray Train's run
    snapshot (written once a reported checkpoint is registered: what a restarted driver reads)."""
    return objectstore.glob(f"{checkpoint_dir}/*/seed_*/checkpoint.pt") + objectstore.glob(
        f"{checkpoint_dir}/*/checkpoint_manager_snapshot.json"
    )


def _train_runs(experiment: str = "momorec"):
    import mlflow

    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        return []
    return mlflow.MlflowClient().search_runs([found.experiment_id], filter_string="tags.`momorec.stage` = 'train'")


@pytest.mark.parametrize("launcher", ["local", "ray"])
def test_a_killed_driver_resumes_its_run_from_the_last_checkpoint(tmp_path, tracking_env, request, launcher):
    if launcher == "ray":
        pytest.importorskip("ray")
    checkpoint_dir = f"{request.getfixturevalue('s3_bucket')}/checkpoints"  # on the object store
    config = _config(tmp_path, launcher, checkpoint_dir)
    command = [MOMOREC, "train", "-c", str(config), "--json"]
    env = dict(os.environ)  # the tracking store and the S3 settings the fixtures put there

    # Its own process group: the kill takes the driver and the local Ray it started, like a lost pod.
    driver = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 240
        while not _checkpoints(checkpoint_dir):
            assert driver.poll() is None, "the first driver ended before it wrote a checkpoint"
            assert time.monotonic() < deadline, "no checkpoint in time"
            time.sleep(0.05)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    (killed,) = _train_runs()
    assert killed.info.status == "RUNNING"  # nobody closed it: the driver died

    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    result = json.loads(again.stdout)
    assert result["resumed"] is True
    assert result["mlflow_run_id"] == killed.info.run_id  # the same run, not a new one
    (finished,) = _train_runs()
    assert finished.info.run_id == killed.info.run_id and finished.info.status == "FINISHED"

    # It continued from the saved epoch: the restart picked up after at least one finished epoch,
    # and every epoch appears once in the history.
    assert result["models"][0]["checkpoint"].startswith(checkpoint_dir)
    state = train_state(load_checkpoint(result["models"][0]["checkpoint"]))
    epochs = EPOCHS[launcher]
    assert len(state.resumed_at) == 1 and 1 <= state.resumed_at[0] < epochs, state.resumed_at
    assert [int(h["epoch"]) for h in state.history] == list(range(epochs))
    import mlflow

    seed_run = mlflow.get_run(result["models"][0]["seed_run_id"])
    assert seed_run.data.metrics["resumes"] == 1 and seed_run.data.metrics["epochs_run"] == epochs


def test_a_resumed_run_keeps_its_finished_seeds_and_a_finished_run_is_never_resumed(toy_cfg):
    """In process: a driver that died during seed 2 left the train run and seed 2's run RUNNING."""
    import mlflow
    from momorec.storage import delta
    from momorec.train.stage import run_train

    cfg = toy_cfg.model_copy(deep=True)
    cfg.train.epochs, cfg.train.seeds, cfg.train.log_model = 2, [1, 2], False
    first = run_train(cfg, show_progress=False)
    client = mlflow.MlflowClient()
    seed_runs = [m["seed_run_id"] for m in first.models]
    for run_id in (first.mlflow_run_id, seed_runs[1]):
        client.update_run(run_id, status="RUNNING")

    again = run_train(cfg, show_progress=False)
    assert again.resumed and again.mlflow_run_id == first.mlflow_run_id
    assert [m["seed_run_id"] for m in again.models] == seed_runs
    assert client.get_run(seed_runs[0]).data.metrics["resumes"] == 0  # kept as it was, not trained again
    assert client.get_run(seed_runs[1]).data.metrics["resumes"] == 1  # continued from its checkpoint
    rows = delta.read(cfg.table_path("trained_models")).to_pylist()
    assert sorted((r["train_run_id"], r["seed"]) for r in rows) == [(first.mlflow_run_id, 1), (first.mlflow_run_id, 2)]

    third = run_train(cfg, show_progress=False)  # the same command after a finished run: a new run
    assert not third.resumed and third.mlflow_run_id != first.mlflow_run_id
    cfg.train.resume = False
    client.update_run(third.mlflow_run_id, status="RUNNING")
    assert run_train(cfg, show_progress=False).mlflow_run_id != third.mlflow_run_id
