"""Write a night of new purchases for a dataset that is already ingested: try `momorec refresh` on it.

Picks `--users` existing users (seeded), gives each `--events` purchases of items they never had,
dated after everything ingested, and writes them as a CSV event log (user, item, timestamp).

    python scripts/make_new_logs.py --config configs/demo.yaml --users 2 --out night.csv
    momorec refresh --config configs/demo.yaml --new-logs night.csv
"""

from __future__ import annotations

import argparse
import csv

import numpy as np

from momorec.config import PlatformConfig, load_config
from momorec.storage import delta

FIRST_TIMESTAMP = 1_900_000_000  # 2030: after any event of the bundled data


def new_events(cfg: PlatformConfig, users: int, events: int = 2, seed: int = 0) -> list[tuple[str, str, int]]:
    """(user, item, timestamp) rows: `events` unseen items for each of `users` seeded users."""
    user_map = delta.read(cfg.table_path("user_ids")).sort_by("user_id").to_pylist()
    item_map = delta.read(cfg.table_path("item_ids")).sort_by("item_id").to_pylist()
    seen = {
        r["user_id"]: set(r["train_items"] or []) | {r["valid_item"], r["test_item"]}
        for r in delta.read(cfg.table_path("sequences")).to_pylist()
    }
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(user_map), size=min(users, len(user_map)), replace=False))
    rows = []
    for k, index in enumerate(chosen):
        user = user_map[index]
        fresh = [r["item"] for r in item_map if r["item_id"] not in seen[user["user_id"]]]
        picks = rng.choice(len(fresh), size=min(events, len(fresh)), replace=False)
        for t, pick in enumerate(picks):
            rows.append((user["user"], fresh[pick], FIRST_TIMESTAMP + 3600 * k + 60 * t))
    return rows


def write_csv(rows: list[tuple[str, str, int]], path: str) -> str:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["user", "item", "timestamp"])
        writer.writerows(rows)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", "-c", required=True)
    parser.add_argument("--set", "-s", dest="overrides", action="append", default=[])
    parser.add_argument("--users", type=int, default=2)
    parser.add_argument("--events", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    cfg = load_config(args.config, args.overrides)
    rows = new_events(cfg, args.users, args.events, args.seed)
    print(f"{len(rows)} events of {args.users} users -> {write_csv(rows, args.out)}")


if __name__ == "__main__":
    main()
