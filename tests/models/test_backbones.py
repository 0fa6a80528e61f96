"""Shapes, causality and padding of each backbone; semantic-ID embedding modes."""

from __future__ import annotations

import pytest
import torch

from momorec.models import ModelConfig, SemanticInputs, build_model
from momorec.models.semantic_id_embedding import SemanticIdEmbedding, project_centroids

NUM_ITEMS, NUM_USERS, LEVELS, K, D_LLM = 30, 6, 3, 8, 96
ARCHS = ["sasrec", "gru4rec", "bert4rec"]


def semantic(entities: int, seed: int) -> SemanticInputs:
    gen = torch.Generator().manual_seed(seed)
    codes = torch.randint(1, K + 1, (entities + 1, LEVELS), generator=gen)
    codes[0] = 0
    return SemanticInputs(
        codes=codes, num_codes=K, centroids=torch.randn(LEVELS, K, D_LLM, generator=gen), version="v1"
    )


def make(arch: str, item_mode="none", user_mode="none", fusion="prefix", **kw):
    cfg = ModelConfig(
        architecture=arch,
        hidden_size=16,
        num_layers=2,
        num_heads=2,
        inner_size=32,
        max_len=8,
        dropout=0.1,
        item_semantic={"mode": item_mode},
        user_semantic={"mode": user_mode},
        user_fusion=fusion,
        **kw,
    )
    torch.manual_seed(0)
    return build_model(cfg, NUM_ITEMS, semantic(NUM_ITEMS, 1), semantic(NUM_USERS, 2), seed=0)


