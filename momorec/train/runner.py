"""One seed's training, put together from the parts: inputs, model, batches, validation, checkpoints.

`TrainingInputs.load` reads the Delta tables: in this process every user (`train_local`), on a Ray
worker its own shard of users (validation), on the Ray driver no user at all (the table's counts,
from a scan one record batch at a time). `train_local` runs the plain epoch loop in this process;
`momorec.train.distributed` runs the very same pieces inside Ray Train workers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from momorec.config import PlatformConfig
from momorec.core.checkpoint import (
    FILE,
    TrainState,
    load_checkpoint,
    save_checkpoint,
    train_state,
    upgraded_weights,
    warm_start,
)
from momorec.core.metrics import metric_sums, sums_to_metrics
from momorec.core.ranking import rank_users
from momorec.core.sequences import (
    ALL_USERS,
    SequenceData,
    SequenceFacts,
    Shard,
    TrainingRows,
    changed_users,
    load_sequences,
    scan_sequences,
    training_rows,
)
from momorec.core.user_selection import EVERYONE, UserSelection, sample_share
from momorec.models import SemanticInputs, SequentialRecommender, build_model
from momorec.models.config import SemanticInputConfig
from momorec.storage import objectstore
from momorec.train.loop import LossModule, fit
from momorec.train.semantic import load_semantic_inputs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UserSelections:
    """Whom one train stage trains and validates on: every user, or (the nightly refresh) the users whose history
    changed since the warm-start model trained plus a replay sample, validated on a stable sample."""

    train: UserSelection = EVERYONE
    valid: UserSelection = EVERYONE
    changed: int | None = None  # users whose sequence changed since train.users_since (None: not asked / unknown)

    @property
    def either(self) -> UserSelection:
        """The users read at all: the union of the two (their samples share one seed, so the larger contains the
        smaller)."""
        if self.train.everyone or self.valid.everyone:
            return EVERYONE
        return UserSelection(max(self.train.share, self.valid.share), self.train.seed, self.train.listed)

    def facts(self) -> dict[str, object]:
        out: dict[str, object] = {"users.train": self.train.label(), "users.valid": self.valid.label()}
        if self.changed is not None:
            out["users.changed"] = self.changed
        return out


def user_selections(cfg: PlatformConfig, users: int) -> UserSelections:
    """The selections of `cfg.train` over a table of `users` users (see TrainConfig.users_since / valid_users)."""
    train = cfg.train
    valid = UserSelection(sample_share(train.valid_users, users), cfg.seed)
    if train.users_since is None:
        return UserSelections(valid=valid)
    changed = changed_users(cfg.table_path("sequences"), train.users_since)
    if changed is None or changed.size == 0:
        log.warning("no user's sequence changed since version %s: training on every user", train.users_since)
        return UserSelections(valid=valid, changed=None if changed is None else 0)
    replay = sample_share(round(train.replay_ratio * changed.size), users)
    chosen = UserSelection(replay, cfg.seed, changed) if replay < 1.0 else EVERYONE
    log.info("training on %d changed users plus a %.4g replay share of the others", changed.size, replay)
    return UserSelections(train=chosen, valid=valid, changed=int(changed.size))


@dataclass
class TrainingInputs:
    """Sequences plus the semantic inputs of items and users, and facts about them for MLflow.

    data: the users this process trains or validates on (all, a Ray worker's shard, or none on the Ray
    driver); its num_items and versions are the tables' whatever users it holds."""

    data: SequenceData
    item_semantic: SemanticInputs | None
    user_semantic: SemanticInputs | None
    facts: dict[str, object] = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        cfg: PlatformConfig,
        users: Shard | None = ALL_USERS,
        selection: UserSelection = EVERYONE,
        facts: SequenceFacts | None = None,
    ) -> TrainingInputs:
        """The inputs with the users of `users` that `selection` keeps (None: no user, the counts only); `facts`:
        the table's scan when the caller already made it."""
        paths = cfg.table_path("sequences"), cfg.table_path("item_ids")
        table = facts or scan_sequences(*paths, cfg.train.min_train_items)
        if users is None:
            data = _no_users(table.num_items, table.versions)
        else:
            data = load_sequences(*paths, users, selection)
        model = cfg.train.model
        facts: dict[str, object] = {
            "users": table.users,
            "items": table.num_items,
            "train_rows": table.trainable_users,
            **{f"delta.{k}": v for k, v in table.versions.items()},
        }
        semantic = {}
        for entity, section in (("item", model.item_semantic), ("user", model.user_semantic)):
            if section.mode == "none":
                semantic[entity] = None
                continue
            size = table.num_items if entity == "item" else table.max_user_id
            codebook_dir = _codebook_dir(cfg, entity) if section.mode == "frozen" else None
            inputs, info = load_semantic_inputs(
                cfg.table_path("semantic_ids"), entity, size, _entity_ids(cfg, entity), section, codebook_dir
            )
            semantic[entity] = inputs
            facts.update({f"semantic.{entity}.{k}": v for k, v in info.items()})
        return cls(data, semantic["item"], semantic["user"], facts)


