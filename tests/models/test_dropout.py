"""parts.Dropout: nn.Dropout's distribution and scaling with a cheaper CPU mask, and the transformer blocks
written out with it compute what nn.TransformerEncoderLayer computes."""

from __future__ import annotations

import torch
from torch import nn

from momorec.models.config import ModelConfig
from momorec.models.parts import Dropout
from momorec.models.transformer import EncoderBlock, EncoderBlocks, attention_mask


def test_the_mask_keeps_one_minus_p_scaled_and_follows_the_seed():
    drop = Dropout(0.3).train()
    x = torch.ones(400, 500)
    torch.manual_seed(1)
    a = drop(x)
    torch.manual_seed(1)
    assert torch.equal(a, drop(x))  # seeded like every other draw
    kept = a != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.005  # 200k draws: 5 standard errors is 0.005
    assert torch.allclose(a[kept], torch.full_like(a[kept], 1 / 0.7))
    assert torch.equal(drop.eval()(x), x)
    y = torch.randn(50, 60, requires_grad=True)
    torch.manual_seed(2)
    out = drop.train()(y)
    out.sum().backward()
    assert torch.equal(y.grad, (out != 0).float() / 0.7)  # the gradient goes through the same mask


def test_blocks_compute_what_torchs_encoder_layer_computes():
    cfg = ModelConfig(hidden_size=16, num_heads=2, inner_size=32, num_layers=2, dropout=0.2, max_len=8)
    torch.manual_seed(0)
    ours = EncoderBlocks(EncoderBlock(cfg), cfg.num_layers)
    layer = nn.TransformerEncoderLayer(16, 2, 32, 0.2, activation="gelu", layer_norm_eps=1e-12, batch_first=True)
    torch_encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    torch_encoder.load_state_dict(ours.state_dict())  # the same parameter names, both ways
    valid = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 1]], dtype=torch.bool)
    x = torch.randn(3, 6, 16)
    for causal in (True, False):
        mask = attention_mask(valid, causal, 2)
        expected = torch_encoder.train().eval()(x, mask=mask)
        torch.testing.assert_close(ours.eval()(x, mask), expected, rtol=1e-5, atol=1e-6)
