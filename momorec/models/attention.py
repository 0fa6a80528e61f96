"""Masked self-attention with dropout on the attention probabilities, in cache-sized blocks, for the CPU.

softmax(QK^T / sqrt(w) + mask) then dropout then @ V, computed a few sequences at a time: the (B, h, T, T)
scores, probabilities and dropout mask never exist whole. Autograd's version writes each of them to memory and
reads them back in the backward pass; at MovieLens' 200 positions that traffic was most of a training step
(dropout 0.5 on the probabilities, as RecBole's SASRec and BERT4Rec). The backward pass recomputes a block's
probabilities from Q and K and redraws its dropout mask from the block's seed (flash attention's trick), so
nothing of size T x T is kept between the passes.

The dropout keep mask is Bernoulli(1 - p) as uniform >= p (parts.Dropout's draw), from a generator seeded per
block by one draw of torch's global generator: a seeded run stays reproducible.
"""

from __future__ import annotations

import math

import torch

BLOCK_BYTES = 1 << 20  # one block's (b, h, T, T) float32 scores: about L2-sized


def masked_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, blocked: torch.Tensor, dropout: float, training: bool
) -> torch.Tensor:
    """q, k (B, h, T, w), v (B, h, T, w_v); blocked (B, h, T, T) bool, True = may not attend (no row fully blocked).

    Returns (B, h, T, w_v): softmax(q k^T / sqrt(w), blocked) with dropout `dropout` when training, @ v.
    """
    p = dropout if training else 0.0
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()  # blocks of whole sequences are then contiguous
    seed = int(torch.randint(0, 2**62, (1,)).item()) if p > 0 else 0
    length = q.shape[2]
    per_sequence = q.shape[1] * length * length * q.element_size()
    block = max(1, BLOCK_BYTES // per_sequence)
    return BlockedAttention.apply(q, k, v, blocked, p, seed, block)


def _keep_mask(shape: torch.Size, p: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=generator).ge_(p)


def _probabilities(q: torch.Tensor, k: torch.Tensor, blocked: torch.Tensor) -> torch.Tensor:
    scores = q @ k.transpose(-1, -2)  # (b, h, T, T)
    scores.mul_(1.0 / math.sqrt(q.shape[-1])).masked_fill_(blocked, float("-inf"))
    return torch.softmax(scores, dim=-1)


class BlockedAttention(torch.autograd.Function):
    """The forward and backward passes of masked_attention, `block` sequences at a time."""

    @staticmethod
    def forward(ctx, q, k, v, blocked, p: float, seed: int, block: int):  # noqa: ANN001, ANN205
        out = torch.empty(*q.shape[:-1], v.shape[-1], dtype=v.dtype)  # (B, h, T, w_v)
        for start in range(0, q.shape[0], block):
            rows = slice(start, start + block)
            probs = _probabilities(q[rows], k[rows], blocked[rows])  # (b, h, T, T)
            if p > 0:
                probs.mul_(_keep_mask(probs.shape, p, seed + start)).mul_(1.0 / (1.0 - p))
            torch.matmul(probs, v[rows], out=out[rows])
        ctx.save_for_backward(q, k, v, blocked)
        ctx.p, ctx.seed, ctx.block = p, seed, block
        return out

    @staticmethod
    def backward(ctx, grad_out):  # noqa: ANN001, ANN205
        q, k, v, blocked = ctx.saved_tensors
        p, seed, block = ctx.p, ctx.seed, ctx.block
        scale = 1.0 / math.sqrt(q.shape[-1])
        grad_q, grad_k, grad_v = (torch.empty(t.shape, dtype=t.dtype) for t in (q, k, v))
        grad_out = grad_out.contiguous()
        for start in range(0, q.shape[0], block):
            rows = slice(start, start + block)
            probs = _probabilities(q[rows], k[rows], blocked[rows])  # P (b, h, T, T)
            grad_dropped = grad_out[rows] @ v[rows].transpose(-1, -2)  # d(dropout(P))
            if p > 0:
                keep = _keep_mask(probs.shape, p, seed + start).to(probs.dtype).mul_(1.0 / (1.0 - p))
                torch.matmul((probs * keep).transpose(-1, -2), grad_out[rows], out=grad_v[rows])
                grad_dropped.mul_(keep)  # dP
            else:
                torch.matmul(probs.transpose(-1, -2), grad_out[rows], out=grad_v[rows])
            # softmax: dS = P * (dP - rowsum(dP * P)); masked entries have P = 0, so dS = 0 there
            row_dot = (grad_dropped * probs).sum(dim=-1, keepdim=True)
            grad_scores = grad_dropped.sub_(row_dot).mul_(probs).mul_(scale)  # dS / sqrt(w)
            torch.matmul(grad_scores, k[rows], out=grad_q[rows])
            torch.matmul(grad_scores.transpose(-1, -2), q[rows], out=grad_k[rows])
        return grad_q, grad_k, grad_v, None, None, None, None
