"""Seeded synthetic behaviour logs and a catalog at a given scale, shaped like Amazon's: for scale tests.

    .venv/bin/python scripts/synth_data.py --scale M --out /tmp/synth-M
    .venv/bin/python scripts/synth_data.py --scale M --out /tmp/synth-M --night 0.01   # + one night's new events

Writes, under --out:
    events/part-00000.parquet ...   user, item, timestamp (unix s): one part per `--users-per-part` users
    items.jsonl                     item, title, categories [[top, mid, leaf]], brand, price, description
    night.parquet                   (with --night F) a share F of the users buy again, dated after everything
    manifest.json                   the scale, seed, counts and the shape figures below, as generated

The shape, from Amazon 5-core review logs (Beauty: 22,363 users, 12,101 items, 198,502 events):
- item popularity is a power law: item weights ~ rank^-ALPHA over a seeded permutation (top 1 % of items:
  ~13 % of events; Beauty 10.5 %);
- a user's history length is 5 (the 5-core floor) plus a lognormal tail: median 6, mean ~10, max in the
  hundreds to thousands (Beauty: 6, 8.9, 204);
- each user has 1-3 favourite leaf categories; an event picks one of them with probability AFFINITY (the item
  then by popularity within that category), else any item by global popularity;
- a share REPEAT of events re-buys an item the user already bought (replenishment: shampoo, razors); with
  the popularity draws' own collisions ~10 % of events repeat a (user, item) pair (Beauty's 5-core: 0, Yelp's
  visits: many);
- timestamps: each user starts at a uniform time in [T0, T1) and spreads their events over a uniform span of
  SPAN_DAYS with exponential gaps;
- catalog text is built from a vocabulary (category words, brands, adjectives), so the LLM stage can run on
  a sample of it; prices are lognormal.

Memory is bounded by one part of users, not by the scale: L (20M events) writes in parts of 200k users.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


@dataclass(frozen=True)
class Scale:
    users: int
    items: int
    # the lognormal tail of history lengths above the 5-event floor, tuned so events / users ~ 10
    tail_mu: float = 0.5
    tail_sigma: float = 1.55


SCALES = {
    "tiny": Scale(users=400, items=300),
    "S": Scale(users=20_000, items=10_000),
    "M": Scale(users=200_000, items=50_000),
    "L": Scale(users=2_000_000, items=200_000),
}
MIN_EVENTS = 5
MAX_EVENTS = 2_000
ALPHA = 0.6  # popularity power law exponent: the top 1 % of items get ~12 % of events (Beauty: 10.5 %)
AFFINITY = 0.5
REPEAT = 0.05
T0, T1 = 1_300_000_000, 1_400_000_000  # 2011 .. 2014
SPAN_DAYS = (30.0, 1460.0)  # a user's first to last event: uniform in this range, gaps exponential within

TOPS = ["Skin Care", "Hair Care", "Makeup", "Fragrance", "Bath & Body", "Tools & Accessories", "Nail Care", "Oral"]
MIDS = ["Face", "Body", "Eyes", "Lips", "Hands", "Feet", "Scalp", "Men", "Travel", "Sets"]
LEAVES = [
    "Cleansers", "Moisturizers", "Serums", "Masks", "Toners", "Sunscreens", "Shampoos", "Conditioners", "Oils",
    "Brushes", "Liners", "Polish", "Removers", "Sprays", "Creams", "Gels", "Scrubs", "Balms", "Kits", "Powders",
]  # fmt: skip
BRANDS = [
    "Aveline", "Borelle", "Calder", "Dunmore", "Estrin", "Falco", "Glenna", "Harlow", "Isola", "Juniper", "Kestrel",
    "Lumen", "Marlow", "Norrie", "Oriel", "Pellam", "Quill", "Rowan", "Sable", "Tamsin", "Umber", "Vesper",
]  # fmt: skip
ADJECTIVES = [
    "Gentle", "Hydrating", "Daily", "Organic", "Intensive", "Soothing", "Matte", "Radiant", "Fragrance-Free",
    "Repair", "Volumizing", "Long-Lasting", "Travel Size", "Professional", "Natural", "Ultra", "Classic", "Fresh",
]  # fmt: skip
SIZES = ["1 oz", "1.7 oz", "2 oz", "3.4 oz", "8 oz", "12 oz", "16 oz", "Pack of 2", "Pack of 3", "Set of 5"]


def catalog(scale: Scale, rng: np.random.Generator) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """(items as JSON rows, leaf category of each item (N,), popularity weight of each item (N,))."""
    n = scale.items
    leaf_names = [(t, m, leaf) for t in TOPS for m in MIDS for leaf in LEAVES]  # 1,600 leaf paths
    n_leaves = min(len(leaf_names), max(8, n // 60))  # ~60 items a leaf (fewer at L: 1,600 leaves)
    leaf_of = rng.integers(0, n_leaves, size=n)
    weight = np.empty(n)
    weight[rng.permutation(n)] = np.arange(1, n + 1, dtype=np.float64) ** -ALPHA
    brand = rng.integers(0, len(BRANDS), size=n)
    adjective = rng.integers(0, len(ADJECTIVES), size=n)
    size = rng.integers(0, len(SIZES), size=n)
    price = np.round(np.exp(rng.normal(2.6, 0.7, size=n)), 2)  # median ~$13
    rows = []
    for i in range(n):
        top, mid, leaf = leaf_names[leaf_of[i]]
        noun = leaf.rstrip("s") if leaf.endswith("s") and not leaf.endswith("ss") else leaf
        title = f"{BRANDS[brand[i]]} {ADJECTIVES[adjective[i]]} {mid} {noun}, {SIZES[size[i]]}"
        rows.append(
            {
                "item": f"I{i:07d}",
                "title": title,
                "categories": [["Beauty", top, mid, leaf]],
                "brand": BRANDS[brand[i]],
                "price": float(price[i]),
                "description": f"{ADJECTIVES[adjective[i]].lower()} {leaf.lower()} for the {mid.lower()} by "
                f"{BRANDS[brand[i]]}.",
            }
        )
    return rows, leaf_of, weight


class ItemSampler:
    """Draws items by popularity, globally or within a leaf category, vectorised: items sorted by leaf,
    one cumulative weight array, a leaf's draws land in its slice of it."""

    def __init__(self, leaf_of: np.ndarray, weight: np.ndarray) -> None:
        self.order = np.argsort(leaf_of, kind="stable")
        self.cum = np.cumsum(weight[self.order])
        leaves = leaf_of[self.order]
        self.n_leaves = int(leaves.max()) + 1
        self.start = np.searchsorted(leaves, np.arange(self.n_leaves), side="left")
        self.stop = np.searchsorted(leaves, np.arange(self.n_leaves), side="right")
        self.global_cum = np.cumsum(weight)

    def global_draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        r = rng.random(size) * self.global_cum[-1]
        return np.minimum(np.searchsorted(self.global_cum, r, side="right"), len(self.global_cum) - 1)

    def leaf_draw(self, rng: np.random.Generator, leaves: np.ndarray) -> np.ndarray:
        lo = np.where(self.start[leaves] > 0, self.cum[np.maximum(self.start[leaves] - 1, 0)], 0.0)
        hi = self.cum[np.maximum(self.stop[leaves] - 1, 0)]
        at = np.searchsorted(self.cum, lo + rng.random(len(leaves)) * (hi - lo), side="right")
        at = np.clip(at, self.start[leaves], np.maximum(self.stop[leaves] - 1, self.start[leaves]))
        return self.order[at]


