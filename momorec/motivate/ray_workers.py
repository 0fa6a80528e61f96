"""Ray Data actors: each holds one engine for its lifetime and runs the agent loop on a batch.

Used as `ds.map_batches(ItemWorker, compute=ray.data.ActorPoolStrategy(size=n), ...)`. Rows come in
and go out as Arrow; each output batch carries the agents' counters of that batch in `stats_json`
on its first row (the driver sums them for MLflow and drops the column before writing).

Why not ray.data.llm's processor: it runs one prompt -> one completion per row, while an agent step
here depends on the previous one (retries on a failed parse, reviewer -> revision rounds). The
class-based map_batches keeps one long-lived engine (vLLM or HF) per actor and runs that loop.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from momorec.motivate.config import MotivateConfig
from momorec.motivate.inputs import window_hash
from momorec.motivate.prompts import load_prompts
from momorec.motivate.runner import AgentStats
from momorec.motivate.workers import AGENT_NAMES, AgentContext, motivate_users, profile_items
from momorec.storage.schemas import ITEM_PROFILES, USER_MOTIVATIONS

STATS_COLUMN = "stats_json"


def with_stats(schema: pa.Schema) -> pa.Schema:
    return schema.append(pa.field(STATS_COLUMN, pa.string()))


class _Worker:
    def __init__(self, motivate_json: str, seed: int) -> None:
        from momorec.llm.base import build_engine
        from momorec.llm.embedder import build_embedder

        cfg = MotivateConfig.model_validate_json(motivate_json)
        self.engine = build_engine(cfg.llm, default_seed=seed)
        self.cfg = cfg
        self.prompt_version = cfg.agents.prompt_version
        self.ctx = AgentContext(
            engine=self.engine,
            prompts=load_prompts(cfg.agents.prompt_version),
            agents=cfg.agents,
            temperature=cfg.llm.temperature,
            seed=cfg.llm.seed if cfg.llm.seed is not None else seed,
            embedder=build_embedder(cfg.embedder, self.engine),  # sentence: the engine's pooling never starts
        )

    def _finish(self, inputs: list[dict[str, Any]], rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
        for source, row in zip(inputs, rows, strict=True):
            hashed = source["content_hash"]
            if row.pop("window_shaped", False):
                hashed = window_hash(hashed, self.engine.max_model_len)
            row.update(content_hash=hashed, prompt_version=self.prompt_version, model=self.engine.model_name)
            row[STATS_COLUMN] = ""
        if rows:
            rows[0][STATS_COLUMN] = json.dumps({k: v.to_dict() for k, v in self.ctx.stats.items()})
        self.ctx.stats = {name: AgentStats() for name in AGENT_NAMES}
        return pa.Table.from_pylist(rows, schema=with_stats(schema))


class ItemWorker(_Worker):
    def __call__(self, batch: pa.Table) -> pa.Table:
        inputs = batch.to_pylist()
        return self._finish(inputs, profile_items(self.ctx, inputs), ITEM_PROFILES)


class UserWorker(_Worker):
    def __call__(self, batch: pa.Table) -> pa.Table:
        inputs = batch.to_pylist()
        return self._finish(inputs, motivate_users(self.ctx, inputs), USER_MOTIVATIONS)
