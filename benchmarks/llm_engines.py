"""vLLM vs HF transformers on this machine: the same motivation-analyst prompts through both engines.

Prompts are the real agent prompts (the default template version) for the first N demo users: each user's 5 most
recent training items (train = items[:-2]), titles only. Both engines decode greedily under the
same JSON schema (vLLM natively, HF through xgrammar's logits processor) with the same token limit,
so they do the same work. Reported: output tokens/s (aggregate, generation only), engine start
time, share of outputs that parse, embedding time. Writes benchmarks/results/llm_engines.json.

    python benchmarks/llm_engines.py --users 200 [--max-tokens 96] [--batch 32]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from momorec.agents.config import AgentsConfig
from momorec.agents.parsing import parse_motivations
from momorec.agents.prompts import load_prompts, motivation_prompt
from momorec.agents.schemas import motivations_schema
from momorec.llm.base import build_engine
from momorec.llm.config import LLMConfig, resolved_dtype

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "llm_engines.json"


def demo_histories(users: int, history: int) -> list[list[str]]:
    titles = {}
    for line in (REPO / "data" / "demo" / "items.jsonl").read_text().splitlines():
        row = json.loads(line)
        titles[row["item"]] = row.get("title") or row["item"]
    out = []
    for line in (REPO / "data" / "demo" / "sequences.txt").read_text().splitlines()[:users]:
        items = line.split()[1:]
        out.append([titles.get(i, i) for i in items[:-2][-history:]])  # training prefix only
    return out


def run_engine(kind: str, texts: list[tuple[str, str, int]], args) -> dict:
    cfg = LLMConfig(
        engine=kind,
        batch_size=args.batch,
        max_model_len=1024,
        dtype=args.vllm_dtype if kind == "vllm" else args.hf_dtype,
    )
    start = time.perf_counter()
    engine = build_engine(cfg, default_seed=0)
    prompts = [engine.chat_prompt(system, user) for system, user, _ in texts]
    schemas = [motivations_schema(n, 2) for _, _, n in texts]
    engine.generate(prompts[:1], json_schema=schemas[:1], max_tokens=4)  # warm-up (vLLM starts here)
    started = time.perf_counter() - start
    t = time.perf_counter()
    outs = engine.generate(prompts, json_schema=schemas, max_tokens=args.max_tokens, temperature=0.0, seed=0)
    gen_s = time.perf_counter() - t
    parsed = sum(parse_motivations(o.text, n, o.finish_reason).ok for o, (_, _, n) in zip(outs, texts, strict=True))
    t = time.perf_counter()
    engine.embed(["warm-up"])
    embed_start = time.perf_counter() - t
    t = time.perf_counter()
    engine.embed([o.text for o in outs])
    embed_s = time.perf_counter() - t
    engine.close()
    tokens_out = sum(o.completion_tokens for o in outs)
    return {
        "engine": kind,
        "dtype": resolved_dtype(cfg),
        "prompts": len(prompts),
        "tokens_in": sum(o.prompt_tokens for o in outs),
        "tokens_out": tokens_out,
        "generate_s": round(gen_s, 2),
        "tokens_per_s": round(tokens_out / gen_s, 2),
        "parsed_share": round(parsed / len(outs), 3),
        "start_s": round(started, 1),
        "embed_start_s": round(embed_start, 1),
        "embed_s": round(embed_s, 2),
        "texts_per_s_embed": round(len(outs) / embed_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--hf-dtype", default="float32", choices=["auto", "float32", "bfloat16"])
    parser.add_argument(
        "--vllm-dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16"],
        help="auto = float32 on an AVX2-only CPU (bf16 is emulated there), bfloat16 with native bf16",
    )
    args = parser.parse_args()
    prompts = load_prompts(AgentsConfig().prompt_version)
    texts = []
    for titles in demo_histories(args.users, 5):
        system, user = motivation_prompt(prompts, [(t, "") for t in titles], 2, 200)
        texts.append((system, user, len(titles)))
    report: dict = {}
    results: dict = {}
    for name in ("vllm", "hf"):  # the file is rewritten after each engine, so a cut-off run keeps vLLM's figures
        results[name] = run_engine(name, texts, args)
        write(report | results | {"users": args.users, "max_tokens": args.max_tokens, "batch": args.batch})
    report = {
        "machine": f"{os.cpu_count()} CPU cores, no GPU",
        "model": "smollm2-135m-instruct",
        "users": args.users,
        "max_tokens": args.max_tokens,
        "batch": args.batch,
        "load_avg_1m_at_end": round(os.getloadavg()[0], 1),
        **results,
        "ratio_vllm_over_hf_tokens_per_s": round(results["vllm"]["tokens_per_s"] / results["hf"]["tokens_per_s"], 2),
        "ratio_vllm_over_hf_embed": round(results["vllm"]["texts_per_s_embed"] / results["hf"]["texts_per_s_embed"], 2),
    }
    write(report)
    print(json.dumps(report, indent=2))


def write(report: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
