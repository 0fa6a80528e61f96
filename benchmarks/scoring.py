"""Batch scoring against its floor, the bare score matmuls — writes benchmarks/results/scoring.json.

    .venv/bin/python benchmarks/scoring.py [--users 2000000] [--items 200000] [--hidden 64] [--engine local]

Issue 13's target at scale L (2M users x 200k items, hidden 64): scoring every user (evaluate's full ranking,
recommend's top-K) takes at most 2x the time of the bare score matmuls measured on the same machine in the
same run. Both run the same batches of `--batch` users on the same torch threads:
- matmul: the floor, (batch, hidden) random vectors @ the (hidden, N+1) item table into one preallocated
  buffer, for every batch of users; nothing else;
- ranks: core.batch_scoring.score_users, task ranks(test, full): the Parquet files read in batches, each batch
  checked, encoded (SASRec as configs/beauty.yaml: 2 layers, max_len 50, frozen item and user semantic IDs,
  the user's vector as a prefix token), scored against every item, its history excluded, the target's rank
  counted; the stream of (user, rank) batches is consumed (what evaluate commits to Delta);
- top_k: the same with task top_k(10), history excluded (what recommend commits).
The model has random weights: the cost of scoring does not depend on what the model learned. The sequences are
synthetic (history lengths 3 + a geometric tail, median 6 + 2 held out; items uniform), written as Parquet
files of 200k users. Peak RSS of this process is sampled for each phase at a tenth of the users and at all of
them: bounded memory means the two peaks are about equal.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale import TreeSampler  # noqa: E402

from momorec.core.batch_scoring import ScoringTask, TableFiles, score_users  # noqa: E402
from momorec.core.checkpoint import TrainState, load_checkpoint, save_checkpoint  # noqa: E402
from momorec.core.config import ScoringConfig  # noqa: E402
from momorec.models import ModelConfig, SemanticInputs, build_model  # noqa: E402
from momorec.storage import schemas  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "scoring.json"
FILE_USERS = 200_000
TARGET_RATIO = 2.0


def write_sequences(folder: Path, users: int, items: int, seed: int) -> list[str]:
    """`users` rows of the sequences schema in Parquet files of FILE_USERS users."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    rng = np.random.default_rng(seed)
    for part, first in enumerate(range(0, users, FILE_USERS)):
        path = folder / f"part-{part:05d}.parquet"
        paths.append(str(path))
        count = min(FILE_USERS, users - first)
        lengths = 3 + rng.geometric(1 / 6, size=count) - 1  # whole histories: >= 1 training item + 2 held out
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        flat = rng.integers(1, items + 1, size=int(offsets[-1]))
        position = np.arange(flat.size) - np.repeat(offsets[:-1], lengths)
        train_offsets = np.concatenate([[0], np.cumsum(lengths - 2)])
        table = pa.table(
            {
                "user_id": np.arange(first + 1, first + count + 1, dtype=np.int64),
                "items": pa.ListArray.from_arrays(offsets, flat),
                "train_items": pa.ListArray.from_arrays(
                    train_offsets, flat[position < np.repeat(lengths - 2, lengths)]
                ),
                "valid_item": flat[offsets[1:] - 2],
                "test_item": flat[offsets[1:] - 1],
                "length": lengths.astype(np.int32),
            },
            schema=schemas.SEQUENCES,
        )
        pq.write_table(table, path)
    return paths


def checkpoint(folder: Path, users: int, items: int, hidden: int, seed: int) -> dict:
    """A SASRec as configs/beauty.yaml with random weights and random 3 x 256 semantic codes."""
    gen = torch.Generator().manual_seed(seed)

    def semantic(entities: int) -> SemanticInputs:
        codes = torch.randint(1, 257, (entities + 1, 3), generator=gen)
        return SemanticInputs(codes, 256, torch.randn(3, 256, 64, generator=gen), "random")

    cfg = ModelConfig(
        architecture="sasrec",
        hidden_size=hidden,
        max_len=50,
        item_semantic={"mode": "frozen", "on_missing": "reserved"},
        user_semantic={"mode": "frozen", "on_missing": "reserved"},
        user_fusion="prefix",
    )
    item_semantic, user_semantic = semantic(items), semantic(users)
    model = build_model(cfg, items, item_semantic, user_semantic, seed=seed)
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    state = TrainState(epoch=1, best_epoch=0, best_metric=0.0, best_state=weights)
    return load_checkpoint(save_checkpoint(str(folder), model, None, state, seed, item_semantic, user_semantic))