def _no_users(num_items: int, versions: dict[str, int | None]) -> SequenceData:
    empty = np.zeros(0, np.int64)
    return SequenceData(empty, empty, np.zeros(1, np.int64), empty, empty, empty, num_items, dict(versions))


def portable_semantic_inputs(cfg: PlatformConfig, entity: str) -> tuple[SemanticInputs, dict]:
    """An entity type's ("item" | "user") IDs with their codebook, entities without IDs on the reserved code:
    what `SemanticInputs.save_npz` snapshots for training on a machine without the Delta tables (frozen and
    trainable variants both read it)."""
    ids = _entity_ids(cfg, entity)
    size = int(ids.max()) if ids.size else 0
    section = SemanticInputConfig(mode="frozen", on_missing="reserved")
    table = cfg.table_path("semantic_ids")
    return load_semantic_inputs(table, entity, size, ids, section, _codebook_dir(cfg, entity))


def _entity_ids(cfg: PlatformConfig, entity: str) -> np.ndarray:
    """The ids of the split's items or users: one int64 column of `item_ids`, or of `sequences`."""
    from momorec.storage import delta

    name, column = ("item_ids", "item_id") if entity == "item" else ("sequences", "user_id")
    ids = delta.read(cfg.table_path(name), columns=[column]).column(column).to_numpy()
    return np.unique(np.asarray(ids, dtype=np.int64))


def _codebook_dir(cfg: PlatformConfig, entity: str) -> str:
    try:
        from momorec.quantize.codebook import latest_codebook_dir
    except ImportError as exc:  # the quantize stage is not installed in this build
        raise FileNotFoundError("frozen semantic IDs need momorec.quantize.codebook (the quantize stage)") from exc
    return latest_codebook_dir(cfg, entity)


def checkpoint_root(cfg: PlatformConfig) -> str:
    """Where a train run's checkpoints go: `train.checkpoint_dir`, else <dataset_root>/checkpoints."""
    return cfg.train.checkpoint_dir or objectstore.join(cfg.dataset_root, "checkpoints")


def initial_model(
    cfg: PlatformConfig, inputs: TrainingInputs, seed: int
) -> tuple[SequentialRecommender, dict[str, int]]:
    """A fresh model for `seed`, warm-started when `train.warm_start` names a checkpoint; returns
    (model, warm-start counts: tensors copied / grown / skipped, empty without a warm start)."""
    torch.manual_seed(seed)
    model = build_model(cfg.train.model, inputs.data.num_items, inputs.item_semantic, inputs.user_semantic, seed=seed)
    counts: dict[str, int] = {}
    if cfg.train.warm_start:
        counts = warm_start(model, load_checkpoint(cfg.train.warm_start))
        log.info("warm start from %s: %s", cfg.train.warm_start, counts)
    return model, counts


def make_model(cfg: PlatformConfig, inputs: TrainingInputs, seed: int) -> SequentialRecommender:
    return initial_model(cfg, inputs, seed)[0]


def local_batches(
    rows: TrainingRows, batch_size: int, seed: int, bucket: bool = False
) -> Callable[[int], Iterator[dict]]:
    """batches(epoch): the training rows in an order seeded by (seed, epoch), as dicts of tensors, each batch padded
    when it is drawn (memory: the histories plus one batch, not every row padded).

    bucket: within windows of 64 batches, rows of similar length share a batch (batch order is then
    shuffled), so a batch is trimmed to its longest row instead of max_len (`trim_padding`); the
    classic bucket iterator of sequence models. Every row is still seen once per epoch.
    """
    lengths = rows.lengths

    def batches(epoch: int) -> Iterator[dict]:
        rng = np.random.default_rng([seed, epoch])
        order = rng.permutation(len(lengths))
        groups = [order[i : i + batch_size] for i in range(0, order.size, batch_size)]
        if bucket:
            window = batch_size * 64
            groups = []
            for start in range(0, order.size, window):
                part = order[start : start + window]
                part = part[np.argsort(lengths[part], kind="stable")]
                groups.extend(part[i : i + batch_size] for i in range(0, part.size, batch_size))
            groups = [groups[i] for i in rng.permutation(len(groups))]
        for group in groups:
            yield {key: torch.from_numpy(value) for key, value in rows.batch(group).items()}

    return batches


