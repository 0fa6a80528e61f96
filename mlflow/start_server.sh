#!/usr/bin/env bash
# Start an MLflow tracking server bound to 127.0.0.1 with a sqlite backend and a local artifact root.
#   mlflow/start_server.sh [PORT] [STORE_DIR]      then: export MLFLOW_TRACKING_URI=http://127.0.0.1:PORT
set -euo pipefail
PORT="${1:-5000}"
STORE="${2:-$(pwd)/mlflow-server}"
mkdir -p "$STORE/artifacts"
MLFLOW_BIN="$(dirname "$0")/../.venv/bin/mlflow"
[ -x "$MLFLOW_BIN" ] || MLFLOW_BIN=mlflow
exec "$MLFLOW_BIN" server \
  --host 127.0.0.1 --port "$PORT" \
  --backend-store-uri "sqlite:///$STORE/mlflow.db" \
  --artifacts-destination "$STORE/artifacts" \
  --serve-artifacts
