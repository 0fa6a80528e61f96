"""The real engines on the CPU: structured generation, token counts, and embedding agreement."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.llm

YES_NO = {
    "type": "object",
    "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}},
    "required": ["answer"],
    "additionalProperties": False,
}
TEXTS = [
    "Nail polish in a soft pink shade for everyday wear.",
    "A gentle foaming cleanser for sensitive skin.",
    "Detangling brush for wet hair.",
    "Shopper keeps a daily skin-care routine and tries new serums.",
]


def _structured_answers(engine):
    prompts = [engine.chat_prompt("Answer in JSON.", q) for q in ("Is water wet?", "Is the sun cold?")]
    return engine.generate(prompts, json_schema=YES_NO, max_tokens=16, temperature=0.0, seed=3)


def test_hf_structured_generation_follows_the_schema(hf_engine):
    outs = _structured_answers(hf_engine)
    assert len(outs) == 2
    for out in outs:
        assert json.loads(out.text)["answer"] in {"yes", "no"}
        assert out.prompt_tokens > 10 and 0 < out.completion_tokens <= 16 and out.finish_reason == "stop"


def test_hf_token_limit_is_reported_as_length(hf_engine):
    (out,) = hf_engine.generate([hf_engine.chat_prompt("Be verbose.", "Describe the sea.")], max_tokens=3)
    assert out.completion_tokens == 3 and out.finish_reason == "length"


def test_hf_embeddings_do_not_depend_on_batch_padding(hf_engine):
    alone = hf_engine.embed(TEXTS[:1])
    batched = hf_engine.embed(TEXTS)
    assert batched.shape == (4, 576) and batched.dtype == np.float32
    np.testing.assert_allclose(alone[0], batched[0], rtol=1e-3, atol=1e-3)


@pytest.mark.slow
def test_vllm_structured_generation_follows_the_schema(vllm_engine):
    for out in _structured_answers(vllm_engine):
        assert json.loads(out.text)["answer"] in {"yes", "no"}
        assert out.prompt_tokens > 10 and 0 < out.completion_tokens <= 16


@pytest.mark.slow
def test_vllm_and_hf_give_the_same_embedding(vllm_engine, hf_engine):
    """Same tokens, same weights: vLLM (bfloat16) and HF (float32) mean-pooled states agree."""
    v, h = vllm_engine.embed(TEXTS), hf_engine.embed(TEXTS)
    assert v.shape == h.shape == (4, 576)
    cosine = (v * h).sum(axis=1) / (np.linalg.norm(v, axis=1) * np.linalg.norm(h, axis=1))
    assert cosine.min() > 0.99, cosine
    rel = np.linalg.norm(v - h, axis=1) / np.linalg.norm(h, axis=1)
    assert rel.max() < 0.1, rel
    # each vLLM vector is nearest to the HF vector of its own text: agreement is not an artefact
    # of the states' common direction (mean-pooled states of different texts are also similar)
    dist = np.linalg.norm(v[:, None, :] - h[None, :, :], axis=2)
    assert (dist.argmin(axis=1) == np.arange(4)).all()


def _reason_answers(engine):
    """The agents' whole-output regex (motivations JSON with pattern-held reasons), mixed in one batch
    with a JSON-schema row: each row keeps its own constraint."""
    from momorec.motivate.config import AgentsConfig
    from momorec.motivate.schemas import motivations_regex

    regex = motivations_regex(3, 2, AgentsConfig().reason_pattern)
    history = "[1] Nail polish, pink\n[2] Nail polish remover\n[3] Cuticle oil"
    prompts = [
        engine.chat_prompt("Say why this shopper buys, as JSON.", history),
        engine.chat_prompt("Answer in JSON.", "Is water wet?"),
    ]
    outs = engine.generate(prompts, json_schema=[regex, YES_NO], max_tokens=96, temperature=0.0, seed=3)
    return regex, outs


def _assert_reason_answers(regex, outs):
    import re

    reasons, yes_no = outs
    assert reasons.finish_reason == "stop" and re.fullmatch(regex.pattern, reasons.text), reasons.text
    for m in json.loads(reasons.text)["motivations"]:
        assert re.match(r"(Wants to|Needs to|Cares about) [a-z]", m["reason"]) and set(m["evidence"]) <= {1, 2, 3}
    assert json.loads(yes_no.text)["answer"] in {"yes", "no"}


def test_hf_regex_generation_matches_the_whole_output(hf_engine):
    _assert_reason_answers(*_reason_answers(hf_engine))


@pytest.mark.slow
def test_vllm_regex_generation_matches_the_whole_output(vllm_engine):
    _assert_reason_answers(*_reason_answers(vllm_engine))


def _timed_generation(engine, prompts, max_tokens):
    import dataclasses

    before = dataclasses.replace(engine.timing)
    outs = engine.generate(prompts, max_tokens=max_tokens, temperature=0.0, seed=1)
    after = engine.timing
    return outs, after.prefill_s - before.prefill_s, after.decode_s - before.decode_s


def test_hf_timing_splits_prefill_from_decode(hf_engine):
    """A long prompt with one output token is nearly all prefill; a short prompt with many output
    tokens is nearly all decode."""
    assert hf_engine.timing.starts == 1 and hf_engine.timing.start_s > 0
    long_prompt = hf_engine.chat_prompt("Read this.", " ".join(TEXTS * 12))
    _, prefill, decode = _timed_generation(hf_engine, [long_prompt], max_tokens=1)
    assert prefill > 0 and decode < prefill
    _, prefill, decode = _timed_generation(hf_engine, [hf_engine.chat_prompt("Be verbose.", "Hi")], max_tokens=24)
    assert decode > prefill > 0


@pytest.mark.slow
def test_vllm_reports_prefix_cache_hits_and_timing(vllm_engine):
    """Prompts that share a long system prompt: the second batch's shared prefix comes from the cache."""
    system = "You are a careful catalog analyst. " + " ".join(TEXTS * 6)
    first = [vllm_engine.chat_prompt(system, "Describe item one.")]
    second = [vllm_engine.chat_prompt(system, f"Describe item {k}.") for k in ("two", "three")]
    outs, prefill, decode = _timed_generation(vllm_engine, first, max_tokens=8)
    assert outs[0].cached_tokens < outs[0].prompt_tokens // 2
    assert prefill > 0 and decode > 0
    outs, _, _ = _timed_generation(vllm_engine, second, max_tokens=8)
    for out in outs:
        assert out.cached_tokens >= out.prompt_tokens // 2, (out.cached_tokens, out.prompt_tokens)
