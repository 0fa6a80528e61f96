"""Checkpoints on any objectstore location, and refused when they would run code on load."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from momorec.core.checkpoint import FILE, TrainState, load_checkpoint, model_from_checkpoint, save_checkpoint
from momorec.models import ModelConfig, build_model
from momorec.storage import objectstore


class _WritesAMarker:
    """What a malicious checkpoint carries: unpickling it calls os.system (here: touch a file)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _tiny_model():
    cfg = ModelConfig(hidden_size=8, inner_size=16, num_layers=1, num_heads=1, max_len=5)
    return build_model(cfg, num_items=7, seed=0)


def _state(model) -> TrainState:
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return TrainState(epoch=1, best_epoch=0, best_metric=0.5, best_state=weights, history=[{"epoch": 0.0}])


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, how):
    marker = tmp_path / "pwned"
    folder = tmp_path / "untrusted"
    folder.mkdir()
    payload = {"format": 2, "model_state": _WritesAMarker(str(marker))}
    with open(folder / FILE, "wb") as fh:
        torch.save(payload, fh) if how == "torch.save" else pickle.dump(payload, fh)

    with pytest.raises(ValueError, match="not a plain weights checkpoint"):
        load_checkpoint(str(folder))
    assert not marker.exists(), "loading the checkpoint ran its code"
    with open(folder / FILE, "rb") as fh:  # what loading used to do: unpickle whatever is there
        torch.load(fh, weights_only=False) if how == "torch.save" else pickle.load(fh)
    assert marker.exists()  # so the crafted file really is one that runs code


def test_save_and_load_round_trip_on_s3(s3_bucket):
    model = _tiny_model()
    folder = f"{s3_bucket}/checkpoints/run/seed_1"
    location = save_checkpoint(folder, model, None, _state(model), 1, None, None)
    assert location == f"{folder}/{FILE}" and objectstore.is_file(location)
    for name in (folder, location):  # the folder or the file
        rebuilt = model_from_checkpoint(load_checkpoint(name))
        for key, value in model.state_dict().items():
            torch.testing.assert_close(rebuilt.state_dict()[key], value)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(f"{s3_bucket}/checkpoints/none")
