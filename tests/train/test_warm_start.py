"""Warm start (the nightly refresh): a new model starts from a checkpoint's best weights, also after
the catalog grew; BERT4Rec's [mask] row stays the mask row."""

from __future__ import annotations

import pytest
import torch

from momorec.core.checkpoint import FORMAT, TrainState, warm_start
from momorec.models import ModelConfig, SemanticInputs, build_model


def _model(arch: str, num_items: int, seed: int, item_mode: str = "none"):
    cfg = ModelConfig(
        architecture=arch,
        hidden_size=16,
        num_layers=1,
        num_heads=2,
        inner_size=32,
        max_len=8,
        item_semantic={"mode": item_mode},
    )
    gen = torch.Generator().manual_seed(seed)
    codes = torch.randint(1, 5, (num_items + 1, 2), generator=gen)
    codes[0] = 0
    items = SemanticInputs(codes=codes, num_codes=4, centroids=torch.randn(2, 4, 12, generator=gen), version="v")
    torch.manual_seed(seed)
    return build_model(cfg, num_items, items if item_mode != "none" else None, None, seed=seed)


def _payload(model) -> dict:
    state = TrainState()
    state.best_state = {k: v.clone() for k, v in model.state_dict().items()}
    return {"format": FORMAT, "model_state": model.state_dict(), "train_state": state.as_dict()}


@pytest.mark.parametrize("arch", ["sasrec", "gru4rec", "bert4rec"])
def test_same_shapes_copy_every_learned_tensor(arch):
    old, new = _model(arch, 20, seed=1), _model(arch, 20, seed=2)
    counts = warm_start(new, _payload(old))
    assert counts["warm_start.copied"] == len(list(new.named_parameters())) and counts["warm_start.grown"] == 0
    for name, value in new.named_parameters():
        assert torch.equal(value, dict(old.named_parameters())[name]), name


@pytest.mark.parametrize("arch", ["sasrec", "bert4rec"])
def test_grown_catalog_keeps_old_rows_new_rows_fresh_and_mask_at_the_end(arch):
    old, new = _model(arch, 20, seed=1), _model(arch, 25, seed=2)
    fresh = new.embedder.item_id_embedding.weight.detach().clone()
    counts = warm_start(new, _payload(old))
    assert counts["warm_start.grown"] == 1
    got, had = new.embedder.item_id_embedding.weight.detach(), old.embedder.item_id_embedding.weight.detach()
    assert torch.equal(got[:21], had[:21])  # padding + the 20 known items
    tail = new.embedder.extra_tokens
    new_rows = slice(21, 26)
    assert torch.equal(got[new_rows], fresh[new_rows])  # the 5 new items keep their fresh initialisation
    if tail:
        assert torch.equal(got[-tail:], had[-tail:])  # [mask] moved to the new end


def test_data_buffers_are_not_overwritten():
    old, new = _model("sasrec", 20, seed=1, item_mode="frozen"), _model("sasrec", 20, seed=2, item_mode="frozen")
    codes = new.embedder.item_semantic.codes.clone()
    assert not torch.equal(codes, old.embedder.item_semantic.codes)
    warm_start(new, _payload(old))
    assert torch.equal(new.embedder.item_semantic.codes, codes)  # today's semantic IDs, not the champion's
