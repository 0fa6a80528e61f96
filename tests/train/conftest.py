"""Fixtures of the training tests (helpers live in training_toydata.py)."""

from __future__ import annotations

import pytest
from training_toydata import ring_sequences, write_sequences


@pytest.fixture()
def toy_cfg(tmp_path, tracking_env):
    """A platform config over a 60-user, 25-item ring dataset in a temporary warehouse."""
    from momorec.config import load_config

    sequences = ring_sequences(60, 25, 9)
    write_sequences(str(tmp_path / "wh" / "toy"), sequences, 25)
    return load_config(
        None,
        [
            "dataset=toy",
            f"warehouse={tmp_path / 'wh'}",
            "train.launcher=local",
            "train.model.hidden_size=32",
            "train.model.inner_size=64",
            "train.model.dropout=0.1",
            "train.model.max_len=10",
            "train.batch_size=16",
            "train.learning_rate=0.01",
            "train.epochs=30",
            "train.patience=5",
            "evaluate.num_negatives=10",
        ],
    )
