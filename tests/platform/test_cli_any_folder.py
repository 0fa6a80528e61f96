"""The README's main command as a user runs it: the real `momorec` CLI in a subprocess, started in a
folder other than the repository, with a relative warehouse.

Ray Train workers run in /tmp/ray/session_*/artifacts/...; before locations were resolved at config
load, every relative path the driver handed them pointed nowhere and `make run` died in train.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from momorec.platform.overlay import overlay_sets
from momorec.storage import delta

REPO = Path(__file__).resolve().parents[2]
MOMOREC = Path(sys.executable).parent / "momorec"

# A slice of the demo: 4 users motivated (HF engine, short answers), 2 epochs of Ray Train with 2 workers.
SLICE = overlay_sets(REPO / "configs" / "overlays" / "demo-quick.yaml")

# What one `momorec run` of the demo leaves in the warehouse besides the ingest tables.
PIPELINE_TABLES = (
    "sequences",
    "item_profiles",
    "user_motivations",
    "semantic_ids",
    "trained_models",
    "evaluation_ranks",
    "recommendations",
)


def _user_env() -> dict[str, str]:
    """The environment of a user's shell: no tracking store or Ray address inherited from the tests."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "PYTEST_CURRENT_TEST")
    }
    env["PATH"] = f"{MOMOREC.parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _project(tmp_path: Path) -> Path:
    """A project folder of the user's: the demo data and a config that names it relative to itself."""
    project = tmp_path / "project"
    shutil.copytree(REPO / "data" / "demo", project / "data" / "demo")
    config = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    assert config["warehouse"] == "warehouse" and config["ingest"]["sources"][0]["path"].startswith("../")
    (project / "configs").mkdir()
    (project / "configs" / "demo.yaml").write_text(yaml.safe_dump(config))
    return project


def _tree(folder: Path) -> list[tuple[str, int]] | None:
    """Every file under `folder` with its modification time, or None when the folder does not exist."""
    if not folder.exists():
        return None
    return sorted((str(p.relative_to(folder)), p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file())


def _momorec(args: list[str], cwd: Path, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(MOMOREC), *args],
        cwd=cwd,
        env=_user_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.spark
@pytest.mark.ray
@pytest.mark.llm
@pytest.mark.slow
def test_run_from_another_folder_lands_tables_in_the_relative_warehouse(tmp_path):
    project = _project(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    # a developer's own `make run` may have left the repo's warehouse: this run must not touch it
    repo_state = _tree(REPO / "warehouse" / "demo" / "_pipeline")
    sets = [arg for s in SLICE for arg in ("--set", s)]
    done = _momorec(["run", "-c", "../project/configs/demo.yaml", *sets], cwd=work, timeout=1500)
    assert done.returncode == 0, f"stdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"

    root = work / "warehouse" / "demo"
    for table in PIPELINE_TABLES:
        assert delta.exists(str(root / table)), f"{table} is not in {root}"
    assert any((root / "checkpoints").rglob("*.pt")), "Ray Train's checkpoints are not under the warehouse"
    assert (work / "mlflow.db").is_file(), "the default MLflow store is in the folder the command was started in"
    assert not (project / "configs" / "warehouse").exists()
    assert _tree(REPO / "warehouse" / "demo" / "_pipeline") == repo_state, "the run wrote into the repo's warehouse"

    # What the user reads: the stage lines and the result, not the libraries' logs.
    assert f"Delta tables:   {root}" in done.stdout and "Open the UI:" in done.stdout
    for number, stage in enumerate(("ingest", "motivate", "quantize", "train", "evaluate", "recommend"), start=1):
        assert f"done [{number}/6] {stage}" in done.stderr, done.stderr
    noise = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if re.search(r"\bWARN\b|core_worker|INFO |Running Dataset|\(raylet\)|Traceback", line)
    ]
    assert not noise, noise[:10]
    log_path = Path(re.search(r"Full log:\s+(\S+)", done.stdout).group(1))
    assert log_path.parent == work / "logs" and log_path.stat().st_size > 0
    assert "stage [4/6] train" in log_path.read_text(errors="replace")


def test_a_failing_stage_is_one_line_and_the_traceback_is_in_the_log(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    project = _project(tmp_path)
    done = _momorec(
        ["run", "-c", str(project / "configs" / "demo.yaml"), "--set", "pipeline.stages=[quantize]"],
        cwd=work,
        timeout=300,
    )
    assert done.returncode == 1
    said = [line for line in done.stderr.splitlines() if line.strip()]
    assert any(
        "momorec run failed at quantize: FileNotFoundError" in line and "run `momorec ingest` first" in line
        for line in said
    ), said
    assert "Traceback" not in done.stderr and len(said) <= 6, said
    log_path = Path(re.search(r"Full log: (\S+)", done.stderr).group(1))
    assert log_path.parent == work / "logs" and "Traceback (most recent call last)" in log_path.read_text()

    as_json = _momorec(
        ["run", "-c", str(project / "configs" / "demo.yaml"), "--set", "pipeline.stages=[quantize]", "--json"],
        cwd=work,
        timeout=300,
    )
    payload = json.loads(as_json.stdout.strip().splitlines()[-1])
    assert (
        as_json.returncode == 1 and payload["stage"] == "quantize" and payload["error"].startswith("FileNotFoundError")
    )


def test_a_bad_config_with_json_is_one_json_object_and_exit_2(tmp_path):
    done = _momorec(
        ["run", "-c", str(REPO / "configs" / "demo.yaml"), "--set", "train.epochs=0", "--json"],
        cwd=tmp_path,
        timeout=120,
    )
    payload = json.loads(done.stdout)
    assert done.returncode == 2 and payload["error"].startswith("config error") and "train.epochs" in payload["error"]


@pytest.mark.ray
def test_the_cli_in_process_leaves_a_ray_it_did_not_start_running(ray_local, tmp_path, monkeypatch, tracking_env):
    """A notebook or a test session calls the CLI with its own Ray up; the CLI must not shut that Ray down."""
    from typer.testing import CliRunner

    from momorec.cli import app

    monkeypatch.chdir(tmp_path)
    args = ["run", "-c", str(REPO / "configs" / "demo.yaml"), "--set", "pipeline.stages=[quantize]"]
    assert CliRunner().invoke(app, args).exit_code == 1
    assert ray_local.is_initialized()
