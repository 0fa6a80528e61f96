"""Where the LLM stage's time goes, and what each lever buys: the real motivate stage on the demo, per variant.

Each variant is `momorec run` (ingest -> motivate -> quantize) on the bundled demo (200 Beauty users, 187 items)
in a fresh folder and process, with the variant's `--set` overrides on configs/demo.yaml, followed by
`momorec inspect` on the same tables. Reported per variant, from the motivate run's MLflow counters:
- per agent: requests, generations, retries, prompt tokens (and prefix-cache hits), output tokens, wall,
  engine start, prefill and decode seconds (the engines' own split), embedding passes;
- the stage's wall time, and its cost per entity (stage wall / (items + users));
- the cost per entity that a run adds (`agent_s_per_entity`: every agent's and embedding pass's wall time less
  its engine starts, per entity): what a whole-dataset run pays per entity once Ray, actor and engine start-up,
  tables and MLflow are paid once;
- the training-free quality of the result (`momorec inspect`: retrieval of the validation item from the
  motivation embedding vs history-mean / popularity / random, grounding, specificity, reviewer);
- the ratios of each variant's costs per entity to the first variant's (the baseline) on this machine, in this run.

The machine is named in the file (cores, CPU flags that decide bf16 / int8 kernels, load average), since figures
differ between an AVX2-only and an AVX-512/AMX machine. Writes benchmarks/results/llm_engines.json after every
variant, so a cut-off run keeps what finished.

    .venv/bin/python benchmarks/llm_engines.py                       # every variant below
    .venv/bin/python benchmarks/llm_engines.py --variants today,diet  # some of them (added to the file)
    .venv/bin/python benchmarks/llm_engines.py --variants today,catalog_sentence_b256_block32 \
        --out benchmarks/results/llm_engines_avx2.json                # on an AVX2-only machine
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MOMOREC = Path(sys.executable).parent / "momorec"
RESULTS = REPO / "benchmarks" / "results" / "llm_engines.json"
CONFIG = REPO / "configs" / "demo.yaml"

# configs/demo.yaml now ships the cheapest measured setting (the last variant). TODAY restores, on top of it, the
# setting every cut is measured against: configs/demo.yaml as it was before (v2 prompts, the item analyst, whole
# profiles in purchase lines, one review round, LLM hidden-state embeddings, 64-row batches, vLLM's own KV blocks).
TODAY = [
    "motivate.agents.prompt_version=v2",
    "motivate.agents.item_profiles=analyst",
    "motivate.agents.history_detail=profile",
    "motivate.agents.history_chars=200",
    "motivate.agents.profile_pattern=null",
    "motivate.agents.max_review_rounds=1",
    "motivate.agents.item_max_tokens=80",
    "motivate.agents.motivation_max_tokens=96",
    "motivate.embedder.kind=llm",
    "motivate.llm.block_size=null",
    "motivate.execution.batch_rows=64",
    "motivate.execution.commit_rows=64",
    # vLLM's own repetition penalty over prompt and answer, as it ran then
    "motivate.llm.penalty_impl=dense",
    "motivate.llm.penalty_scope=prompt_and_output",
]
# The prompt diet: v3 templates (short system prompts with no per-user text, so every prompt of an agent
# shares its prefix in the engine's cache), a purchase line shows a 60-character title and the analyst's
# few-word "what" instead of the whole profile, and the item analyst's fields are plain words.
DIET = [
    "motivate.agents.prompt_version=v3",
    "motivate.agents.history_detail=what",
    "motivate.agents.history_chars=60",
    'motivate.agents.profile_pattern="[a-z][a-z ,\'-]{2,48}"',
    "motivate.agents.item_max_tokens=64",
    "motivate.agents.motivation_max_tokens=64",
]
NO_REVIEW = ["motivate.agents.max_review_rounds=0"]
SENTENCE = ["motivate.embedder.kind=sentence"]
CATALOG = ["motivate.agents.item_profiles=catalog"]
B256 = ["motivate.execution.batch_rows=256", "motivate.execution.commit_rows=256"]
KV4 = ["motivate.llm.cpu_kvcache_gb=4"]

# Each variant is TODAY plus its levers (later overrides win), so every row means what it meant when measured.
VARIANTS: dict[str, list[str]] = {
    "today": TODAY,
    "today_no_review": TODAY + NO_REVIEW,
    "diet_review": TODAY + DIET,
    "diet": TODAY + DIET + NO_REVIEW,
    "diet_sentence": TODAY + DIET + NO_REVIEW + SENTENCE,
    "catalog_sentence": TODAY + DIET + NO_REVIEW + SENTENCE + CATALOG,
    # the same, every user in one engine batch: does decode throughput grow with the batch?
    "catalog_sentence_b256": TODAY + DIET + NO_REVIEW + SENTENCE + CATALOG + B256,
    # and KV blocks of 32 tokens, so the prefix cache holds each agent's whole shared system prompt
    "catalog_sentence_b256_block32": ["motivate.llm.cpu_kvcache_gb=1"],
    # On an AVX2-only CPU (float32) prefill is most of the cost: a KV cache that holds every prompt of a 256-row
    # batch (1 GB holds ~23k tokens: a third of the batch waited, deferred).
    "default_kv4": KV4,
    # that setting before the sparse repetition penalty: vLLM's own, counting the prompt's tokens too
    "default_kv4_dense_penalty": KV4
    + ["motivate.llm.penalty_impl=dense", "motivate.llm.penalty_scope=prompt_and_output"],
    # the sparse penalty with the same answers as that one (prompt tokens counted): its speed alone
    "default_kv4_sparse_prompt_scope": KV4 + ["motivate.llm.penalty_scope=prompt_and_output"],
    # and fewer prompt tokens (retrieval fell: 0.086 -> 0.065, so not shipped)
    "default_kv4_chars40": KV4 + ["motivate.agents.history_chars=40"],
    # configs/demo.yaml as shipped: a 2 GB KV cache (vLLM zeroes the whole cache when it starts; a 256-row batch
    # of these prompts needs ~1.3 GB of it)
    "default": [],
    # Tried and not shipped (the row in llm_engines.json was measured with commit 29c311f, whose
    # agents.opening_in_prompt the next commit removed): the answer's fixed opening in the prompt instead of decoded.
}
STAGES = "pipeline.stages=[ingest,motivate,quantize]"


def machine() -> dict:
    flags = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_flags": sorted(flags & {"avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8"}),
        "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
    }


def momorec(args: list[str], work: Path, sets: list[str], config: Path = CONFIG, timeout: int = 5400) -> dict:
    """One `momorec` CLI command with --json in `work`; its result object (raises with its output on failure)."""
    command = [str(MOMOREC), *args, "-c", str(config), "--json"] + [a for s in sets for a in ("--set", s)]
    done = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def agent_stats(tracking_uri: str, run_id: str) -> dict:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    path = client.download_artifacts(run_id, "agent_stats.json", tempfile.mkdtemp())
    return json.loads(Path(path).read_text())


def summarize_agent(s: dict) -> dict:
    computed = s["tokens_in"] - s.get("cached_tokens", 0)
    out = {k: round(v, 2) if isinstance(v, float) else v for k, v in s.items() if k != "attempt_failures"}
    out["prompt_tokens_per_request"] = round(s["tokens_in"] / s["generations"], 1) if s["generations"] else 0.0
    out["prefill_tokens_per_s"] = round(computed / s["prefill_s"], 1) if s.get("prefill_s") else None
    out["decode_tokens_per_s"] = round(s["tokens_out"] / s["decode_s"], 1) if s.get("decode_s") else None
    return out


def run_variant(name: str, sets: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"llm-{name}-") as tmp:
        work = Path(tmp)
        tracking = f"sqlite:///{work / 'mlflow.db'}"
        common = [STAGES, f"warehouse={work / 'warehouse'}", f"tracking.tracking_uri={tracking}", *sets]
        start = time.perf_counter()
        run = momorec(["run"], work, common)
        wall = time.perf_counter() - start
        motivate = run["stages"]["motivate"]
        quality = momorec(["inspect"], work, common)
        stats = agent_stats(tracking, motivate["mlflow_run_id"])
    entities = motivate["items_processed"] + motivate["users_processed"]
    return {
        "overrides": sets,
        "run_wall_s": round(wall, 1),
        "motivate_wall_s": round(motivate["wall_time_s"], 1),
        "items": motivate["items_processed"],
        "users": motivate["users_processed"],
        "items_ok": motivate["items_ok"],
        "users_ok": motivate["users_ok"],
        "users_accepted": motivate["users_accepted"],
        "s_per_entity": round(motivate["wall_time_s"] / max(entities, 1), 4),
        "agents": {agent: summarize_agent(s) for agent, s in stats.items()},
        "quality": quality,
    }


def agent_s_per_entity(run: dict) -> float:
    """Seconds per entity that grow with the entities: every agent's and embedding pass's wall time less its
    engine starts. What a run over a whole dataset pays per entity once the fixed costs (Ray and actor start-up,
    engine starts, table and MLflow work) are spread over it."""
    entities = max(run["items"] + run["users"], 1)
    return round(sum(a["wall_s"] - a["start_s"] for a in run["agents"].values()) / entities, 4)


def headline(report: dict) -> dict:
    """Cost ratios against the first variant, and the quality figures that decide whether a cut is a win."""
    runs = report["variants"]
    if not runs:
        return {}
    first = runs[next(iter(runs))]
    base, base_added = first["s_per_entity"], agent_s_per_entity(first)
    out = {}
    for name, r in runs.items():
        retrieval = r["quality"].get("retrieval") or {}
        motivation = retrieval.get("motivation") or {}
        out[name] = {
            "s_per_entity": r["s_per_entity"],
            "cost_vs_first": round(r["s_per_entity"] / base, 3) if base else None,
            "agent_s_per_entity": agent_s_per_entity(r),
            "agent_cost_vs_first": round(agent_s_per_entity(r) / base_added, 3) if base_added else None,
            "motivate_wall_s": r["motivate_wall_s"],
            "users_ok_share": round(r["users_ok"] / max(r["users"], 1), 3),
            "items_ok_share": round(r["items_ok"] / max(r["items"], 1), 3),
            "retrieval_ndcg_10": motivation.get("ndcg_10"),
            "history_mean_ndcg_10": (retrieval.get("history_mean") or {}).get("ndcg_10"),
            "random_ndcg_10": (retrieval.get("random") or {}).get("ndcg_10"),
            "category_match": (r["quality"].get("grounding") or {}).get("category_match"),
            "category_match_shuffled": (r["quality"].get("grounding") or {}).get("category_match_shuffled"),
            "accepted_share": (r["quality"].get("review") or {}).get("accepted_share"),
            "distinct_share": (r["quality"].get("specificity") or {}).get("distinct_share"),
        }
    return out


# (with reviewer, without): the same prompts, seed and greedy decoding give the same first drafts, so the
# variant without the reviewer holds exactly the drafts that the reviewer then accepted or had revised.
REVIEW_PAIRS = (("today", "today_no_review"), ("diet_review", "diet"))


def revision_gains(report: dict) -> dict:
    """What the reviewer loop buys: quality with it minus without it, on the same users, and its cost."""
    runs = report["variants"]
    out = {}
    for with_review, without in REVIEW_PAIRS:
        if with_review not in runs or without not in runs:
            continue
        a, b = runs[with_review], runs[without]
        qa, qb = a["quality"], b["quality"]
        revised = (qa.get("review") or {}).get("revised_share") or 0.0
        ndcg = [((q.get("retrieval") or {}).get("motivation") or {}).get("ndcg_10") for q in (qa, qb)]
        match = [(q.get("grounding") or {}).get("category_match") for q in (qa, qb)]
        gain = ndcg[0] - ndcg[1] if None not in ndcg else None
        out[f"{with_review}_vs_{without}"] = {
            "revised_share": revised,
            "accepted_share": (qa.get("review") or {}).get("accepted_share"),
            "ndcg_10_gain_all_users": gain,
            "ndcg_10_gain_per_revised_user": gain / revised if gain is not None and revised else None,
            "category_match_gain": match[0] - match[1] if None not in match else None,
            "distinct_share_gain": (qa.get("specificity") or {}).get("distinct_share", 0)
            - (qb.get("specificity") or {}).get("distinct_share", 0),
            "motivate_wall_ratio": round(a["motivate_wall_s"] / b["motivate_wall_s"], 2),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--summarize", action="store_true", help="only recompute the summaries of the results file")
    parser.add_argument("--fresh", action="store_true", help="start the results file anew (else variants are added)")
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="results file (one per machine kind: figures differ by CPU)"
    )
    args = parser.parse_args()
    results = args.out
    if args.summarize:
        report = json.loads(results.read_text())
        report["headline"], report["revision_gain"] = headline(report), revision_gains(report)
        results.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps({"headline": report["headline"], "revision_gain": report["revision_gain"]}, indent=2))
        return
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: {list(VARIANTS)}")
    report: dict = {"machine": machine(), "config": "configs/demo.yaml", "stages": STAGES, "variants": {}}
    if results.exists() and not args.fresh:
        # add to the variants measured before on the same kind of machine (the first one stays the baseline)
        before = json.loads(results.read_text())
        if before.get("machine", {}).get("cpu_flags") != report["machine"]["cpu_flags"]:
            raise SystemExit(f"{results} was measured on a CPU with other flags: pass --out or --fresh")
        report["variants"] = before.get("variants", {})
    for name in names:
        print(f"variant {name} ...", flush=True)
        report["variants"][name] = run_variant(name, VARIANTS[name])
        report["headline"] = headline(report)
        report["revision_gain"] = revision_gains(report)
        report["machine"]["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report["headline"][name]), flush=True)
    print(json.dumps(report["headline"], indent=2))


if __name__ == "__main__":
    main()
