"""Training losses of P output states (P, d) against their target items (P,), scored on the item table.

A backbone decides which positions are trained (every next item for SASRec and GRU4Rec, the masked
items for BERT4Rec) and passes those states here; the loss is chosen by `ModelConfig.loss`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from momorec.models.config import ModelConfig

Loss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _check(targets: torch.Tensor) -> None:
    if targets.numel() == 0:
        raise ValueError("training batch has no target position (every sequence is shorter than 2 items)")


# Rows of the (rows, N+1) score block the CPU path computes at once: ~4 MB at Beauty's 12k items, so the block
# stays in cache between its matmul, softmax and gradient matmuls (benchmarks/train_epoch.py measured the sizes).
CPU_SCORE_BLOCK_BYTES = 4 << 20


def full_softmax_ce(hidden: torch.Tensor, targets: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over all N items (RecBole's SASRec setting); padding is never a class.

    On CPU the (P, N+1) logits are never held whole: `_BlockedSoftmaxCE` scores a block of positions, turns
    it into its gradient in place and moves on (the same loss and gradients as the whole-matrix path, which
    CUDA keeps: one large kernel beats many small ones there)."""
    _check(targets)
    if hidden.device.type == "cpu":
        rows = max(16, CPU_SCORE_BLOCK_BYTES // (4 * table.shape[0]))
        return _BlockedSoftmaxCE.apply(hidden, table, targets, rows)
    logits = hidden @ table.T  # (P, N+1)
    logits[:, 0] = float("-inf")
    return F.cross_entropy(logits, targets)


class _BlockedSoftmaxCE(torch.autograd.Function):
    """mean_p CE(softmax(hidden_p @ table.T), target_p), column 0 (padding) excluded, computed block by block.

    The gradient of the summed CE with respect to a block's logits is softmax - onehot(target); the forward
    pass forms it in the block's own buffer and folds it straight into d hidden = G @ table and
    d table += G.T @ hidden, so backward only scales the two saved gradients."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, table: torch.Tensor, targets: torch.Tensor, rows: int) -> torch.Tensor:
        want_hidden, want_table = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        hidden, table = hidden.detach(), table.detach()
        count = hidden.shape[0]
        grad_hidden = torch.empty_like(hidden) if want_hidden else None
        grad_table = torch.zeros_like(table) if want_table else None
        buffer = hidden.new_empty(min(rows, count), table.shape[0])
        total = hidden.new_zeros(())
        for start in range(0, count, rows):
            h, t = hidden[start : start + rows], targets[start : start + rows]
            logits = torch.mm(h, table.T, out=buffer[: h.shape[0]])  # (r, N+1)
            logits[:, 0] = float("-inf")
            norm = torch.logsumexp(logits, dim=1, keepdim=True)  # (r, 1)
            total += (norm.squeeze(1) - logits.gather(1, t[:, None]).squeeze(1)).sum()
            if grad_hidden is None and grad_table is None:
                continue
            grad = logits.sub_(norm).exp_()  # softmax, in place
            grad[torch.arange(h.shape[0], device=h.device), t] -= 1.0
            if grad_hidden is not None:
                torch.mm(grad, table, out=grad_hidden[start : start + rows])
            if grad_table is not None:
                grad_table.addmm_(grad.T, h)
        ctx.count = count
        ctx.save_for_backward(grad_hidden, grad_table)
        return total / count

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        grad_hidden, grad_table = ctx.saved_tensors
        scale = grad_output / ctx.count
        return (
            None if grad_hidden is None else grad_hidden * scale,
            None if grad_table is None else grad_table * scale,
            None,
            None,
        )


def sampled_bce(num_negatives: int) -> Loss:
    """Binary CE of each target against `num_negatives` uniform negatives (the original SASRec)."""

    def loss(hidden: torch.Tensor, targets: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        _check(targets)
        negatives = torch.randint(1, table.shape[0], (targets.numel(), num_negatives), device=targets.device)
        pos = (hidden * table[targets]).sum(-1)  # (P,)
        neg = torch.einsum("pd,pnd->pn", hidden, table[negatives])  # (P, n)
        positive = F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos))
        return positive + F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg)) * num_negatives

    return loss


def build_loss(cfg: ModelConfig) -> Loss:
    return full_softmax_ce if cfg.loss == "ce" else sampled_bce(cfg.num_negatives)