def batch():
    seq = torch.tensor([[0, 0, 0, 0, 3, 4, 5, 6, 7], [1, 2, 3, 4, 5, 6, 7, 8, 9], [0, 0, 0, 0, 0, 0, 0, 11, 12]])
    return {"seq": seq, "history": seq[:, 1:], "user_id": torch.tensor([1, 2, 6])}


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize(
    "modes", [("none", "none", "prefix"), ("frozen", "frozen", "prefix"), ("trainable", "trainable", "final")]
)
def test_interface_shapes_and_gradients(arch, modes):
    model = make(arch, *modes)
    b = batch()
    loss = model.calculate_loss(b)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert model.embedder.item_id_embedding.weight.grad is not None
    model.eval()
    with torch.no_grad():
        scores = model.full_sort_predict(b)
        cands = torch.tensor([[5, 1, 2], [9, 3, 4], [12, 20, 30]])
        picked = model.predict(b, cands)
        served = model(torch.cat([b["user_id"][:, None], b["history"]], dim=1))
    assert scores.shape == (3, NUM_ITEMS + 1) and torch.isfinite(scores).all()
    assert picked.shape == (3, 3)
    torch.testing.assert_close(picked, scores.gather(1, cands), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(served, scores)


@pytest.mark.parametrize("arch", ["sasrec", "gru4rec"])
@pytest.mark.parametrize("user_mode", ["none", "trainable"])
def test_causal_models_never_see_the_future(arch, user_mode):
    model = make(arch, user_mode=user_mode).eval()
    items = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8]])
    changed = items.clone()
    changed[0, 6:] = torch.tensor([20, 21])
    user = torch.tensor([1])
    with torch.no_grad():
        a, b = model.states(items, user), model.states(changed, user)
    torch.testing.assert_close(a[:, :6], b[:, :6])  # positions before the change are untouched
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_bert4rec_sees_both_sides():
    model = make("bert4rec").eval()
    items = torch.tensor([[0, 0, 3, 4, 5, 6, 7, 8]])
    changed = items.clone()
    changed[0, 7] = 20
    with torch.no_grad():
        a, b = model.states(items, torch.tensor([1])), model.states(changed, torch.tensor([1]))
    assert not torch.allclose(a[:, 3], b[:, 3])


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("user_mode", ["none", "frozen"])
def test_padding_is_ignored(arch, user_mode):
    model = make(arch, user_mode=user_mode).eval()
    user = torch.tensor([3])
    short = torch.tensor([[0, 0, 4, 5, 6]])
    longer = torch.tensor([[0, 0, 0, 0, 0, 4, 5, 6]])  # same items, more padding (max_len 8)
    with torch.no_grad():
        a = model.states(short, user)
        b = model.states(longer, user)
        model.embedder.item_id_embedding.weight[0].normal_()  # garbage in the padding row changes nothing real
        c = model.states(short, user)
    torch.testing.assert_close(a[:, -3:], b[:, -3:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a[:, -3:], c[:, -3:], rtol=1e-5, atol=1e-5)
    assert torch.all(a[:, :2] == 0)  # padding states are zero


def test_frozen_mode_adds_no_trainable_parameter_and_trainable_mode_adds_tables():
    def trainable(m):
        return sum(p.numel() for p in m.parameters() if p.requires_grad)

    base = trainable(make("sasrec"))
    assert trainable(make("sasrec", "frozen", "frozen")) == base
    assert trainable(make("sasrec", "trainable", "none")) == base + LEVELS * (K + 1) * 16
    frozen = make("sasrec", "frozen", "frozen")
    names = dict(frozen.named_buffers())
    assert "embedder.item_semantic.level_vectors" in names and "embedder.user_semantic.level_vectors" in names


def test_semantic_ids_change_the_scores():
    plain, with_ids = make("sasrec").eval(), make("sasrec", "frozen").eval()
    with torch.no_grad():
        assert not torch.allclose(plain.embedder.table(), with_ids.embedder.table())


def test_projection_is_linear_so_residual_sums_survive():
    gen = torch.Generator().manual_seed(3)
    centroids = torch.randn(LEVELS, K, D_LLM, generator=gen)
    for hidden in (16, 128):  # PCA (d_llm > hidden) and random orthonormal (d_llm <= hidden)
        projected = project_centroids(centroids, hidden, seed=0)
        assert projected.shape == (LEVELS, K, hidden)
        x = centroids[0, 1] + centroids[1, 2] + centroids[2, 3]
        px = project_centroids(x.reshape(1, 1, -1).expand(1, 1, -1), hidden, seed=0) if hidden > D_LLM else None
        if px is not None:  # orthonormal map: same map for any input, so the sum is preserved exactly
            torch.testing.assert_close(
                px[0, 0], projected[0, 1] + projected[1, 2] + projected[2, 3], rtol=1e-4, atol=1e-4
            )
            assert projected.norm(dim=-1).allclose(centroids.norm(dim=-1), rtol=1e-4)


def test_reserved_code_is_a_zero_vector_and_bad_codes_fail():
    codes = torch.tensor([[0, 0], [1, 2], [0, 0]])  # entity 2 has no semantic IDs (reserved)
    emb = SemanticIdEmbedding(codes, num_codes=2, hidden=4, mode="trainable")
    table = emb.table()
    assert torch.all(table[0] == 0) and torch.all(table[2] == 0) and table[1].abs().sum() > 0
    with pytest.raises(ValueError, match="0..2"):
        SemanticIdEmbedding(torch.tensor([[0, 3]]), num_codes=2, hidden=4, mode="trainable")
    with pytest.raises(ValueError, match="centroids"):
        SemanticIdEmbedding(codes, num_codes=2, hidden=4, mode="frozen")


def test_bce_loss_and_config_errors():
    model = make("sasrec", loss="bce", num_negatives=3)
    assert torch.isfinite(model.calculate_loss(batch()))
    with pytest.raises(ValueError, match="divisible"):
        build_model(ModelConfig(hidden_size=10, num_heads=3), NUM_ITEMS)
    with pytest.raises(ValueError, match="needs semantic IDs"):
        build_model(ModelConfig(item_semantic={"mode": "frozen"}), NUM_ITEMS)
    with pytest.raises(ValueError, match="no target"):
        make("sasrec").calculate_loss(
            {"seq": torch.tensor([[0, 0, 0, 0, 0, 0, 0, 0, 5]]), "user_id": torch.tensor([1])}
        )
