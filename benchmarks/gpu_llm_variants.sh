#!/usr/bin/env bash
# One prepared GPU run (the device machine: torch there, no Delta/vLLM): SASRec on full Amazon Beauty
# with MoMoREC's LLM semantic IDs, every variant x 3 seeds in parallel on one GPU, then the merge
# with paired tests against plain. Inputs made here on the CPU machine:
#   .bench/beauty.npz            python benchmarks/train_quality.py --export-npz .bench/beauty.npz
#   .bench/beauty_item_llm.npz   python benchmarks/beauty_llm_ids.py --users N   (also the user file)
#   .bench/beauty_user_llm.npz
# Other codebooks: ITEM_NPZ=.bench/whiten128/beauty_item_llm.npz (beauty_llm_ids.py --quantize-only
# --set quantize.pca_whiten=true quantize.pca_dim=128 --npz-dir .bench/whiten128), USER_NPZ likewise.
# Results: $OUT/train_quality_llm.json (copy to benchmarks/results/). Needs pydantic + pyyaml there
# (carry wheels if the image lacks them; see ../.library/device/README.md).
set -euo pipefail
OUT=${OUT:-/tmp/gpu_out}
PY=${PY:-python3}
mkdir -p "$OUT/parts"
common=(--data-npz .bench/beauty.npz --semantic-npz "${ITEM_NPZ:-.bench/beauty_item_llm.npz}"
        --user-semantic-npz "${USER_NPZ:-.bench/beauty_user_llm.npz}" --warehouse "$OUT/wh"
        --set train.use_gpu=true train.time_budget_min=6 train.epochs=300)
for variant in plain item_frozen item_trainable item_user_frozen item_user_trainable; do
  for seed in 2026 2027 2028; do
    "$PY" benchmarks/train_quality.py "${common[@]}" --variants "$variant" --seeds "$seed" \
      --results "$OUT/parts/${variant}_${seed}.json" > "$OUT/parts/${variant}_${seed}.log" 2>&1 &
  done
done
wait
"$PY" benchmarks/train_quality.py --merge "$OUT"/parts/*.json --results "$OUT/train_quality_llm.json"
