"""Every user of a `sequences` table scored by one model, in batches of users: what evaluate, recommend and
champion rescoring share.

The table's Parquet files (its current Delta snapshot) are read in batches of `batch_users` users; each
batch becomes a `SequenceData` of its own, checked like a whole table (`checked_batch`), and is scored by the
shared code, vectorised within the batch: `rank_users` for a split's ranks under a protocol, `scoring.top_k`
for recommendations.
Two engines run the same `BatchScorer`:

- local: in this process, one batch after another;
- ray: Ray Data `map_batches` over a pool of actors, each loading the model once (the checkpoint is put in
  the object store once), CPU actors here, GPU actors on a cluster (`gpus_per_actor`).

Either way the results come back as a stream of small Arrow batches (user_id + rank, or user_id + top-K),
so the caller commits them to Delta in one commit; no process holds every user's scores. Peak memory is
one batch's scores (batch_users x (N+1) floats) per scorer plus the model, whatever the number of users.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
from pydantic import Field

from momorec.core.config import ScoringConfig
from momorec.core.item_scores import ItemScorer
from momorec.core.metrics import per_user_metrics
from momorec.core.ranking import protocol_label, rank_users
from momorec.core.scoring import top_k_flat
from momorec.core.sequences import SEQUENCE_COLUMNS, checked_batch
from momorec.core.user_selection import UserSelection
from momorec.typed import StrictModel

RANKS = pa.schema([("user_id", pa.int64()), ("protocol", pa.string()), ("rank", pa.int64())])
TOP_K = pa.schema([("user_id", pa.int64()), ("items", pa.list_(pa.int64())), ("scores", pa.list_(pa.float32()))])


class ScoringTask(StrictModel):
    """What to compute for each user: `ranks` of the split's target, or the `top_k` items after the whole history."""

    kind: Literal["ranks", "top_k"]
    split: Literal["valid", "test"] = "test"
    protocols: list[Literal["full", "sampled"]] = Field(default_factory=lambda: ["full"])
    num_negatives: int = 100
    negative_seed: int = 0
    k: int = 10
    exclude_seen: bool = True
    users_share: float = Field(
        1.0, gt=0, le=1, description="Score only this stable sample of users (core.user_selection)."
    )
    users_seed: int = 0
    users_listed: list[int] | None = Field(
        None,
        description="Score only these users (the refresh's changed users); with users_share < 1, the sample's too.",
    )

    def selection(self) -> UserSelection | None:
        """The users this task scores as a UserSelection (None: every user). Listed users without a sample are a
        sample of share 0 plus the list."""
        if self.users_listed is None:
            return None if self.users_share >= 1.0 else UserSelection(self.users_share, self.users_seed)
        listed = np.unique(np.asarray(self.users_listed, dtype=np.int64))
        return UserSelection(self.users_share if self.users_share < 1.0 else 0.0, self.users_seed, listed)


class BatchScorer:
    """One model, loaded once; a batch of `sequences` rows in, its scores out (see the module doc)."""

    def __init__(self, payload: Any, task_json: str, num_items: int, threads: int = 0) -> None:
        import torch

        from momorec.core.checkpoint import model_from_checkpoint

        if threads:
            torch.set_num_threads(threads)
        if not isinstance(payload, dict):  # an object-store reference: every actor reads the one copy
            import ray

            payload = ray.get(payload)
        self.model = model_from_checkpoint(payload)
        self.scorer = ItemScorer(self.model)  # the item table built once, one score buffer for every batch
        self.task = ScoringTask.model_validate_json(task_json)
        self.selection = self.task.selection()  # built once: a listed refresh night names thousands of users
        self.num_items = num_items

    def __call__(self, batch: pa.Table) -> pa.Table:
        task = self.task
        if self.selection is not None:
            batch = batch.filter(pa.array(self.selection.keep(batch.column("user_id"))))
            if batch.num_rows == 0:  # none of this batch's users is in the sample
                return (TOP_K if task.kind == "top_k" else RANKS).empty_table()
        data = checked_batch(batch, self.num_items, "sequences (a scoring batch)")
        if task.kind == "top_k":
            items, scores = top_k_flat(
                self.scorer,
                data.user_ids,
                data.items,
                data.offsets[:-1],
                np.diff(data.offsets),
                task.k,
                task.exclude_seen,
                catalog_size=self.num_items,
            )
            k = items.shape[1]
            return pa.table(
                {
                    "user_id": data.user_ids,
                    "items": pa.FixedSizeListArray.from_arrays(items.reshape(-1), k).cast(pa.list_(pa.int64())),
                    "scores": pa.FixedSizeListArray.from_arrays(scores.reshape(-1), k).cast(pa.list_(pa.float32())),
                },
                schema=TOP_K,
            )
        parts = []
        for protocol in task.protocols:
            users, ranks = rank_users(
                self.model,
                data,
                task.split,
                protocol,
                self.model.cfg.max_len,
                batch_size=max(data.num_users, 1),
                num_negatives=task.num_negatives,
                negative_seed=task.negative_seed,
                scorer=self.scorer,
            )
            label = protocol_label(protocol, task.num_negatives)
            parts.append(
                pa.table({"user_id": users, "protocol": pa.repeat(label, len(users)), "rank": ranks}, schema=RANKS)
            )
        return pa.concat_tables(parts)


