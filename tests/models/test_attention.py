"""attention.masked_attention: the blocked CPU attention computes autograd's attention, dropout included."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import momorec.models.attention as attention
from momorec.models.transformer import attention_mask


def _inputs(batch: int, length: int, causal: bool, dtype=torch.float64):
    torch.manual_seed(3)
    heads, width = 2, 4
    q, k, v = (torch.randn(batch, heads, length, width, dtype=dtype, requires_grad=True) for _ in range(3))
    valid = torch.rand(batch, length) < 0.6
    valid[:, -1] = True
    valid[0] = False  # a sequence of padding only: every query sees itself alone
    blocked = attention_mask(valid, causal, heads).view(batch, heads, length, length)
    return q, k, v, blocked


def _reference(q, k, v, blocked, keep=None, p=0.0):
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    probs = scores.masked_fill(blocked, float("-inf")).softmax(dim=-1)
    if keep is not None:
        probs = probs * keep / (1 - p)
    return probs @ v


@pytest.mark.parametrize("block_bytes", [1, 700, 1 << 20])  # one sequence a block, uneven blocks, one block
@pytest.mark.parametrize("causal", [True, False])
def test_without_dropout_outputs_and_gradients_are_autograds(monkeypatch, block_bytes, causal):
    monkeypatch.setattr(attention, "BLOCK_BYTES", block_bytes)
    q, k, v, blocked = _inputs(7, 5, causal)
    out = attention.masked_attention(q, k, v, blocked, 0.5, training=False)  # eval: no dropout
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (q, k, v), grad)
    expected_out = _reference(q, k, v, blocked)
    expected = torch.autograd.grad(expected_out, (q, k, v), grad)
    torch.testing.assert_close(out, expected_out, rtol=1e-12, atol=1e-12)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_with_dropout_each_block_uses_its_seeded_mask_in_both_passes():
    q, k, v, blocked = _inputs(5, 6, causal=True)
    p, seed, block = 0.3, 1234, 2
    out = attention.BlockedAttention.apply(q, k, v, blocked, p, seed, block)
    # the masks the blocks draw: block starting at sequence s is seeded seed + s
    keep = torch.cat([attention._keep_mask(blocked[s : s + block].shape, p, seed + s) for s in range(0, 5, block)])
    expected_out = _reference(q, k, v, blocked, keep.to(q.dtype), p)
    torch.testing.assert_close(out, expected_out, rtol=1e-12, atol=1e-12)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (q, k, v), grad)
    expected = torch.autograd.grad(expected_out, (q, k, v), grad)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # and autograd's own numerical check of the custom backward pass
    assert torch.autograd.gradcheck(
        lambda q, k, v: attention.BlockedAttention.apply(q, k, v, blocked, p, seed, block), (q, k, v)
    )


def test_dropout_keeps_one_minus_p_follows_the_global_seed_and_is_off_in_eval():
    batch, heads, length = 64, 2, 40
    q = torch.zeros(batch, heads, length, 8)  # equal scores: each probability is 1 / length before dropout
    v = torch.eye(length)[None, None].expand(batch, heads, length, length).contiguous()  # out = probabilities
    blocked = torch.zeros(batch, heads, length, length, dtype=torch.bool)
    torch.manual_seed(5)
    a = attention.masked_attention(q, q, v, blocked, 0.25, training=True)
    torch.manual_seed(5)
    assert torch.equal(a, attention.masked_attention(q, q, v, blocked, 0.25, training=True))
    kept = a != 0
    assert abs(kept.double().mean().item() - 0.75) < 0.005  # 205k draws: 0.005 is about 5 standard errors
    torch.testing.assert_close(a[kept], torch.full_like(a[kept], 1 / length / 0.75))
    plain = attention.masked_attention(q, q, v, blocked, 0.25, training=False)
    torch.testing.assert_close(plain, torch.full_like(plain, 1 / length))


def test_it_matches_torchs_fused_attention_in_float32():
    q, k, v, blocked = _inputs(9, 30, causal=True, dtype=torch.float32)
    ours = attention.masked_attention(q, k, v, blocked, 0.5, training=False)
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, k, v, attn_mask=~blocked), rtol=1e-5, atol=1e-6)
