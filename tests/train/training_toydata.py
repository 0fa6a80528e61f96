"""Toy Delta tables for the training and evaluation tests: users walk the item ring 1..N one step at a time."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from momorec.storage import delta, schemas


def ring_sequences(num_users: int, num_items: int, length: int, seed: int = 0) -> list[list[int]]:
    """User u starts at a random item and steps +1 around 1..num_items: the next item is learnable."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(num_users):
        start = int(rng.integers(0, num_items))
        n = int(rng.integers(length - 2, length + 3))
        out.append([(start + i) % num_items + 1 for i in range(n)])
    return out


def write_sequences(root: str, sequences: list[list[int]], num_items: int) -> None:
    rows = {
        "user_id": list(range(1, len(sequences) + 1)),
        "items": sequences,
        "train_items": [s[:-2] for s in sequences],
        "valid_item": [s[-2] for s in sequences],
        "test_item": [s[-1] for s in sequences],
        "length": [len(s) for s in sequences],
    }
    delta.write(f"{root}/sequences", pa.Table.from_pydict(rows, schema=schemas.SEQUENCES))
    items = {"item": [f"i{i}" for i in range(1, num_items + 1)], "item_id": list(range(1, num_items + 1))}
    delta.write(f"{root}/item_ids", pa.Table.from_pydict(items, schema=schemas.ITEM_IDS))


def write_semantic_ids(
    root: str, entity_type: str, num_entities: int, levels: int, k: int, version: str, seed: int = 0, skip=()
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, k, size=(num_entities, levels))
    ids = [i for i in range(1, num_entities + 1) if i not in skip]
    table = pa.table(
        {
            "entity_type": [entity_type] * len(ids),
            "entity_id": pa.array(ids, pa.int64()),
            "codes": pa.array([codes[i - 1].tolist() for i in ids], pa.list_(pa.int32())),
            "codebook_version": [version] * len(ids),
        }
    )
    delta.write(f"{root}/semantic_ids", table, mode="append" if delta.exists(f"{root}/semantic_ids") else "overwrite")
    return codes