@dataclass(frozen=True)
class TableFiles:
    """A Delta table's current data files and their file system: resolved before scoring starts, because the
    result stream may feed a Delta commit, and delta-rs cannot open a table from inside its own write."""

    paths: list[str]
    filesystem: Any
    rows: int  # from the Parquet footers: what scoring will see, known before it starts


def table_files(table_path: str) -> TableFiles:
    from momorec.storage import delta, objectstore

    uris = delta.file_uris(table_path)
    if not uris:
        raise ValueError(f"table {table_path} has no data files")
    fs, paths = objectstore.filesystem_paths(uris)
    return TableFiles(paths, fs, pads.dataset(paths, filesystem=fs, format="parquet").count_rows())


def score_users(
    sequences: TableFiles,
    payload: dict,
    task: ScoringTask,
    num_items: int,
    batch_users: int,
    cfg: ScoringConfig,
    ray_cfg=None,
) -> Iterator[pa.RecordBatch]:
    """Score every user of the `sequences` files (`table_files`) with the checkpoint `payload`: a stream of result
    batches (schema RANKS or TOP_K) as they finish, in no particular user order. The model is loaded and the engine
    checked when this is called, so a bad setting raises here, not inside the caller's commit. `batch_users` users
    are scored at once: peak memory is batch_users x (N+1) scores per scorer."""
    paths, fs = sequences.paths, sequences.filesystem
    task_json = task.model_dump_json()
    if cfg.engine == "local":
        return _score_here(BatchScorer(payload, task_json, num_items), paths, fs, batch_users)
    import ray

    from momorec.storage.ray_runtime import cluster_address, init_ray

    init_ray(ray_cfg)
    if cluster_address(ray_cfg) is None:
        _check_room(ray.cluster_resources().get("CPU", 0.0), cfg)
    # at least two blocks per actor, so a table of few files still spreads over the pool
    blocks = max(len(paths), 2 * cfg.num_actors)
    ds = ray.data.read_parquet(paths, filesystem=fs, columns=list(SEQUENCE_COLUMNS), override_num_blocks=blocks)
    ds = ds.map_batches(
        BatchScorer,
        fn_constructor_kwargs={
            "payload": ray.put(payload),
            "task_json": task_json,
            "num_items": num_items,
            "threads": max(1, int(cfg.cpus_per_actor)),
        },
        compute=ray.data.ActorPoolStrategy(size=cfg.num_actors),
        num_cpus=cfg.cpus_per_actor,
        num_gpus=cfg.gpus_per_actor or None,
        batch_size=batch_users,
        batch_format="pyarrow",
    )
    return (part for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow") for part in batch.to_batches())


def _score_here(scorer: BatchScorer, paths: list[str], fs, batch_users: int) -> Iterator[pa.RecordBatch]:
    source = pads.dataset(paths, filesystem=fs, format="parquet")
    for batch in source.to_batches(columns=list(SEQUENCE_COLUMNS), batch_size=batch_users):
        if batch.num_rows:
            yield from scorer(pa.Table.from_batches([batch])).to_batches()


def _check_room(cpus: float, cfg: ScoringConfig) -> None:
    """A local Ray whose CPUs all go to the actor pool leaves Ray Data's read tasks none, and the job waits forever
    (DESIGN.md: the 2-core actor-pool deadlock): refuse it with the fix instead. A cluster may autoscale, so only a
    local Ray is checked."""
    pool = cfg.num_actors * cfg.cpus_per_actor
    if pool >= cpus:
        raise ValueError(
            f"scoring.num_actors x scoring.cpus_per_actor = {pool:g} CPUs take all {cpus:g} CPUs of the local Ray, "
            "leaving Ray Data's readers none (the job would wait forever): use fewer or smaller actors, or give "
            "the local Ray more logical CPUs than that (ray.num_cpus)"
        )


class RankTotals:
    """summarize()'s metrics per protocol of a RANKS stream, from sums gathered as the batches pass by."""

    def __init__(self, ks: list[int]) -> None:
        self.ks = list(ks)
        self.sums: dict[str, dict[str, float]] = {}

    def passing(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            self.add(batch)
            yield batch

    def add(self, batch: pa.RecordBatch) -> None:
        ranks = batch.column("rank").to_numpy()
        labels = np.asarray(batch.column("protocol").to_pylist())
        for label in np.unique(labels):
            values = per_user_metrics(ranks[labels == label], self.ks)
            values["mrr"] = 1.0 / (ranks[labels == label] + 1.0)
            total = self.sums.setdefault(str(label), {"users": 0.0})
            total["users"] += float((labels == label).sum())
            for name, v in values.items():
                total[name] = total.get(name, 0.0) + float(v.sum())

    def metrics(self) -> dict[str, dict[str, float]]:
        """protocol label -> {"hr_k", "ndcg_k", "mrr": means, "users": count}, as `summarize` gives."""
        return {
            label: {k: (v if k == "users" else v / total["users"]) for k, v in total.items()}
            for label, total in self.sums.items()
        }
