"""Derive the bundled demo sample from Amazon Beauty 5-core (../shared/datasets/amazon-beauty).

The sample is dense on purpose, so the whole pipeline (LLM included) runs in minutes on 2 cores:
keep the `--items` most popular items, drop every other item from each sequence (order kept),
keep users with at least `--min-events` remaining, and draw `--users` of them with a fixed seed.
The catalog rows of the kept items come along unchanged.

    python scripts/make_demo_sample.py            # writes data/demo/{sequences.txt,items.jsonl}
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=ROOT.parent / "shared/datasets/amazon-beauty")
    parser.add_argument("--out", type=Path, default=ROOT / "data/demo")
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--min-events", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    sequences = [line.split() for line in (args.source / "sequences.txt").read_text().splitlines() if line.strip()]
    popularity = Counter(item for seq in sequences for item in seq[1:])
    kept_items = {item for item, _ in popularity.most_common(args.items)}
    candidates = []
    for user, *items in sequences:
        items = [i for i in items if i in kept_items]
        if len(items) >= args.min_events:
            candidates.append((user, items))
    rng = random.Random(args.seed)
    chosen = sorted(rng.sample(candidates, min(args.users, len(candidates))))
    used_items = {i for _, items in chosen for i in items}

    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "sequences.txt", "w") as fh:
        for user, items in chosen:
            fh.write(" ".join([user, *items]) + "\n")
    with open(args.source / "items.jsonl") as src, open(args.out / "items.jsonl", "w") as dst:
        for line in src:
            if json.loads(line)["item"] in used_items:
                dst.write(line)
    n_events = sum(len(items) for _, items in chosen)
    print(f"demo sample: {len(chosen)} users, {len(used_items)} items, {n_events} events -> {args.out}")


if __name__ == "__main__":
    main()
