"""Fixtures of the agent tests: one real HF engine per session, and the demo ingest tables once."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from momorec.llm.config import LLMConfig

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"

# Small and short: the real model on 2 shared cores is slow, and these tests check plumbing, not prose.
# The method's full agent loop is pinned here (configs/demo.yaml runs the cheaper catalog + sentence setting):
# item analyst, LLM embeddings, one review round.
FAST_MOTIVATE = [
    "motivate.agents.prompt_version=v2",
    "motivate.agents.item_profiles=analyst",
    "motivate.agents.history_detail=profile",
    "motivate.agents.history_chars=200",
    "motivate.agents.max_review_rounds=1",
    "motivate.embedder.kind=llm",
    "motivate.llm.block_size=null",
    "motivate.llm.engine=hf",
    "motivate.llm.dtype=float32",
    "motivate.llm.batch_size=8",
    "motivate.agents.history_items=3",
    "motivate.agents.max_attempts=2",
    "motivate.agents.item_max_tokens=72",
    "motivate.agents.motivation_max_tokens=80",
    "motivate.agents.review_max_tokens=48",
    "motivate.execution.batch_rows=8",
    "motivate.execution.commit_rows=4",
    "ray.num_cpus=4",
]


@pytest.fixture(scope="session")
def agent_engine():
    from momorec.llm.base import build_engine

    engine = build_engine(LLMConfig(engine="hf", dtype="float32", batch_size=8), default_seed=11)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def demo_ingest(tmp_path_factory, spark):
    """The demo's ingest tables, built once by the real ingest stage; tests copy them."""
    from momorec.config import load_config
    from momorec.ingest.stage import run_ingest

    root = tmp_path_factory.mktemp("demo_ingest")
    cfg = load_config(DEMO_CONFIG, [f"warehouse={root / 'warehouse'}", "spark.master=local[2]"])
    run_ingest(cfg, show_progress=False)
    return root / "warehouse"


@pytest.fixture()
def motivate_cfg(tmp_path, tracking_env, demo_ingest):
    """A demo config on a private copy of the ingest tables; call it with extra overrides."""
    from momorec.config import load_config

    warehouse = tmp_path / "warehouse"
    shutil.copytree(demo_ingest, warehouse)

    def make(*overrides: str):
        return load_config(DEMO_CONFIG, [f"warehouse={warehouse}", *FAST_MOTIVATE, *overrides])

    return make