def history_lengths(scale: Scale, rng: np.random.Generator, users: int) -> np.ndarray:
    tail = np.floor(np.exp(rng.normal(scale.tail_mu, scale.tail_sigma, size=users)))
    return np.minimum(MIN_EVENTS + tail.astype(np.int64), MAX_EVENTS)


def user_events(
    sampler: ItemSampler, rng: np.random.Generator, lengths: np.ndarray, first_user: int
) -> dict[str, np.ndarray]:
    """One part of users' events (user index, item index, timestamp), vectorised over the part."""
    users = len(lengths)
    total = int(lengths.sum())
    owner = np.repeat(np.arange(users), lengths)  # (E,) local user of each event
    position = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)  # 0.. within the user
    favourites = rng.integers(0, sampler.n_leaves, size=(users, 3))
    n_fav = rng.integers(1, 4, size=users)
    pick = (rng.random(total) * n_fav[owner]).astype(np.int64)
    leaf = favourites[owner, pick]
    items = np.where(rng.random(total) < AFFINITY, sampler.leaf_draw(rng, leaf), sampler.global_draw(rng, total))
    # repeats: an event (not a user's first) copies one of the user's earlier events
    repeat = (rng.random(total) < REPEAT) & (position > 0)
    earlier = np.flatnonzero(repeat)
    back = (rng.random(len(earlier)) * position[earlier]).astype(np.int64) + 1
    items[earlier] = items[earlier - back]  # earlier - back stays within the user (back <= position)
    start = rng.uniform(T0, T1, size=users)
    mean_gap = rng.uniform(*SPAN_DAYS, size=users) * 86_400.0 / lengths
    gaps = rng.exponential(1.0, size=total) * mean_gap[owner]
    gaps[position == 0] = 0.0
    cum = np.cumsum(gaps)
    base = np.repeat(cum[np.cumsum(lengths) - lengths], lengths)
    timestamps = np.round(start[owner] + cum - base).astype(np.int64)
    return {"user": owner + first_user, "item": items, "timestamp": timestamps}