def log_training_rows(rows: int) -> None:
    """`train.rows` on the seed's MLflow run: the rows an epoch goes over (fewer than the table's when the
    refresh trains on the changed users)."""
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.log_metric("train.rows", rows)


def make_validator(
    data: SequenceData,
    max_len: int,
    batch_size: int,
    device,
    all_reduce: Callable[[torch.Tensor], torch.Tensor] = lambda t: t,
) -> Callable[[torch.nn.Module], dict[str, float]]:
    """validate(model) -> {"valid.full.hr_10": ..., "valid.full.ndcg_10": ...} over `data`'s users,
    summed over workers by `all_reduce` (each worker passes its own shard)."""

    def validate(model) -> dict[str, float]:
        model = getattr(model, "module", model)
        _, ranks = rank_users(model, data, "valid", "full", max_len, batch_size, device=device)
        sums = all_reduce(metric_sums(torch.from_numpy(ranks)))
        return {f"valid.full.{k}": v for k, v in sums_to_metrics(sums).items() if k != "users"}

    return validate


def restore(model: torch.nn.Module, optimizer: torch.optim.Optimizer, payload: dict) -> TrainState:
    """Put a checkpoint's current weights and Adam moments back; the loop state to continue from."""
    model.load_state_dict(upgraded_weights(payload, payload["model_state"]))
    if payload["optimizer_state"] is not None:
        optimizer.load_state_dict(payload["optimizer_state"])
    state = train_state(payload)
    state.resumed_at.append(state.epoch)
    return state


def train_local(
    cfg: PlatformConfig,
    inputs: TrainingInputs,
    seed: int,
    checkpoint_dir: str,
    on_step: Callable[[], None] | None = None,
    on_epoch: Callable[[TrainState], None] | None = None,
    selections: UserSelections | None = None,
) -> TrainState:
    """Train one seed in this process (no Ray); a checkpoint after every epoch in `checkpoint_dir`
    (any objectstore location). A checkpoint already there is resumed: a restarted driver continues
    its run from the last finished epoch instead of starting again. With `selections`, `inputs` hold the users of
    `selections.either`; training and validation each take their own."""
    train = cfg.train
    device = torch.device("cuda" if train.use_gpu and torch.cuda.is_available() else "cpu")
    if train.torch_threads:
        torch.set_num_threads(train.torch_threads)
    model, warm = initial_model(cfg, inputs, seed)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=train.learning_rate, weight_decay=train.weight_decay)
    selections = selections or UserSelections()
    train_data, valid_data = (  # inputs hold selections.either: each part takes its own users
        inputs.data if chosen.everyone else inputs.data.subset(np.flatnonzero(chosen.keep(inputs.data.user_ids)))
        for chosen in (selections.train, selections.valid)
    )
    rows = training_rows(train_data, train.model.max_len, train.min_train_items)
    log_training_rows(len(rows))
    validate = make_validator(valid_data, train.model.max_len, train.eval_batch_size, device)
    state = TrainState(warm_start=warm)
    if objectstore.is_file(objectstore.join(checkpoint_dir, FILE)):
        state = restore(model, optimizer, load_checkpoint(checkpoint_dir))
        log.info("seed %d resumed at epoch %d from %s", seed, state.epoch, checkpoint_dir)

    def checkpoint(state: TrainState) -> None:
        save_checkpoint(checkpoint_dir, model, optimizer, state, seed, inputs.item_semantic, inputs.user_semantic)
        if on_epoch is not None:
            on_epoch(state)

    return fit(
        model,
        LossModule(model),
        optimizer,
        local_batches(rows, train.batch_size, seed, train.length_bucketing),
        validate,
        train.epochs,
        train.patience,
        state=state,
        on_epoch_end=checkpoint,
        grad_clip=train.grad_clip,
        device=device,
        on_step=on_step,
        time_budget_s=None if train.time_budget_min is None else 60 * train.time_budget_min,
        max_steps=train.max_steps_per_epoch,
    )
