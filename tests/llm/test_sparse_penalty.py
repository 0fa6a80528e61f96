"""The sparse repetition penalty equals vLLM's dense one: on logits (exactly, through batch changes) and
on the real engine's greedy answers."""

from __future__ import annotations

import pytest
import torch
from vllm import SamplingParams
from vllm.model_executor.layers.utils import apply_penalties
from vllm.v1.sample.logits_processor import BatchUpdate, MoveDirectionality

from momorec.llm.sparse_penalty import EXTRA_ARG, OUTPUT_ONLY_ARG, SparseRepetitionPenalty

VOCAB = 50


def _dense(logits, prompts, outputs, penalties):
    """vLLM's own penalty over the same rows (prompts and outputs padded with VOCAB, as vLLM pads them)."""

    def padded(rows):
        width = max(1, max(len(r) for r in rows))
        return torch.tensor([r + [VOCAB] * (width - len(r)) for r in rows], dtype=torch.int64)

    zeros = torch.zeros(len(prompts))
    return apply_penalties(
        logits.clone(), padded(prompts), padded(outputs), zeros, zeros, torch.tensor(penalties, dtype=torch.float32)
    )


def _params(penalty: float | None) -> SamplingParams:
    return SamplingParams(max_tokens=8, extra_args=None if penalty is None else {EXTRA_ARG: penalty})


def test_equals_vllms_penalty_through_added_grown_removed_and_moved_rows():
    generator = torch.Generator().manual_seed(0)
    processor = SparseRepetitionPenalty(None, torch.device("cpu"), False)
    prompts = [[1, 2, 2, 7], [3, 4], [5, 6, 9, 9, 1]]
    outputs: list[list[int]] = [[], [], []]
    penalty = [1.3, None, 1.15]  # row 1 asks for no penalty
    added = [(k, _params(penalty[k]), prompts[k], outputs[k]) for k in range(3)]
    processor.update_state(BatchUpdate(batch_size=3, removed=[], added=added, moved=[]))

    def check():
        logits = torch.randn(len(prompts), VOCAB, generator=generator) * 3
        expected = _dense(logits, prompts, outputs, [p or 1.0 for p in penalty])
        assert torch.equal(processor.apply(logits.clone()), expected)
        assert not torch.equal(expected, logits)  # the check could fail: the penalty changed something

    check()
    outputs[0] += [7, 11]  # vLLM appends to the very lists it handed over
    outputs[2] += [12]
    processor.update_state(None)
    check()
    outputs[0].append(11)
    check()
    # Row 2 finishes; row 0 moves into slot 1 while row 1 leaves (the batch is condensed).
    processor.update_state(
        BatchUpdate(batch_size=2, removed=[1], added=[], moved=[(2, 1, MoveDirectionality.UNIDIRECTIONAL)])
    )
    prompts, outputs, penalty = [prompts[0], prompts[2]], [outputs[0], outputs[2]], [penalty[0], penalty[2]]
    check()
    processor.update_state(BatchUpdate(batch_size=2, removed=[], added=[], moved=[(0, 1, MoveDirectionality.SWAP)]))
    prompts, outputs, penalty = prompts[::-1], outputs[::-1], penalty[::-1]
    check()


def test_output_only_penalises_the_answers_repeats_and_not_the_prompt():
    processor = SparseRepetitionPenalty(None, torch.device("cpu"), False)
    output = [4, 9]
    params = SamplingParams(max_tokens=8, extra_args={EXTRA_ARG: 1.5, OUTPUT_ONLY_ARG: True})
    processor.update_state(BatchUpdate(batch_size=1, removed=[], added=[(0, params, [1, 2, 3], output)], moved=[]))
    logits = torch.randn(1, VOCAB, generator=torch.Generator().manual_seed(1)) * 3
    expected = _dense(logits, [[]], [output], [1.5])
    got = processor.apply(logits.clone())
    assert torch.equal(got, expected)
    assert torch.equal(got[0, [1, 2, 3]], logits[0, [1, 2, 3]]) and not torch.equal(got[0, output], logits[0, output])


