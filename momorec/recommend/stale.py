"""Which users' rows of `recommendations` can differ from what the table holds: all a nightly recommend rescores.

A row is a function of the served model and settings (weights, top_k, exclude_seen), the user's whole history
(`sequences`), their motivation (`user_motivations`: status and text), their semantic ID and the semantic IDs of
the items recommended to them (`semantic_ids`). The catalog only grows and a model never recommends an item it
does not know, so a larger catalog alone changes no row of a model that is kept.

Every write of the table records in its commit what it served and the versions of those tables (`served`). The
next write, with the same model and settings, rescores only the users that one of them changed since
(`core.table_changes`, which reads only the files a version rewrote) and MERGEs their rows; anything it cannot
vouch for (another model, a table it cannot diff, most users changed) means every user.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from momorec.config import PlatformConfig
from momorec.core.table_changes import changed_rows
from momorec.storage import delta, objectstore

SERVED = "momorec.recommend"  # the commitInfo key of what a write served
INPUTS = ("sequences", "user_motivations", "semantic_ids")


def served(chosen: dict, top_k: int, exclude_seen: bool, versions: dict[str, int | None]) -> dict[str, str]:
    """The commit metadata of a recommendations write: its model, its settings, its inputs' versions."""
    state = {
        "model": {"train_run_id": chosen["train_run_id"], "seed": int(chosen["seed"])},
        "settings": {"top_k": top_k, "exclude_seen": exclude_seen},
        "inputs": {name: versions.get(name) for name in INPUTS},
    }
    return {SERVED: json.dumps(state, sort_keys=True)}


@dataclass(frozen=True)
class Stale:
    """The users to rescore (sorted ids; None: every user), why, and how many each cause brought."""

    users: np.ndarray | None
    reason: str
    causes: dict[str, int] = field(default_factory=dict)


def _everyone(reason: str) -> Stale:
    return Stale(None, reason)


def users_recommended(recommendations: str, items: np.ndarray) -> np.ndarray:
    """The users whose current row recommends any of `items`: the table read a record batch at a time."""
    if items.size == 0:
        return np.empty(0, np.int64)
    fs, paths = objectstore.filesystem_paths(delta.file_uris(recommendations))
    found = [np.empty(0, np.int64)]
    for batch in pads.dataset(paths, filesystem=fs, format="parquet").to_batches(columns=["user_id", "items"]):
        lists = batch.column("items")
        hit = np.isin(pc.list_flatten(lists).to_numpy(zero_copy_only=False), items)
        if hit.any():
            rows = np.asarray(pc.list_parent_indices(lists).to_numpy(zero_copy_only=False))[hit]
            found.append(batch.column("user_id").to_numpy()[np.unique(rows)])
    return np.unique(np.concatenate(found))


def _ids(table: pa.Table, column: str) -> np.ndarray:
    return np.asarray(table.column(column).to_numpy(), dtype=np.int64)


def stale_users(cfg: PlatformConfig, now: dict[str, str], users: int, max_share: float) -> Stale:
    """The users whose rows a write serving `now` (`served`) must redo, given what the table's last write served;
    `users`: the users of `sequences`, against which `max_share` caps the changed ones."""
    path = cfg.table_path("recommendations")
    if not delta.exists(path):
        return _everyone("no recommendations yet")
    last = delta.last_commit(path).get(SERVED)
    if last is None:
        return _everyone("the table's last commit does not say what it served")
    before, after = json.loads(last), json.loads(now[SERVED])
    if before["model"] != after["model"]:
        return _everyone("another model is served")
    if before["settings"] != after["settings"]:
        return _everyone("top_k or exclude_seen changed")
    found: dict[str, np.ndarray] = {}
    for name in INPUTS:
        old, new = before["inputs"].get(name), after["inputs"].get(name)
        if old == new:
            continue
        if old is None or new is None:
            return _everyone(f"table {name} appeared or went away since the last write")
        if name == "semantic_ids":
            changed = changed_rows(cfg.table_path(name), old, ["entity_type", "entity_id"], ["codes"])
        else:
            values = ["items"] if name == "sequences" else ["status", "motivation_text"]
            changed = changed_rows(cfg.table_path(name), old, ["user_id"], values)
        if changed is None:
            return _everyone(f"{name} version {old} can no longer be read")
        if name != "semantic_ids":
            found[name] = _ids(changed, "user_id")
            continue
        entity = changed.column("entity_type")
        found["user semantic IDs"] = _ids(changed.filter(pc.equal(entity, "user")), "entity_id")
        items = _ids(changed.filter(pc.equal(entity, "item")), "entity_id")
        found["recommended item semantic IDs"] = users_recommended(path, items)
    stale = np.unique(np.concatenate([np.empty(0, np.int64), *found.values()]))
    causes = {name: int(ids.size) for name, ids in found.items()}
    if stale.size > max_share * users:
        return Stale(None, f"{stale.size} of {users} users changed: more than recommend.max_changed_share", causes)
    return Stale(stale, f"{stale.size} of {users} users changed since the last write", causes)
