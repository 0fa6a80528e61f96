"""One agent step over a batch: prompts -> engine -> parse, with bounded, batched retries.

A request that fails to parse is retried (up to `max_attempts` generations in all) at a raised
temperature with a new seed, since a greedy retry would repeat the same output. After the last
attempt its failure reason is returned, never raised. Counters per agent feed MLflow.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from momorec.llm.base import Constraint, Engine
from momorec.motivate.parsing import Parsed


@dataclass
class AgentStats:
    """Counters of one agent, summed over batches and actors (see `merge`)."""

    requests: int = 0
    generations: int = 0
    retries: int = 0
    ok: int = 0
    failures: Counter = field(default_factory=Counter)  # final failures by reason
    attempt_failures: Counter = field(default_factory=Counter)  # every failed attempt by reason
    tokens_in: int = 0  # prompt tokens, cached ones included
    cached_tokens: int = 0  # prompt tokens the engine's prefix cache served
    tokens_out: int = 0
    wall_s: float = 0.0  # engine calls, engine start included
    start_s: float = 0.0  # starting engine instances inside those calls
    prefill_s: float = 0.0
    decode_s: float = 0.0

    def merge(self, other: AgentStats) -> None:
        for name in _SUMMED:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.failures.update(other.failures)
        self.attempt_failures.update(other.attempt_failures)

    def to_dict(self) -> dict[str, Any]:
        return {
            **{name: getattr(self, name) for name in _SUMMED},
            "failures": dict(self.failures),
            "attempt_failures": dict(self.attempt_failures),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AgentStats:
        return cls(
            **{k: d.get(k, 0) for k in _SUMMED},
            failures=Counter(d["failures"]),
            attempt_failures=Counter(d["attempt_failures"]),
        )

    def timed(self, engine: Engine, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`call(*args, **kwargs)` (a method of `engine`), adding its wall time and the engine's
        start/prefill/decode split to these counters."""
        before = dataclasses.replace(engine.timing)
        start = time.perf_counter()
        result = call(*args, **kwargs)
        self.wall_s += time.perf_counter() - start
        after = engine.timing
        self.start_s += after.start_s - before.start_s
        self.prefill_s += after.prefill_s - before.prefill_s
        self.decode_s += after.decode_s - before.decode_s
        return result


_SUMMED = (
    "requests",
    "generations",
    "retries",
    "ok",
    "tokens_in",
    "cached_tokens",
    "tokens_out",
    "wall_s",
    "start_s",
    "prefill_s",
    "decode_s",
)


@dataclass(frozen=True)
class Request:
    """One logical agent call: a formatted prompt, its decoding constraint (JSON schema or Regex), and
    how to read the answer."""

    prompt: str
    schema: Constraint
    parse: Callable[[str, str], Parsed]  # (text, finish_reason) -> Parsed


@dataclass
class Outcome:
    value: Any | None
    attempts: int
    reason: str | None = None
    detail: str = ""
    raw: str = ""  # the last output text, kept for debugging failed rows


@dataclass(frozen=True)
class Decoding:
    max_tokens: int
    max_attempts: int
    temperature: float
    retry_temperature: float
    seed: int


def run_requests(engine: Engine, requests: list[Request], decoding: Decoding, stats: AgentStats) -> list[Outcome]:
    """Run every request to success or to its last attempt; outcomes in request order."""
    outcomes = [Outcome(None, 0) for _ in requests]
    pending = list(range(len(requests)))
    stats.requests += len(requests)
    for attempt in range(decoding.max_attempts):
        if not pending:
            break
        temperature = decoding.temperature if attempt == 0 else max(decoding.temperature, decoding.retry_temperature)
        schemas = [requests[i].schema for i in pending]
        generations = stats.timed(
            engine,
            engine.generate,
            [requests[i].prompt for i in pending],
            json_schema=schemas if any(s is not None for s in schemas) else None,
            max_tokens=decoding.max_tokens,
            temperature=temperature,
            seed=decoding.seed + attempt,
        )
        stats.generations += len(pending)
        stats.retries += len(pending) if attempt > 0 else 0
        still = []
        for i, gen in zip(pending, generations, strict=True):
            stats.tokens_in += gen.prompt_tokens
            stats.cached_tokens += gen.cached_tokens
            stats.tokens_out += gen.completion_tokens
            parsed = requests[i].parse(gen.text, gen.finish_reason)
            out = outcomes[i]
            out.attempts, out.raw = attempt + 1, gen.text
            if parsed.ok:
                out.value, out.reason, out.detail = parsed.value, None, ""
                stats.ok += 1
            else:
                out.reason, out.detail = parsed.reason, parsed.detail
                stats.attempt_failures[parsed.reason] += 1
                still.append(i)
        pending = still
    for i in pending:
        stats.failures[outcomes[i].reason] += 1
    return outcomes
