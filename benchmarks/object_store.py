"""The demo pipeline on a local warehouse vs an S3 warehouse (a real S3-compatible server, moto, on 127.0.0.1).

Both runs are the same `momorec run` in a subprocess, with the same cut-down LLM stage, one after the
other in this process's lifetime; the figures are wall times per stage and their ratio. moto keeps
objects in memory and answers on loopback, so the S3 figures measure the platform's own overhead
(requests, relayed Spark files, uploads), not a network.

    .venv/bin/python benchmarks/object_store.py            # -> benchmarks/results/object_store.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from momorec.platform.overlay import overlay_sets

REPO = Path(__file__).resolve().parents[1]
MOMOREC = Path(sys.executable).parent / "momorec"
RESULTS = REPO / "benchmarks" / "results" / "object_store.json"

# The demo with its LLM stage on 4 users (HF engine, short answers), Ray Train, 2 epochs, one seed.
DEMO_SLICE = overlay_sets(REPO / "configs" / "overlays" / "demo-quick.yaml")


def run_demo(warehouse: str, work: Path, env: dict[str, str], extra: list[str]) -> dict:
    sets = [*DEMO_SLICE, f"warehouse={warehouse}", f"tracking.tracking_uri=sqlite:///{work / 'mlflow.db'}", *extra]
    command = [str(MOMOREC), "run", "-c", str(REPO / "configs" / "demo.yaml"), "--json"]
    command += [arg for s in sets for arg in ("--set", s)]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=3000)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"momorec run on {warehouse} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    stages = {name: round(stage.get("wall_time_s") or 0.0, 2) for name, stage in result["stages"].items()}
    return {"warehouse": warehouse.split("://")[0] if "://" in warehouse else "local", "wall_s": wall, "stages": stages}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    s3_env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_REGION": "us-east-1",
    }
    os.environ.update(s3_env)
    boto3.client("s3").create_bucket(Bucket="momorec-bench")
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    env.setdefault("RAY_AUTH_MODE", "disabled")
    runs = []
    try:
        with tempfile.TemporaryDirectory() as local_work, tempfile.TemporaryDirectory() as s3_work:
            runs.append(run_demo(str(Path(local_work) / "warehouse"), Path(local_work), env, []))
            print(json.dumps(runs[-1]), flush=True)
            extra = ["tracking.artifact_location=s3://momorec-bench/mlflow"]
            runs.append(run_demo("s3://momorec-bench/warehouse", Path(s3_work), env, extra))
            print(json.dumps(runs[-1]), flush=True)
    finally:
        server.stop()
    local, s3 = runs
    figures = {
        "what": "configs/demo.yaml cut down (LLM on 4 users, Ray Train 2 epochs, 1 seed), local disk vs S3 "
        "(moto, loopback)",
        "command": "benchmarks/object_store.py",
        "local": local,
        "s3": s3,
        "s3_over_local": round(s3["wall_s"] / local["wall_s"], 3),
        "s3_over_local_by_stage": {
            name: round(s3["stages"][name] / local["stages"][name], 3)
            for name in local["stages"]
            if name in s3["stages"] and local["stages"][name] > 0
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(figures, indent=1) + "\n")
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
