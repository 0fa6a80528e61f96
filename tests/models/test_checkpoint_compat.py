"""Checkpoints written before the backbones were composed of parts still load and score the same."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from momorec.core.checkpoint import FORMAT, load_checkpoint, model_from_checkpoint, warm_start
from tests.models.test_backbones import batch, make

OLD = Path(__file__).parent / "data" / "format1"
EXPECTED = torch.load(OLD / "outputs.pt", weights_only=False)


@pytest.mark.parametrize("arch", ["sasrec", "gru4rec", "bert4rec"])
def test_a_format_1_checkpoint_loads_and_scores_as_it_did(arch):
    payload = load_checkpoint(str(OLD / f"{arch}.pt"))
    assert payload["format"] == 1 and FORMAT == 2
    model = model_from_checkpoint(payload)
    with torch.no_grad():
        scores = model.full_sort_predict(batch())
    # The expected scores were recorded on another CPU, whose kernels sum in another order (CI saw relative
    # differences up to 3e-5); a weight loaded under the wrong name moves scores by orders of magnitude more.
    torch.testing.assert_close(scores, EXPECTED[arch]["scores"], rtol=1e-4, atol=1e-6)

    fresh = make(arch, *EXPECTED[arch]["modes"])  # the refresh's warm start from an old champion
    counts = warm_start(fresh, payload)
    # every learned weight is found under its new name; only buffers (codes, frozen vectors) are left
    assert counts["warm_start.copied"] == len(list(fresh.parameters()))
    with torch.no_grad():
        # Same weights, but not bit for bit the same scores: this torch build's CPU kernels round differently for
        # tensors that sit at other addresses (seen: up to 9e-8 absolute). A weight under a wrong name moves
        # scores by orders of magnitude more than this tolerance.
        torch.testing.assert_close(fresh.eval().full_sort_predict(batch()), scores, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("arch", ["sasrec", "gru4rec"])
def test_the_same_seed_builds_the_same_model_as_before(arch):
    """SASRec and GRU4Rec draw their initial weights in the same order as before: the format-1 checkpoints hold
    make()'s initial weights (BERT4Rec drew its weights twice before; now once, so its seeds give other, equally
    distributed, initial weights). Their dropout masks are drawn otherwise since parts.Dropout, so a seed's
    training run is no longer the old one; EXPECTED's training loss belonged to the old masks."""
    model = make(arch, *EXPECTED[arch]["modes"])
    fresh = model.state_dict()
    old = model_from_checkpoint(load_checkpoint(str(OLD / f"{arch}.pt"))).state_dict()
    assert fresh.keys() == old.keys()
    # Buffers are computed (the semantic-ID level vectors: centroids times a scale), and float arithmetic may round
    # differently on another CPU (the format-1 files were written on an AMD EPYC; an Intel Xeon differs in the last
    # bit); the drawn weights must be the very same numbers.
    computed = {name for name, _ in model.named_buffers()}
    for name, value in fresh.items():
        if name in computed:
            torch.testing.assert_close(value, old[name], rtol=1e-6, atol=1e-9, msg=name)
        else:
            assert torch.equal(value, old[name]), name


def test_an_unknown_checkpoint_format_is_a_clear_error():
    payload = load_checkpoint(str(OLD / "sasrec.pt"))
    payload["format"] = 7
    with pytest.raises(ValueError, match="format 7 is not known"):
        model_from_checkpoint(payload)
