"""The one engine interface every agent talks to, and what a generation returns.

An engine holds one model. `generate` turns already-formatted prompts into completions (optionally
constrained to a JSON schema or a `Regex` where the engine can); `embed` pools hidden states into
float32 vectors.
Agents never branch on the engine kind.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Generation:
    """One completion: its text, token counts, and why it stopped ("stop" | "length").

    cached_tokens: prompt tokens served from the engine's prefix cache (not recomputed)."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    cached_tokens: int = 0


@dataclass
class EngineTiming:
    """Where an engine's seconds went, summed since it was built: starting model instances, the
    prefill of prompts (up to each batch's last first token) and the decode after it."""

    start_s: float = 0.0
    starts: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0


@dataclass(frozen=True)
class Regex:
    """A decoding constraint over the whole output, for shapes JSON schema cannot give: xgrammar's
    JSON schema has no string `pattern`, and a forced sentence opener is what keeps a small model's
    free-text fields readable (momorec.motivate.schemas.motivations_regex)."""

    pattern: str


#: One prompt's decoding constraint: a JSON schema, a Regex, or None (unconstrained).
Constraint = dict[str, Any] | Regex | None


class Engine(abc.ABC):
    """A loaded LLM. Subclasses: momorec.llm.vllm_engine.VLLMEngine, momorec.llm.hf_engine.HFEngine."""

    #: The engine honours `json_schema` during decoding (vLLM); else callers validate and retry (HF).
    supports_structured_output: bool = False
    #: Name of the weights, stored with every row the engine produced.
    model_name: str = ""
    #: Longest prompt + completion in tokens (llm.max_model_len); None = no window (scripted test engines).
    #: The agents fit every prompt into it (momorec.motivate.prompts.fit_prompt) before `generate`.
    max_model_len: int | None = None
    #: The model's HF tokenizer (set by each engine; `prompt_tokens` counts with it).
    tokenizer: Any = None

    @property
    def timing(self) -> EngineTiming:
        """Where this engine's seconds went so far (engines add to it; callers diff two snapshots)."""
        if "_timing" not in self.__dict__:
            self._timing = EngineTiming()
        return self._timing

    @abc.abstractmethod
    def chat_prompt(self, system: str, user: str) -> str:
        """The model's chat template applied to one system + user turn, ready for `generate`."""

    def prompt_tokens(self, prompt: str) -> int:
        """How many tokens `generate` feeds the model for one formatted prompt (both engines tokenize
        with the model's HF tokenizer, `self.tokenizer`, without added special tokens)."""
        return len(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])

    @abc.abstractmethod
    def generate(
        self,
        prompts: list[str],
        *,
        json_schema: Constraint | list[Constraint] = None,
        max_tokens: int = 128,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> list[Generation]:
        """One completion per prompt, in order. temperature 0 = greedy.

        json_schema: one constraint (a JSON schema or a Regex) for all prompts, or one per prompt
        (None = unconstrained); honoured
        during decoding when `supports_structured_output`, else only a hint for the caller's validation.
        """

    @abc.abstractmethod
    def embed(self, texts: list[str]) -> np.ndarray:
        """Pooled hidden states: float32 array of shape (len(texts), hidden_size)."""

    def close(self) -> None:  # noqa: B027 - optional hook: engines without worker processes need nothing here
        """Free the model (and any worker processes)."""


def pool_hidden(hidden: np.ndarray, mask: np.ndarray, pooling: str, normalize: bool) -> np.ndarray:
    """Pool token states into one vector per text.

    hidden: (B, T, H) float; mask: (B, T) with 1 on real tokens (padding may be on either side).
    mean = masked mean over T; last = the state of the last real token. Returns (B, H) float32.
    """
    mask = mask.astype(np.float32)
    if pooling == "mean":
        pooled = (hidden * mask[:, :, None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1.0)
    elif pooling == "last":
        last = mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)  # index of the last 1 per row
        pooled = hidden[np.arange(hidden.shape[0]), last]
    else:
        raise ValueError(f"unknown pooling {pooling!r} (mean | last)")
    pooled = pooled.astype(np.float32)
    if normalize:
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    return pooled


def build_engine(cfg: Any, default_seed: int = 0) -> Engine:
    """The engine named by `cfg.engine` (an LLMConfig), its model resolved through the cache."""
    from momorec.llm.model_cache import resolve_model

    model = resolve_model(cfg.model, cfg.cache_dir)
    seed = cfg.seed if cfg.seed is not None else default_seed
    if cfg.engine == "hf":
        from momorec.llm.hf_engine import HFEngine

        return HFEngine(cfg, model, seed)
    if cfg.engine == "vllm":
        from momorec.llm.vllm_engine import VLLMEngine

        return VLLMEngine(cfg, model, seed)
    raise ValueError(f"unknown engine {cfg.engine!r}")
