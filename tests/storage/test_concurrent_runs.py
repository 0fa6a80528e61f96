"""Three `momorec ingest` processes started at once on one warehouse and dataset: one does the work, the
ones that wait for the lease find nothing new, the one that may not wait fails fast naming the holder;
the tables are those of a single ingest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from momorec.storage import delta

REPO = Path(__file__).resolve().parents[2]
MOMOREC = Path(sys.executable).parent / "momorec"

pytestmark = [pytest.mark.spark, pytest.mark.slow]


def test_concurrent_ingests_do_the_work_once_and_each_says_what_happened(tmp_path):
    warehouse = tmp_path / "warehouse"
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "PYTEST_CURRENT_TEST")}
    common = [
        "ingest",
        "-c",
        str(REPO / "configs" / "demo.yaml"),
        "--json",
        "--set",
        f"warehouse={warehouse}",
        "--set",
        f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        "--set",
        f"log_dir={tmp_path / 'logs'}",
        "--set",
        "spark.master=local[1]",
    ]
    waits = {"waits-1": 600, "waits-2": 600, "fails-fast": 0}
    processes = {
        name: subprocess.Popen(
            [str(MOMOREC), *common, "--set", f"storage.lease_wait_s={wait}"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, wait in waits.items()
    }
    outcomes = {}
    for name, process in processes.items():
        out, err = process.communicate(timeout=900)
        outcomes[name] = (process.returncode, json.loads(out.strip().splitlines()[-1]), err)

    worked = [n for n, (rc, result, _) in outcomes.items() if rc == 0 and result["unchanged"] is False]
    assert len(worked) == 1, outcomes
    for name in ("waits-1", "waits-2"):
        rc, result, err = outcomes[name]
        assert rc == 0, (name, result, err[-2000:])
        assert name in worked or result["unchanged"] is True
    rc, result, _ = outcomes["fails-fast"]
    if "fails-fast" not in worked:
        assert rc == 1 and result["stage"] == "ingest", result
        assert "is in use by `momorec ingest`" in result["error"] and "storage.lease_wait_s" in result["error"]

    root = warehouse / "demo"
    assert delta.read(str(root / "interactions")).num_rows == 1625
    assert delta.read(str(root / "sources")).num_rows == 2  # the event log and the catalog, once each
    assert delta.version(str(root / "interactions")) == 0
    assert not list(root.glob("_staging/*")), "a run left its staging folder behind"