def bare_matmuls(users: int, items: int, hidden: int, batch: int, seed: int) -> dict:
    """The floor: one (batch, hidden) @ (hidden, N+1) matmul per batch of users, into a reused buffer."""
    gen = torch.Generator().manual_seed(seed)
    table_t = torch.randn(items + 1, hidden, generator=gen).T.contiguous()
    vectors = torch.randn(batch, hidden, generator=gen)
    out = torch.empty(batch, items + 1)
    torch.matmul(vectors, table_t, out=out)  # warm
    start = time.perf_counter()
    for first in range(0, users, batch):
        rows = min(batch, users - first)
        torch.matmul(vectors[:rows], table_t, out=out[:rows])
    return {"wall_s": round(time.perf_counter() - start, 2)}


def scored(paths: list[str], payload: dict, task: ScoringTask, items: int, batch: int, engine: str) -> dict:
    """Every user of `paths` through core.batch_scoring, the result stream consumed; users out and checks."""
    import pyarrow.fs as pafs

    files = TableFiles(paths, pafs.LocalFileSystem(), rows=-1)
    cfg = ScoringConfig(engine=engine, num_actors=2, cpus_per_actor=1)
    start = time.perf_counter()
    users = 0
    checksum = 0.0
    for result in score_users(files, payload, task, items, batch, cfg):
        users += result.num_rows
        if task.kind == "ranks":
            checksum += float(np.mean(result.column("rank").to_numpy()) * result.num_rows)
    wall = time.perf_counter() - start
    extra = {"mean_rank": round(checksum / max(users, 1), 1)} if task.kind == "ranks" else {}
    return {"wall_s": round(wall, 2), "users": users, **extra}


def phase(name: str, fn) -> dict:
    sampler = TreeSampler(os.getpid())
    figures = fn()
    peaks = sampler.stop()
    figures["peak_rss_gb"] = peaks["driver_peak_rss_gb"]
    if peaks["workers_peak_rss_gb"]:
        figures["workers_peak_rss_gb"] = peaks["workers_peak_rss_gb"]
    print(f"  {name}: {figures}", flush=True)
    return figures


def run(users: int, items: int, hidden: int, batch: int, engine: str, work: Path, seed: int) -> dict:
    paths = write_sequences(work / f"sequences-{users}-{items}", users, items, seed)
    payload = checkpoint(work / "checkpoint", users, items, hidden, seed)
    ranks = ScoringTask(kind="ranks", split="test", protocols=["full"])
    top = ScoringTask(kind="top_k", k=10, exclude_seen=True)
    tenth = paths[: max(1, len(paths) // 10)]
    tenth_users = min(users, len(tenth) * FILE_USERS)
    report = {"users": users, "items": items, "hidden": hidden, "batch_users": batch, "engine": engine}
    for label, subset, count in (("tenth", tenth, tenth_users), ("all", paths, users)):
        print(f"{label}: {count} users x {items} items", flush=True)
        report[label] = {
            "users": count,
            "matmul": phase("matmul", lambda count=count: bare_matmuls(count, items, hidden, batch, seed)),
            "ranks": phase("ranks", lambda s=subset: scored(s, payload, ranks, items, batch, engine)),
            "top_k": phase("top_k", lambda s=subset: scored(s, payload, top, items, batch, engine)),
        }
        part = report[label]
        for kind in ("ranks", "top_k"):
            part[kind]["x_matmul"] = round(part[kind]["wall_s"] / part["matmul"]["wall_s"], 2)
    full = report["all"]
    report["targets"] = {
        f"{kind} <= {TARGET_RATIO}x the bare matmuls": full[kind]["x_matmul"] <= TARGET_RATIO
        for kind in ("ranks", "top_k")
    }
    report["rss_all_over_tenth"] = {
        kind: round(full[kind]["peak_rss_gb"] / report["tenth"][kind]["peak_rss_gb"], 2) for kind in ("ranks", "top_k")
    }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2_000_000)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--engine", choices=["local", "ray"], default="local")
    parser.add_argument("--work", default="/tmp/momorec-scoring")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    report = {
        "benchmark": "scoring",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "torch_threads": torch.get_num_threads(),
        "method": __doc__.split("\n\n")[2].strip(),
        **run(args.users, args.items, args.hidden, args.batch, args.engine, Path(args.work), args.seed),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({"targets": report["targets"], "rss_all_over_tenth": report["rss_all_over_tenth"]}))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
