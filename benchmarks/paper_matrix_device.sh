#!/usr/bin/env bash
# benchmarks/paper_matrix.py train on a GPU machine (torch there; no Delta, Spark or MLflow), from one carried
# folder made here after `paper_matrix.py prepare`:
#   $CARRY/paper/<dataset>/{data,item,user}.npz   the exports (.bench/paper/<dataset>/*.npz)
#   $CARRY/whl/*.whl                              pydantic and its needs as Python 3.12 wheels, if the image lacks them
# Extra arguments go to `train` (e.g. --parallel 14 --deadline-s 470). What comes back: $OUT/runs.json,
# ranks.npz, logs.tar.gz; then, here: paper_matrix.py report --runs <that folder>.
set -uo pipefail
CARRY=${CARRY:-.devcarry}
OUT=${OUT:-/tmp/paper_matrix_out}
PY=${PY:-python3}
if ls "$CARRY"/whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "$CARRY"/whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
"$PY" -c "import torch, pydantic, yaml, scipy; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" \
  || exit 1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || true
PYTHONUNBUFFERED=1 exec "$PY" benchmarks/paper_matrix.py train --bench "$CARRY/paper" --out "$OUT" "$@"
