"""One CPU training epoch of SASRec on Amazon Beauty against its arithmetic floor, in one run.

Issue 18's target: an epoch (batch 256, configs/beauty.yaml's model, one torch thread as in the matrix runs)
takes at most 2x the floor measured on this machine in the same run: for the same batches,
- score matmuls: the (P, d) states of the P trained positions @ the (d, N+1) item table and its two backward
  products (G @ table, G.T @ states), on random values, in the cache-sized row blocks the loss uses (the
  same products over the whole (P, N+1) matrix at once are slower here: `score_matmuls_unblocked`, reported);
- encoder: the model's own embedding + encoder forward and backward on the batch, dropout off (eval mode).
"ours" is everything a training step does: embedding, encoder with dropout, the loss (momorec.models.losses:
blocked on CPU), backward, Adam; "autograd_attention" the same step with the attention computed whole by
autograd (before momorec.models.attention); "stock_parts" that with torch's nn.Dropout and whole-matrix
cross-entropy too (what it was before both). Each is the median over the same `--steps` batches, scaled to the epoch's
step count; the epoch's validation (full ranking of every user) is timed once. Writes
benchmarks/results/train_epoch.json and prints it.

    .venv/bin/python benchmarks/train_epoch.py [--data-npz .bench/paper/beauty/data.npz] [--steps 30]
    .venv/bin/python benchmarks/train_epoch.py --config configs/ml100k.yaml --data-npz .bench/paper/ml100k/data.npz \
        --results benchmarks/results/train_epoch_ml100k.json          # 200 positions: the attention's share

The split: `paper_matrix.py prepare --datasets beauty` exports it (or train_quality.py --export-npz).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.llm_engines import machine  # noqa: E402
from momorec.config import load_config  # noqa: E402
from momorec.core.sequences import SequenceData, training_rows  # noqa: E402
from momorec.models import transformer  # noqa: E402
from momorec.models.attention import masked_attention  # noqa: E402
from momorec.models.losses import CPU_SCORE_BLOCK_BYTES  # noqa: E402
from momorec.models.parts import Dropout, next_item_positions  # noqa: E402
from momorec.train.loop import LossModule, _to_device  # noqa: E402
from momorec.train.runner import TrainingInputs, initial_model, local_batches, make_validator  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "train_epoch.json"


def stock_softmax_ce(hidden: torch.Tensor, targets: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    logits = hidden @ table.T
    logits[:, 0] = float("-inf")
    return F.cross_entropy(logits, targets)


def autograd_attention(q, k, v, blocked, dropout: float, training: bool) -> torch.Tensor:
    """The attention as autograd computes it whole (before attention.masked_attention): (B, h, T, T) scores,
    probabilities and dropout mask in memory, kept for the backward pass."""
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    probs = scores.masked_fill(blocked, float("-inf")).softmax(dim=-1)
    return (ATTENTION_DROPOUT[0](dropout).train(training)(probs) if dropout else probs) @ v


ATTENTION_DROPOUT = [Dropout]  # nn.Dropout in the stock_parts step


def timed(step, batches) -> list[float]:
    step(batches[0])  # warm-up: first-touch allocations
    out = []
    for batch in batches:
        start = time.perf_counter()
        step(batch)
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "beauty.yaml"))
    parser.add_argument("--data-npz", default=str(ROOT / ".bench" / "paper" / "beauty" / "data.npz"))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args()
    if not Path(args.data_npz).exists():
        raise SystemExit(f"{args.data_npz} is missing: run benchmarks/paper_matrix.py prepare --datasets beauty")
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config, ["train.launcher=local"])
    data = SequenceData.load_npz(args.data_npz)
    model, _ = initial_model(cfg, TrainingInputs(data, None, None), cfg.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.learning_rate)
    rows = training_rows(data, cfg.train.model.max_len, cfg.train.min_train_items)
    epoch = [_to_device(b, "cpu") for b in local_batches(rows, cfg.train.batch_size, cfg.seed, False)(0)]
    batches = epoch[: args.steps]
    loss_module = LossModule(model)
    table = model.embedder.table().detach()

    def ours(batch) -> None:
        model.train()
        loss = loss_module(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def encoder(batch) -> None:
        model.eval()  # no dropout: the embedding and encoder's own arithmetic
        inputs, _, _ = next_item_positions(batch["seq"])
        model.states(inputs, batch["user_id"]).sum().backward()

    rows = max(16, CPU_SCORE_BLOCK_BYTES // (4 * table.shape[0]))

    def score_matmuls(batch, rows: int = rows) -> None:
        _, _, keep = next_item_positions(batch["seq"])
        states = torch.randn(int(keep.sum()), table.shape[1])
        grad_states, grad_table = torch.empty_like(states), torch.zeros_like(table)
        block = torch.empty(min(rows, states.shape[0]), table.shape[0])
        for start in range(0, states.shape[0], rows):  # in cache-sized blocks, as the loss computes them
            h = states[start : start + rows]
            g = torch.mm(h, table.T, out=block[: h.shape[0]])
            torch.mm(g, table, out=grad_states[start : start + rows])
            grad_table.addmm_(g.T, h)

    def score_matmuls_whole(batch) -> None:
        score_matmuls(batch, rows=1 << 30)

    pieces = (("score_matmuls", score_matmuls), ("score_matmuls_unblocked", score_matmuls_whole), ("encoder", encoder))
    times = {name: timed(fn, batches) for name, fn in pieces}
    times["ours"] = timed(ours, batches)
    # the same step with the attention autograd computes whole (what it was before attention.py)
    transformer.masked_attention = autograd_attention
    times["autograd_attention"] = timed(ours, batches)
    # the same step with torch's stock parts, as before this benchmark: nn.Dropout (bernoulli_ masks, also in
    # the attention) and the cross-entropy over the whole (P, N+1) logits matrix
    blocked_loss = model.loss
    swapped = [m for m in model.modules() if isinstance(m, Dropout)]
    model.loss = stock_softmax_ce
    for m in swapped:
        m.__class__ = nn.Dropout
    ATTENTION_DROPOUT[0] = nn.Dropout
    times["stock_parts"] = timed(ours, batches)
    model.loss = blocked_loss
    for m in swapped:
        m.__class__ = Dropout
    transformer.masked_attention = masked_attention
    steps = len(epoch)
    per_epoch = {name: statistics.median(t) * steps for name, t in times.items()}
    floor = per_epoch["score_matmuls"] + per_epoch["encoder"]
    start = time.perf_counter()
    make_validator(data, cfg.train.model.max_len, cfg.train.eval_batch_size, "cpu")(model)
    validation = time.perf_counter() - start
    result = {
        "what": f"one SASRec training epoch on {cfg.dataset} (batch 256, {Path(args.config).name}'s model) vs "
        "its floor: "
        "the score matmuls (forward + 2 backward, trained positions only, in cache-sized blocks) + the embedding "
        "and encoder forward/backward without dropout; medians over the same batches, times the epoch's steps",
        "machine": machine(),
        "torch": torch.__version__,
        "threads": args.threads,
        "steps_per_epoch": steps,
        "steps_timed": len(batches),
        "epoch_s": {name: round(v, 2) for name, v in per_epoch.items()},
        "floor_epoch_s": round(floor, 2),
        "ratio_ours_over_floor": round(per_epoch["ours"] / floor, 3),
        "ratio_stock_parts_over_floor": round(per_epoch["stock_parts"] / floor, 3),
        "ratio_autograd_attention_over_ours": round(per_epoch["autograd_attention"] / per_epoch["ours"], 3),
        "validation_s": round(validation, 2),
        "ratio_ours_with_validation_over_floor": round((per_epoch["ours"] + validation) / floor, 3),
        "target_ratio": 2.0,
    }
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
