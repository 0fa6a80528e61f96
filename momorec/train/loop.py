"""The epoch loop: a plain function that runs in a test, in this process, or inside a Ray Train worker.

Everything that differs between those places is injected: where batches come from (`batches`),
how validation is computed (`validate`, which all-reduces across workers under Ray), and what
happens after an epoch (`on_epoch_end`: save or report a checkpoint). Selection uses validation
NDCG@10 under full ranking only; the test split is never read here.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterable

import torch
from torch import nn

from momorec.core.checkpoint import TrainState

log = logging.getLogger(__name__)

SELECT_METRIC = "valid.full.ndcg_10"


def _to_device(batch: dict, device) -> dict[str, torch.Tensor]:
    return {k: (v if isinstance(v, torch.Tensor) else torch.as_tensor(v)).to(device) for k, v in batch.items()}


def fit(
    model: nn.Module,
    loss_module: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Callable[[int], Iterable[dict]],
    validate: Callable[[nn.Module], dict[str, float]],
    epochs: int,
    patience: int,
    state: TrainState | None = None,
    on_epoch_end: Callable[[TrainState], None] | None = None,
    reduce_mean: Callable[[float], float] = lambda x: x,
    grad_clip: float | None = None,
    device: torch.device | str = "cpu",
    on_step: Callable[[], None] | None = None,
    time_budget_s: float | None = None,
    max_steps: int | None = None,
) -> TrainState:
    """Train until `epochs` or until `patience` epochs bring no better validation NDCG@10.

    model: the recommender (its state is what we keep); loss_module: what we call on a batch to get
    the loss (the model's `calculate_loss`, possibly wrapped by DDP). batches(epoch) yields dicts of
    tensors for that epoch (seeded per epoch by the caller). validate(model) returns metrics with the
    key "valid.full.ndcg_10". time_budget_s: stop after the epoch that exhausts it (`stopped_by_time`).
    max_steps: end each epoch after this many steps (every worker stops at the same count, so DDP stays in step).
    Returns the final state; `state.best_state` holds the best weights.
    """
    state = state or TrainState()
    deadline = None if time_budget_s is None else time.monotonic() + time_budget_s
    while state.epoch < epochs and not state.stopped_early:
        start = time.perf_counter()
        model.train()
        total, steps = 0.0, 0
        for batch in batches(state.epoch):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_module(_to_device(batch, device))
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            total += float(loss.detach())
            steps += 1
            if on_step is not None:
                on_step()
            if max_steps is not None and steps >= max_steps:
                break
        if steps == 0:
            raise ValueError("an epoch produced no training batch (empty training set)")
        train_time = time.perf_counter() - start
        metrics = validate(model)
        if SELECT_METRIC not in metrics:
            raise KeyError(f"validate() must return {SELECT_METRIC}, got {sorted(metrics)}")
        record = {
            "epoch": float(state.epoch),
            "train.loss": reduce_mean(total / steps),
            "train.epoch_time_s": train_time,
            "train.steps": float(steps),
        }
        record.update(metrics)
        record["valid.time_s"] = time.perf_counter() - start - train_time
        state.history.append(record)
        if metrics[SELECT_METRIC] > state.best_metric:
            state.best_metric = metrics[SELECT_METRIC]
            state.best_epoch = state.epoch
            state.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
            state.bad_epochs = 0
        else:
            state.bad_epochs += 1
        state.stopped_early = state.bad_epochs >= patience
        log.info(
            "epoch %d loss %.4f %s %.4f (best %.4f @ %d) %.1fs",
            state.epoch,
            record["train.loss"],
            SELECT_METRIC,
            metrics[SELECT_METRIC],
            state.best_metric,
            state.best_epoch,
            train_time,
        )
        state.epoch += 1
        if deadline is not None and time.monotonic() > deadline and not state.stopped_early:
            state.stopped_early = state.stopped_by_time = True
            log.warning("time budget spent after epoch %d; best epoch %d", state.epoch - 1, state.best_epoch)
        if on_epoch_end is not None:
            on_epoch_end(state)
    return state


class LossModule(nn.Module):
    """`forward(batch) = model.calculate_loss(batch)`, so DDP's hooks see the training step."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model.calculate_loss(batch)