def test_leaves_logits_alone_without_a_penalised_request():
    processor = SparseRepetitionPenalty(None, torch.device("cpu"), False)
    processor.update_state(BatchUpdate(batch_size=1, removed=[], added=[(0, _params(None), [1, 2], [])], moved=[]))
    logits = torch.randn(1, VOCAB)
    assert torch.equal(processor.apply(logits.clone()), logits)


@pytest.mark.llm
def test_engine_answers_are_the_same_with_either_penalty(resolved_model):
    from momorec.llm.base import Regex, build_engine
    from momorec.llm.config import LLMConfig

    system = "Describe the product in a few plain words."
    titles = ["Rose lip balm", "Argan oil shampoo, 12 oz", "Matte eyeshadow palette", "Nail polish remover pads"]
    # One float32 engine for both, so that only the penalty differs. In bfloat16 on the Intel Xeon with AMX the
    # same requests to the same engine gave other greedy answers from one call to the next (and a suite run once
    # saw two bfloat16 engines part); in float32 they repeat exactly, which the third call checks. The engine is
    # started with the sparse processor registered; a request without its extra argument gets vLLM's own penalty.
    for impl in ("sparse", "dense"):  # each setting picks its penalty (the engine starts vLLM only when it generates)
        chosen = build_engine(LLMConfig(engine="vllm", max_model_len=512, penalty_impl=impl), default_seed=7)
        assert chosen.penalty_is_sparse == (impl == "sparse")
        chosen.close()
    config = LLMConfig(engine="vllm", max_model_len=512, penalty_impl="sparse", dtype="float32")
    engine = build_engine(config, default_seed=7)
    answers = {}
    try:
        prompts = [engine.chat_prompt(system, t) for t in titles]
        for impl in ("sparse", "dense", "sparse"):
            engine.penalty_is_sparse = impl == "sparse"
            free = engine.generate(prompts, max_tokens=24)
            held = engine.generate(prompts, json_schema=Regex(r'\{"what":"[a-z][a-z ,]{2,30}"\}'), max_tokens=24)
            answers.setdefault(impl, []).append([g.text for g in free + held])
    finally:
        engine.close()
    (sparse, again), (dense,) = answers["sparse"], answers["dense"]
    assert sparse == again, "the same requests on the same engine gave other answers: the comparison means nothing"
    assert sparse == dense
    assert len(set(sparse)) > 1


def test_an_output_only_penalty_needs_the_sparse_penalty():
    from momorec.llm.config import LLMConfig

    with pytest.raises(ValueError, match="penalty_scope"):
        LLMConfig(engine="vllm", penalty_scope="output", penalty_impl="dense")
    assert LLMConfig(penalty_scope="output", penalty_impl="dense", repetition_penalty=1.0)  # nothing to count


@pytest.mark.llm
def test_hf_engine_penalises_only_the_answer_when_asked(hf_engine):
    from momorec.llm.base import build_engine
    from momorec.llm.config import LLMConfig

    system = "Repeat the product name, then say who buys it."
    titles = ["Rose lip balm", "Argan oil shampoo", "Matte eyeshadow palette", "Nail polish remover pads"]
    scoped = build_engine(LLMConfig(engine="hf", dtype="float32", penalty_scope="output"), default_seed=7)
    try:
        prompts = [scoped.chat_prompt(system, t) for t in titles]
        both = [g.text for g in hf_engine.generate(prompts, max_tokens=24)]
        answer_only = [g.text for g in scoped.generate(prompts, max_tokens=24)]
    finally:
        scoped.close()
    assert all(answer_only) and answer_only != both
    # the product's own words come back more often when the prompt's tokens are not penalised
    echoed = sum(t.split()[0].lower() in a.lower() for t, a in zip(titles, answer_only, strict=True))
    assert echoed > sum(t.split()[0].lower() in a.lower() for t, a in zip(titles, both, strict=True))
