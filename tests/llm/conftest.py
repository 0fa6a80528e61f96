"""One real engine of each kind per test session (SmolLM2-135M on the CPU), never one per test."""

from __future__ import annotations

import pytest

from momorec.llm.config import LLMConfig


@pytest.fixture(scope="session")
def resolved_model():
    from momorec.llm.model_cache import resolve_model

    return resolve_model(LLMConfig().model, LLMConfig().cache_dir)


@pytest.fixture(scope="session")
def hf_engine(resolved_model):
    from momorec.llm.base import build_engine

    engine = build_engine(LLMConfig(engine="hf", dtype="float32", batch_size=8), default_seed=7)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def vllm_engine(resolved_model):
    from momorec.llm.base import build_engine

    engine = build_engine(LLMConfig(engine="vllm", max_model_len=1024), default_seed=7)
    yield engine
    engine.close()
