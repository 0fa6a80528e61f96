"""Skip-if-unchanged for the pipeline: what each stage read and wrote the last time it finished.

A stage's fingerprint is its config section plus the versions of the Delta tables it reads (and,
for recommend, which registry version is @champion). After a stage finishes, the pipeline records
the fingerprint, the versions of the tables it wrote and its result in
`<warehouse>/<dataset>/_pipeline/<stage>.json`. The next run skips the stage when the fingerprint
is the same and its outputs are still at the recorded versions; a crash before the record is
written means the stage runs again (motivate then resumes row by row). Ingest is not listed: it
fingerprints its input files itself.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from momorec import __version__
from momorec.config import PlatformConfig
from momorec.storage import delta, objectstore

# stage -> (tables read, tables written)
STAGE_TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "motivate": (("items", "sequences"), ("item_profiles", "user_motivations")),
    "quantize": (("item_profiles", "user_motivations"), ("semantic_ids",)),
    "train": (("sequences", "item_ids", "semantic_ids"), ("trained_models",)),
    "evaluate": (("sequences", "item_ids", "trained_models"), ("evaluation_ranks",)),
    "recommend": (
        ("sequences", "item_ids", "trained_models", "semantic_ids", "user_motivations"),
        ("recommendations",),
    ),
}

# Settings that say how to start, not what to compute: changing them does not redo a stage. users_since names the
# warm-start model's sequences version, so it moves with the champion just like warm_start.
_VOLATILE = {
    "train": ("warm_start", "users_since", "checkpoint_dir", "fault_injection"),
    # which users recommend rescores changes its cost, not its rows: both modes leave the same table
    "recommend": ("users", "max_changed_share", "batch_size", "join_bucket_users"),
}


def _section(cfg: PlatformConfig, stage: str) -> dict[str, Any]:
    section = getattr(cfg, stage).model_dump(mode="json")
    for key in _VOLATILE.get(stage, ()):
        section.pop(key, None)
    return section


def fingerprint(cfg: PlatformConfig, stage: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the stage's result depends on: code version, seed, its config section, input versions."""
    reads, _ = STAGE_TABLES[stage]
    parts = {
        "momorec": __version__,
        "seed": cfg.seed,
        "config": _section(cfg, stage),
        "inputs": {name: delta.version(cfg.table_path(name)) for name in reads},
        **(extra or {}),
    }
    parts["digest"] = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    return parts


def _path(cfg: PlatformConfig, stage: str) -> str:
    return objectstore.join(cfg.dataset_root, "_pipeline", f"{stage}.json")


def previous(cfg: PlatformConfig, stage: str, current: dict[str, Any]) -> dict[str, Any] | None:
    """The last record of `stage` if it is still valid for `current` (same fingerprint, outputs untouched)."""
    path = _path(cfg, stage)
    if stage not in STAGE_TABLES or not objectstore.is_file(path):
        return None
    record = objectstore.read_json(path)
    if record.get("fingerprint", {}).get("digest") != current["digest"]:
        return None
    _, writes = STAGE_TABLES[stage]
    if any(delta.version(cfg.table_path(name)) != record["outputs"].get(name) for name in writes):
        return None
    return record


def record(cfg: PlatformConfig, stage: str, current: dict[str, Any], result: dict[str, Any]) -> None:
    """Remember that `stage` finished on `current` (written atomically: a crash leaves the old record)."""
    _, writes = STAGE_TABLES[stage]
    payload = {
        "stage": stage,
        "finished_at": time.time(),
        "fingerprint": current,
        "outputs": {name: delta.version(cfg.table_path(name)) for name in writes},
        "result": result,
    }
    objectstore.write_json(_path(cfg, stage), payload)