def _table(events: dict[str, np.ndarray]) -> pa.Table:
    return pa.table(
        {
            "user": pa.array(np.char.add("U", np.char.zfill(events["user"].astype(str), 8))),
            "item": pa.array(np.char.add("I", np.char.zfill(events["item"].astype(str), 7))),
            "timestamp": pa.array(events["timestamp"], pa.int64()),
        }
    )


def generate(scale_name: str, out: Path, seed: int, users_per_part: int, night: float | None) -> dict:
    scale = SCALES[scale_name]
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "events").mkdir(exist_ok=True)
    start = time.perf_counter()
    rows, leaf_of, weight = catalog(scale, rng)
    with (out / "items.jsonl").open("w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    sampler = ItemSampler(leaf_of, weight)
    lengths_all, events, parts, last_ts = [], 0, 0, 0
    item_counts = np.zeros(scale.items, dtype=np.int64)
    repeats = 0
    for first in range(0, scale.users, users_per_part):
        lengths = history_lengths(scale, rng, min(users_per_part, scale.users - first))
        part = user_events(sampler, rng, lengths, first)
        pq.write_table(_table(part), out / "events" / f"part-{parts:05d}.parquet", compression="zstd")
        parts += 1
        events += len(part["item"])
        lengths_all.append(lengths)
        item_counts += np.bincount(part["item"], minlength=scale.items)
        last_ts = max(last_ts, int(part["timestamp"].max()))
        repeats += _repeat_count(part)
    lengths = np.concatenate(lengths_all)
    manifest = {
        "scale": scale_name,
        "seed": seed,
        "shape": asdict(scale) | {"alpha": ALPHA, "affinity": AFFINITY, "repeat": REPEAT, "span_days": SPAN_DAYS},
        "users": scale.users,
        "items": scale.items,
        "events": events,
        "parts": parts,
        "history_length": {
            "median": float(np.median(lengths)),
            "mean": float(lengths.mean()),
            "p99": float(np.percentile(lengths, 99)),
            "max": int(lengths.max()),
        },
        "repeat_share": repeats / events,
        "top_1pct_items_event_share": float(np.sort(item_counts)[::-1][: max(1, scale.items // 100)].sum() / events),
        "items_never_bought": int((item_counts == 0).sum()),
        "last_timestamp": last_ts,
    }
    if night is not None:
        manifest["night"] = write_night(scale, sampler, rng, out, night, last_ts)
    manifest["wall_s"] = round(time.perf_counter() - start, 1)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _repeat_count(part: dict[str, np.ndarray]) -> int:
    """Events whose (user, item) pair occurred earlier for that user."""
    pairs = part["user"].astype(np.int64) * 10_000_000 + part["item"]
    return int(len(pairs) - len(np.unique(pairs)))


def write_night(
    scale: Scale, sampler: ItemSampler, rng: np.random.Generator, out: Path, share: float, after: int
) -> dict:
    """A share of the users (seeded) each buy 1-3 more items, dated in the day after `after`."""
    changed = np.sort(rng.choice(scale.users, size=max(1, int(round(share * scale.users))), replace=False))
    per_user = rng.integers(1, 4, size=len(changed))
    owner = np.repeat(changed, per_user)
    items = sampler.global_draw(rng, len(owner))
    timestamps = after + 1 + np.sort(rng.integers(0, 86_400, size=len(owner)))
    pq.write_table(_table({"user": owner, "item": items, "timestamp": timestamps}), out / "night.parquet")
    return {"users": int(len(changed)), "events": int(len(owner)), "share": share}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=list(SCALES), default="S")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--users-per-part", type=int, default=200_000)
    parser.add_argument("--night", type=float, default=None, help="share of users with new events in night.parquet")
    args = parser.parse_args()
    print(json.dumps(generate(args.scale, Path(args.out), args.seed, args.users_per_part, args.night), indent=2))


if __name__ == "__main__":
    main()
