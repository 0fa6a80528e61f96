"""Pure pooling math, and the model cache's one-time conversion."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from momorec.llm.base import pool_hidden
from momorec.llm.model_cache import resolve_model


def test_mean_and_last_pooling_ignore_padding_on_either_side():
    hidden = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)  # (B=2, T=3, H=2)
    right = np.array([[1, 1, 0], [1, 1, 1]])
    left = np.array([[0, 1, 1], [1, 1, 1]])
    np.testing.assert_allclose(pool_hidden(hidden, right, "mean", False)[0], (hidden[0, 0] + hidden[0, 1]) / 2)
    np.testing.assert_allclose(pool_hidden(hidden, left, "mean", False)[0], (hidden[0, 1] + hidden[0, 2]) / 2)
    np.testing.assert_allclose(pool_hidden(hidden, right, "last", False)[0], hidden[0, 1])
    np.testing.assert_allclose(pool_hidden(hidden, left, "last", False)[1], hidden[1, 2])
    normed = pool_hidden(hidden, right, "mean", True)
    np.testing.assert_allclose(np.linalg.norm(normed, axis=1), 1.0, rtol=1e-6)
    assert normed.dtype == np.float32
    with pytest.raises(ValueError, match="pooling"):
        pool_hidden(hidden, right, "max", False)


def test_a_folder_or_hub_id_is_used_as_is(tmp_path):
    assert resolve_model(str(tmp_path)).path == str(tmp_path.resolve())
    assert resolve_model("org/some-7b-instruct").path == "org/some-7b-instruct"


@pytest.mark.llm
def test_bundled_gguf_converts_once_into_a_safetensors_folder(resolved_model):
    folder = Path(resolved_model.path)
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    config = json.loads((folder / "config.json").read_text())
    assert config["hidden_size"] == 576 and "quantization_config" not in config
    stamp = (folder / "model.safetensors").stat().st_mtime
    again = resolve_model("smollm2-135m-instruct")
    assert again.path == resolved_model.path and (folder / "model.safetensors").stat().st_mtime == stamp
