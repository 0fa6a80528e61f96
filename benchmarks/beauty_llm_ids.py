"""MoMoREC's LLM semantic IDs for Amazon Beauty on a 2-core CPU: every item, and a fixed user sample.

The real motivate and quantize stages on the ingested Beauty warehouse (configs/beauty.yaml), with:
- `motivate.agents.item_profiles=catalog`: an item's embedding is SmolLM2's mean-pooled hidden states
  of its sanitized catalog entry (title, category path, brand, price, description). The item analyst
  would cost ~1 s an item here (12,101 items: 3.4 h); the catalog embedding costs ~10 ms.
- `motivate.execution.sample_users=N`: the motivation analyst -> reviewer -> revision loop on a
  uniform random sample of N users, drawn with the platform seed 2026 (a prefix of one seeded
  permutation of the user ids, so a larger N keeps every user of a smaller one). All 22,363 users
  would take ~20 h on this CPU. Prompts show each user's last 10 TRAINING purchases only.
- quantize: PCA 64 + residual k-means, 3 x 256 codes for items (fit on training items only) and
  3 x --user-codes (32) for the sampled users (256 codes would leave ~4 of 1,000 users per code).
Users outside the sample have no motivation IDs; the recommenders map them to the reserved code.

    python benchmarks/beauty_llm_ids.py --users 1000          # results: benchmarks/results/beauty_llm_ids.json
    python benchmarks/train_quality.py --variants plain item_frozen item_trainable item_user_frozen ...

It also exports the item and user IDs as .npz (--npz-dir) for train_quality.py --data-npz runs on a
GPU machine without Delta.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path

import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results" / "beauty_llm_ids.json"
# configs/beauty.yaml's motivate settings when beauty_llm_ids.json was measured (it now ships the cheap setting that
# benchmarks/beauty_generation.py runs): v2 prompts, 10 history items, 3 motivations, one review round, SmolLM2's
# hidden states as embeddings.
MOTIVATE_AS_MEASURED = [
    "motivate.llm.max_model_len=2048",
    "motivate.llm.block_size=null",
    "motivate.llm.cpu_kvcache_gb=1",
    "motivate.embedder.kind=llm",
    "motivate.agents.prompt_version=v2",
    "motivate.agents.history_items=10",
    "motivate.agents.history_detail=profile",
    "motivate.agents.history_chars=200",
    "motivate.agents.profile_pattern=null",
    "motivate.agents.max_motivations=3",
    "motivate.agents.max_review_rounds=1",
    "motivate.agents.max_attempts=3",
    "motivate.agents.item_max_tokens=96",
    "motivate.agents.motivation_max_tokens=160",
    "motivate.agents.review_max_tokens=64",
    "motivate.execution.batch_rows=64",
]


def export_npz(cfg, folder: Path) -> dict[str, str]:
    """Frozen-mode SemanticInputs of items and users (reserved code for users outside the sample)."""
    from momorec.train.runner import portable_semantic_inputs

    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for entity in ("item", "user"):
        inputs, facts = portable_semantic_inputs(cfg, entity)
        path = folder / f"beauty_{entity}_llm.npz"
        inputs.save_npz(str(path))
        written[entity] = str(path)
        logging.info("wrote %s: %s", path, facts)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "beauty.yaml"))
    parser.add_argument("--warehouse", default=str(ROOT / "warehouse"))
    parser.add_argument("--users", type=int, default=1000, help="size of the fixed user sample")
    parser.add_argument("--set", dest="overrides", nargs="*", default=[], help="extra config overrides")
    parser.add_argument("--user-codes", type=int, default=32, help="codes per level of the user codebook")
    parser.add_argument(
        "--skip-quantize", action="store_true", help="only the motivate stage (e.g. to time a small sample)"
    )
    parser.add_argument(
        "--quantize-only",
        action="store_true",
        help="refit the codebooks on the motivate outputs already in the warehouse (e.g. other quantize settings)",
    )
    parser.add_argument("--npz-dir", default=str(ROOT / ".bench"))
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    from momorec.config import load_config
    from momorec.storage import delta

    overrides = [
        f"warehouse={args.warehouse}",
        *MOTIVATE_AS_MEASURED,
        "motivate.agents.item_profiles=catalog",
        f"motivate.execution.sample_users={args.users}",
        *args.overrides,
    ]
    cfg = load_config(args.config, overrides)
    if not delta.exists(cfg.table_path("sequences")):
        from momorec.ingest.stage import run_ingest

        run_ingest(cfg, show_progress=False)

    motivate = None
    start = time.perf_counter()
    if not args.quantize_only:
        from momorec.motivate.stage import run_motivate

        motivate = run_motivate(cfg, show_progress=False).model_dump(mode="json")
    motivate_s = time.perf_counter() - start
    users = delta.read(cfg.table_path("user_motivations"))
    sample = sorted(users.column("user_id").to_pylist())
    ok = users.filter(pc.equal(users.column("status"), "ok"))
    examples = ok.slice(0, 5).select(["user_id", "motivation_text", "accepted"]).to_pylist()
    out = {
        "machine": f"{os.cpu_count()} CPU cores, no GPU",
        "config": os.path.relpath(args.config, ROOT),
        "overrides": overrides[1:],
        "user_sample": {
            "rule": "uniform random: the first N of numpy default_rng(seed).permutation over the users sorted by id",
            "seed": cfg.seed,
            "size": len(sample),
            "user_ids_sha256": hashlib.sha256(json.dumps(sample).encode()).hexdigest(),
        },
        "motivate": motivate or "not run (--quantize-only): the warehouse's item_profiles and user_motivations",
        "motivate_s": round(motivate_s, 1),
        "users_ok": ok.num_rows,
        "example_motivations": examples,
    }
    if not args.skip_quantize:
        from momorec.quantize.stage import run_quantize

        start = time.perf_counter()
        out["quantize"] = {}
        for entity, extra in (("item", []), ("user", [f"quantize.codes={args.user_codes}"])):
            qcfg = load_config(args.config, [*overrides, f"quantize.entities=[{entity}]", *extra])
            out["quantize"][entity] = run_quantize(qcfg, show_progress=False).model_dump(mode="json")
        out["quantize_s"] = round(time.perf_counter() - start, 1)
        out["npz"] = export_npz(cfg, Path(args.npz_dir))
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(out, indent=2, sort_keys=True, default=str))
    print(json.dumps(out, indent=2, sort_keys=True, default=str))


if __name__ == "__main__":
    main()
