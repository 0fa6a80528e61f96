"""Ray Train launcher: the plain epoch loop (`loop.fit`) inside data-parallel TorchTrainer workers.

- Training rows come from the `sequences` Delta table through Ray Data (its current snapshot's
  Parquet files, `delta.file_uris`), padded by `pad_train_items`, split evenly over the workers
  (Ray's default DataConfig: equal shards, so every worker takes the same number of DDP steps).
- Validation: each worker reads its own users from the tables (user_id % world == rank, read a record
  batch at a time: no process holds every user) and ranks them; the metric sums are all-reduced, so
  every worker takes the same early-stopping decision.
- Rank 0 reports a checkpoint after every epoch (model, optimizer, loop state, config) to the
  run's storage (`train.checkpoint_dir`, any objectstore location: Ray writes through a pyarrow
  file system). After a worker dies, Ray restarts the group (FailureConfig.max_failures) and the
  loop resumes from the last reported checkpoint. After the driver dies, the same run name on the
  same storage resumes too: Ray Train reads the run's checkpoint list back from storage.
- CPU workers use gloo, GPU workers NCCL (`use_gpu`).
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile
from typing import Any

import torch

from momorec.config import PlatformConfig
from momorec.core.checkpoint import FILE, TrainState, load_checkpoint, save_checkpoint, train_state, write_checkpoint
from momorec.core.sequences import Shard, pad_train_items
from momorec.core.user_selection import EVERYONE, UserSelection
from momorec.storage import delta, objectstore
from momorec.train.loop import LossModule, fit
from momorec.train.runner import (
    TrainingInputs,
    UserSelections,
    checkpoint_root,
    initial_model,
    log_training_rows,
    make_validator,
    restore,
)

log = logging.getLogger(__name__)


def _maybe_die(cfg: PlatformConfig, rank: int, epoch: int) -> None:
    """Fault injection for the resume test: SIGKILL this worker once (a real crash, no cleanup)."""
    fault = cfg.train.fault_injection
    if fault is None or fault.kill_rank != rank or fault.at_epoch != epoch or os.path.exists(fault.marker):
        return
    with open(fault.marker, "w", encoding="utf-8") as fh:
        fh.write(f"killed rank {rank} at epoch {epoch}\n")
    log.warning("fault injection: killing worker rank %d at epoch %d", rank, epoch)
    os.kill(os.getpid(), signal.SIGKILL)


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """What each Ray Train worker runs: build, restore, fit, report."""
    import ray.train
    import ray.train.torch

    cfg = PlatformConfig.model_validate(config["platform"])
    seed = int(config["seed"])
    train = cfg.train
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    if train.torch_threads:
        torch.set_num_threads(train.torch_threads)
    device = ray.train.torch.get_device()

    valid = UserSelection(float(config.get("valid_share", 1.0)), cfg.seed)
    inputs = TrainingInputs.load(cfg, Shard(rank, world), valid)  # this worker's validation users + semantic inputs
    model, warm = initial_model(cfg, inputs, seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=train.learning_rate, weight_decay=train.weight_decay)
    state = TrainState(warm_start=warm)
    restored = ray.train.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as folder:
            state = restore(model, optimizer, load_checkpoint(os.path.join(folder, FILE)))
        log.info("rank %d resumed at epoch %d", rank, state.epoch)
    model.to(device)
    loss_module = ray.train.torch.prepare_model(LossModule(model), parallel_strategy="ddp" if world > 1 else None)

    shard = ray.train.get_dataset_shard("train")

    def batches(epoch: int):
        _maybe_die(cfg, rank, epoch)
        return shard.iter_torch_batches(
            batch_size=train.batch_size,
            local_shuffle_buffer_size=4 * train.batch_size,
            local_shuffle_seed=seed * 100_003 + epoch,
            dtypes=torch.int64,
        )

    def all_reduce(t: torch.Tensor) -> torch.Tensor:
        if world == 1:
            return t
        t = t.to(device)
        torch.distributed.all_reduce(t)
        return t.cpu()

    def reduce_mean(value: float) -> float:
        return float(all_reduce(torch.tensor([value], dtype=torch.float64))[0]) / world

    validate = make_validator(inputs.data, train.model.max_len, train.eval_batch_size, device, all_reduce)

    def report(state: TrainState) -> None:
        metrics = {k: v for k, v in state.history[-1].items()}
        metrics.update(best_metric=state.best_metric, best_epoch=state.best_epoch, epoch_done=state.epoch)
        if rank == 0:
            with tempfile.TemporaryDirectory() as folder:
                save_checkpoint(folder, model, optimizer, state, seed, inputs.item_semantic, inputs.user_semantic)
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))
        else:
            ray.train.report(metrics, checkpoint=None)

    fit(
        model,
        loss_module,
        optimizer,
        batches,
        validate,
        train.epochs,
        train.patience,
        state=state,
        on_epoch_end=report,
        reduce_mean=reduce_mean,
        grad_clip=train.grad_clip,
        device=device,
        time_budget_s=None if train.time_budget_min is None else 60 * train.time_budget_min,
        max_steps=train.max_steps_per_epoch,
    )


def _trainable(batch, min_items: int, selection: UserSelection):
    """The rows of a record batch that train: enough training items, and a user `selection` keeps."""
    import pyarrow as pa
    import pyarrow.compute as pc

    enough = pc.greater_equal(pc.list_value_length(batch["train_items"]), min_items).to_numpy(zero_copy_only=False)
    return batch.filter(pa.array(enough & selection.keep(batch["user_id"])))


def training_dataset(cfg: PlatformConfig, selection: UserSelection = EVERYONE):
    """Ray Data: the sequences table's rows with enough training items (of the users `selection` keeps), padded
    to (max_len+1,).

    Materialised: the padded rows are small (Beauty: 22k x 51 int64 = 9 MB), so one read serves
    every epoch and every restart."""
    import ray.data

    path = cfg.table_path("sequences")
    ds = ray.data.read_parquet(delta.file_uris(path), columns=["user_id", "train_items"])
    ds = ds.map_batches(
        _trainable, fn_kwargs={"min_items": cfg.train.min_train_items, "selection": selection}, batch_format="pyarrow"
    )
    ds = ds.map_batches(pad_train_items, fn_kwargs={"max_len": cfg.train.model.max_len}, batch_format="numpy")
    return ds.materialize()  # read and pad once; epochs then stream blocks from the object store


def train_with_ray(
    cfg: PlatformConfig, seed: int, run_name: str, selections: UserSelections | None = None
) -> tuple[TrainState, str]:
    """Fit one seed with TorchTrainer; return the final loop state and the last checkpoint's file."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from momorec.storage.ray_runtime import init_ray

    init_ray(cfg.ray)
    selections = selections or UserSelections()
    rows = training_dataset(cfg, selections.train)
    log_training_rows(rows.count())  # materialised: the count is read from its blocks' metadata
    train = cfg.train
    storage = checkpoint_root(cfg)
    filesystem, storage_path = objectstore.filesystem(storage)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "platform": cfg.model_dump(mode="json"),
            "seed": seed,
            "valid_share": selections.valid.share,
        },
        torch_config=TorchConfig(backend="nccl" if train.use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=train.num_workers, use_gpu=train.use_gpu, resources_per_worker={"CPU": train.cpus_per_worker}
        ),
        run_config=RunConfig(
            name=run_name,
            storage_path=storage_path,
            storage_filesystem=filesystem,
            failure_config=FailureConfig(max_failures=train.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
        datasets={"train": rows},
    )
    result = trainer.fit()
    if result.error is not None:
        raise RuntimeError(f"Ray Train run {run_name} failed: {result.error}") from result.error
    if result.checkpoint is None:
        raise RuntimeError(f"Ray Train run {run_name} reported no checkpoint")
    with result.checkpoint.as_directory() as folder:
        payload = load_checkpoint(os.path.join(folder, FILE))
    final = objectstore.join(storage, run_name, "final", FILE)
    write_checkpoint(final, payload)
    return train_state(payload), final
