#!/usr/bin/env bash
# Start an MLflow tracking server bound to 127.0.0.1 (this machine only) with a sqlite backend and a
# local artifact root served through the server (clients need no access to the folder).
#   mlflow/start_server.sh [PORT] [STORE_DIR]        then: export MLFLOW_TRACKING_URI=http://127.0.0.1:PORT
# MLFLOW_WORKERS (default 2) sets the server's worker processes. Health check: GET /health -> OK.
# On a cluster, run the server behind its own service (and a Postgres/MySQL backend) instead.
set -euo pipefail
PORT="${1:-5000}"
STORE="$(mkdir -p "${2:-$(pwd)/mlflow-server}" && cd "${2:-$(pwd)/mlflow-server}" && pwd)"
mkdir -p "$STORE/artifacts"
MLFLOW_BIN="$(dirname "$0")/../.venv/bin/mlflow"
[ -x "$MLFLOW_BIN" ] || MLFLOW_BIN=mlflow
export MLFLOW_DISABLE_TELEMETRY="${MLFLOW_DISABLE_TELEMETRY:-true}"
exec "$MLFLOW_BIN" server \
  --host 127.0.0.1 --port "$PORT" \
  --workers "${MLFLOW_WORKERS:-2}" \
  --backend-store-uri "sqlite:///$STORE/mlflow.db" \
  --artifacts-destination "$STORE/artifacts" \
  --serve-artifacts
