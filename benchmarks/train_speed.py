"""Training speed: our SASRec epoch vs RecBole 1.2.1's SASRec on the same Beauty split, one run.

Same data (the ingest stage's leave-one-out split: RecBole trains on the same train_items, its
timestamps being positions in the sequence), same hyper-parameters (full-softmax CE, 2 layers,
2 heads, hidden 64, inner 256, dropout 0.5, max length 50, Adam lr 1e-3, batch 256) and the same
torch threads. Both sides train on exactly the (prefix, next item) pairs of the training items:
RecBole materialises every prefix as its own padded sequence (~131k rows); we train every position
of a sequence at once (22k rows, length-bucketed) - that algorithmic difference is the point.
Epochs alternate (ours, ours length-bucketed, RecBole, ...) so machine load hits all alike.
Ratios = our median epoch time / RecBole's, in wall and in CPU seconds (target <= 0.5).

RecBole needs its own venv (it pins numpy<2 and old pandas); create it once, outside the repo:

    python3.11 -m venv /work/recbole-venv
    /work/recbole-venv/bin/pip install torch==2.13.0 "numpy<2" "pandas==2.1.*" recbole==1.2.1
    # torch >= 2.6 loads checkpoints with weights_only=True; RecBole's two torch.load calls need False
    # (only for resuming / loading the best model, which this timing does not do):
    sed -i 's/torch.load(\\(.*\\))/torch.load(\\1, weights_only=False)/' \
        /work/recbole-venv/lib/python3.11/site-packages/recbole/trainer/trainer.py \
        /work/recbole-venv/lib/python3.11/site-packages/recbole/quick_start/quick_start.py

    python benchmarks/train_speed.py --data-npz .bench/beauty.npz --epochs 2   # -> benchmarks/results/train_speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results" / "train_speed.json"

RECBOLE_SCRIPT = r"""
import json, sys, time, torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.model.sequential_recommender import SASRec
from recbole.trainer import Trainer
from recbole.utils import init_seed
data_dir, epochs, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
config = Config(model="SASRec", dataset="beauty", config_dict={
    "data_path": data_dir, "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
    "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
    "MAX_ITEM_LIST_LENGTH": 50, "n_layers": 2, "n_heads": 2, "hidden_size": 64, "inner_size": 256,
    "hidden_dropout_prob": 0.5, "attn_dropout_prob": 0.5, "hidden_act": "gelu", "loss_type": "CE",
    "train_neg_sample_args": None, "learning_rate": 0.001, "train_batch_size": 256, "epochs": epochs,
    "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
    "device": "cpu", "use_gpu": False, "show_progress": False, "seed": 2026, "reproducibility": True,
    "user_inter_num_interval": "[0,inf)", "item_inter_num_interval": "[0,inf)", "log_wandb": False,
    "checkpoint_dir": data_dir + "/saved",
})
init_seed(config["seed"], config["reproducibility"])
dataset = create_dataset(config)
train_data, valid_data, test_data = data_preparation(config, dataset)
model = SASRec(config, train_data.dataset).to(config["device"])
trainer = Trainer(config, model)
print("READY", len(train_data.dataset), flush=True)
for epoch in range(epochs):
    sys.stdin.readline()  # the parent says when (epochs alternate with ours)
    start, cpu = time.perf_counter(), time.process_time()
    trainer._train_epoch(train_data, epoch, show_progress=False)
    print("EPOCH", time.perf_counter() - start, time.process_time() - cpu, flush=True)
"""


def write_atomic(data, folder: Path) -> None:
    """RecBole atomic file of the training items + valid + test (its LOO split takes the last two)."""
    os.makedirs(folder / "beauty", exist_ok=True)
    with open(folder / "beauty" / "beauty.inter", "w", encoding="utf-8") as fh:
        fh.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for row, user in enumerate(data.user_ids):
            items = data.items[data.offsets[row] : data.offsets[row + 1]]
            fh.writelines(f"{user}\t{item}\t{pos}\n" for pos, item in enumerate(items))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-npz", default=str(ROOT / ".bench" / "beauty.npz"), help="from train_quality.py --export-npz"
    )
    parser.add_argument("--recbole-python", default="/work/recbole-venv/bin/python")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from momorec.config import load_config
    from momorec.core.sequences import SequenceData, training_rows
    from momorec.models import build_model
    from momorec.train.loop import LossModule
    from momorec.train.runner import local_batches

    torch.set_num_threads(args.threads)
    data = SequenceData.load_npz(args.data_npz)
    cfg = load_config(ROOT / "configs" / "beauty.yaml").train
    rows = training_rows(data, cfg.model.max_len)
    torch.manual_seed(0)
    model = build_model(cfg.model, data.num_items)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    loss_module = LossModule(model)

    def our_epoch(epoch: int, bucket: bool) -> tuple[float, float]:
        """(wall seconds, CPU seconds of this process) of one epoch."""
        model.train()
        start, cpu = time.perf_counter(), time.process_time()
        for batch in local_batches(rows, cfg.batch_size, seed=0, bucket=bucket)(epoch):
            optimizer.zero_grad()
            loss_module(batch).backward()
            optimizer.step()
        return time.perf_counter() - start, time.process_time() - cpu

    ours, ours_bucketed, theirs = [], [], []  # (wall s, CPU s) per epoch
    with tempfile.TemporaryDirectory() as tmp:
        write_atomic(data, Path(tmp))
        script = Path(tmp) / "recbole_epoch.py"
        script.write_text(RECBOLE_SCRIPT)
        proc = subprocess.Popen(
            [args.recbole_python, str(script), tmp, str(args.epochs), str(args.threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=tmp,
        )  # its logs stay in tmp
        ready = ""
        while not ready.startswith("READY"):
            ready = proc.stdout.readline()
            if not ready:
                raise RuntimeError("RecBole did not start (see its stderr above)")
        recbole_rows = int(ready.split()[1])
        for epoch in range(args.epochs):
            ours.append(our_epoch(epoch, bucket=False))  # the default (and the quality run's) setting
            print(f"ours epoch {epoch}: {ours[-1]}", flush=True)
            ours_bucketed.append(our_epoch(epoch, bucket=True))
            print(f"ours (length-bucketed) epoch {epoch}: {ours_bucketed[-1]}", flush=True)
            proc.stdin.write("\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
            theirs.append((float(line.split()[1]), float(line.split()[2])))
            print(f"recbole epoch {epoch}: {theirs[-1]}", flush=True)
        proc.wait()

    def median(runs, which):
        return float(np.median([r[which] for r in runs]))

    out = {
        "what": "one SASRec training epoch on Amazon Beauty, same split and hyper-parameters, epochs alternating; "
        "wall seconds and CPU seconds (process time, robust to other load on a shared machine)",
        "threads": args.threads,
        "ours_epoch_wall_cpu_s": ours,
        "ours_length_bucketed_epoch_wall_cpu_s": ours_bucketed,
        "recbole_epoch_wall_cpu_s": theirs,
        "ours_rows": len(rows),
        "ours_target_positions": int((rows.lengths - 1).clip(min=0).sum()),  # a window of n items has n-1 targets
        "recbole_rows": recbole_rows,
        "ratio_wall_ours_over_recbole": median(ours, 0) / median(theirs, 0),
        "ratio_cpu_ours_over_recbole": median(ours, 1) / median(theirs, 1),
        "ratio_wall_ours_bucketed_over_recbole": median(ours_bucketed, 0) / median(theirs, 0),
        "ratio_cpu_ours_bucketed_over_recbole": median(ours_bucketed, 1) / median(theirs, 1),
        "load_average_at_end": os.getloadavg(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
