"""The LLM stage over all of Amazon Beauty on this CPU: how long it takes, what it writes, how good it is.

The real `momorec ingest` and `momorec motivate` (configs/beauty.yaml: the measured cheap setting) in one work
folder, in phases that each resume where a cut-off run stopped (finished rows keep their content hash, so a
re-run skips them):

1. users: the motivation analyst over growing seeded user samples (each sample holds the smaller ones), up to
   all 22,363 users (in a fresh work folder the texts exported so far are imported first, so a later session
   goes on where an earlier one stopped); item texts are the catalog's, embedded by all-MiniLM-L6-v2. One
   motivate run per step, each timed on its own.
2. items: the item analyst over all 12,101 items (`item_profiles=analyst`), with a small user sample so the run
   stays an item run; the training-free quality after it compares item-analyst profiles with catalog texts on
   the same users (history-mean retrieval reads only item embeddings and the users' histories).

The items phase runs in its own copy of the ingest tables, so each phase's tables hold one setting.
After every step: `momorec inspect` (training-free quality, from the tables as they are), the texts exported
by `momorec texts export` to benchmarks/results/beauty_texts/<catalog_items | analyst_items>/ (Parquet, zstd:
the dataset's ids, texts, the agents' JSON, content hashes, status, a manifest of the settings; no
embeddings; `momorec texts import` re-embeds them), and benchmarks/results/beauty_generation.json rewritten,
so a cut-off run keeps what finished. The machine (cores, CPU flags, load) is named in the file.

    .venv/bin/python benchmarks/beauty_generation.py                      # both phases
    .venv/bin/python benchmarks/beauty_generation.py --phases users --steps 2000,22363
    .venv/bin/python benchmarks/beauty_generation.py --fresh --work /tmp/beauty-fresh   # all of it, from nothing
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.llm_engines import agent_stats, machine, summarize_agent  # noqa: E402
from benchmarks.llm_engines import momorec as cli  # noqa: E402

CONFIG = REPO / "configs" / "beauty.yaml"
RESULTS = REPO / "benchmarks" / "results" / "beauty_generation.json"
TEXTS = REPO / "benchmarks" / "results" / "beauty_texts"
ALL_USERS = 22_363
ITEM_PHASE_USERS = 256  # one engine batch of users rides along with the item analyst run
PHASE_TEXTS = {"users": "catalog_items", "items": "analyst_items"}  # folders under TEXTS, one per setting


def momorec(args: list[str], work: Path, sets: list[str]) -> dict:
    return cli(args, work, sets, config=CONFIG, timeout=4 * 3600)


def export_texts(work: Path, common: list[str], phase: str) -> dict:
    """`momorec texts export`: the phase's texts as compact Parquet + manifest (no embeddings), keyed by the
    dataset's own ids; `momorec texts import` embeds them into any warehouse of the same data."""
    return momorec(["texts", "export", str(TEXTS / PHASE_TEXTS[phase])], work, common)


def phase_warehouse(work: Path, phase: str) -> Path:
    """users: the ingest warehouse itself. items: a copy of its ingest tables, so the item analyst's profiles
    and the users motivated from them never overwrite the catalog-mode rows (each export stays one setting)."""
    if phase == "users":
        return work / "warehouse"
    target = work / "warehouse-items"
    if not target.exists():
        keep = {"items", "sequences", "interactions", "user_ids", "item_ids"}
        for table in keep:
            shutil.copytree(work / "warehouse" / "beauty" / table, target / "beauty" / table)
    return target


def run_step(work: Path, phase: str, sample: int, sets: list[str]) -> dict:
    warehouse = phase_warehouse(work, phase)
    common = [f"warehouse={warehouse}", f"tracking.tracking_uri=sqlite:///{work / 'mlflow.db'}", *sets]
    if sample < ALL_USERS:
        common.append(f"motivate.execution.sample_users={sample}")
    load = os.getloadavg()[0]
    start = time.perf_counter()
    result = momorec(["motivate"], work, common)
    wall = time.perf_counter() - start
    quality = momorec(["inspect"], work, common)
    stats = agent_stats(f"sqlite:///{work / 'mlflow.db'}", result["mlflow_run_id"])
    return {
        "phase": phase,
        "sample_users": sample,
        "overrides": sets,
        "load_avg_1m_at_start": round(load, 2),
        "process_wall_s": round(wall, 1),
        "motivate_wall_s": round(result["wall_time_s"], 1),
        "items_processed": result["items_processed"],
        "items_ok": result["items_ok"],
        "users_processed": result["users_processed"],
        "users_ok": result["users_ok"],
        "failures": result["failures"],
        "agents": {name: summarize_agent(s) for name, s in stats.items() if s.get("requests")},
        "quality": quality,
        "texts": export_texts(work, common, phase),
    }


def totals(steps: list[dict]) -> dict:
    """The full-Beauty figures: summed over the steps of each phase (each step ran only what was new)."""
    out = {}
    for phase in ("users", "items"):
        mine = [s for s in steps if s["phase"] == phase]
        if not mine:
            continue
        wall = sum(s["motivate_wall_s"] for s in mine)
        agent = {}
        for s in mine:
            for name, a in s["agents"].items():
                agent[name] = round(agent.get(name, 0.0) + a.get("wall_s", 0.0), 1)
        entities = sum(s["users_processed"] for s in mine) if phase == "users" else mine[-1]["items_processed"]
        last = mine[-1]["quality"]
        out[phase] = {
            "motivate_wall_s": round(wall, 1),
            "entities": entities,
            "s_per_entity": round(wall / max(entities, 1), 4),
            "agent_wall_s": agent,
            "retrieval": last.get("retrieval"),
            "grounding": last.get("grounding"),
            "specificity": last.get("specificity"),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="/tmp/beauty-generation", help="warehouse + MLflow; kept for resuming")
    parser.add_argument("--phases", default="users,items")
    parser.add_argument("--steps", default=f"2000,8000,{ALL_USERS}", help="user samples of the users phase")
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="generate every text anew: a new report (the old file is replaced) and no import of exported texts",
    )
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    report = json.loads(RESULTS.read_text()) if RESULTS.exists() and not args.fresh else {}
    report.update({"machine": machine(), "config": "configs/beauty.yaml", "work": str(work)})
    steps: list[dict] = report.setdefault("steps", [])

    def save() -> None:
        report["totals"] = totals(steps)
        report["machine"]["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
        RESULTS.write_text(json.dumps(report, indent=2) + "\n")

    if not (work / "warehouse" / "beauty" / "sequences").exists():
        common = [f"warehouse={work / 'warehouse'}", f"tracking.tracking_uri=sqlite:///{work / 'mlflow.db'}"]
        start = time.perf_counter()
        ingest = momorec(["ingest"], work, common)
        report["ingest_wall_s"] = round(time.perf_counter() - start, 1)
        report["ingest"] = {k: ingest.get(k) for k in ("users", "items", "interactions") if k in ingest}
        save()
        if (TEXTS / PHASE_TEXTS["users"] / "manifest.json").exists() and not args.fresh:
            # a fresh work folder (another session, another machine): the texts an earlier run exported come
            # back re-embedded, no LLM work, and the steps go on with the users they do not hold
            start = time.perf_counter()
            imported = momorec(["texts", "import", str(TEXTS / PHASE_TEXTS["users"])], work, common)
            report.setdefault("imports", []).append(
                {"wall_s": round(time.perf_counter() - start, 1), "counts": imported["counts"], "machine": machine()}
            )
            save()
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    if "users" in phases:
        for sample in sorted(int(n) for n in args.steps.split(",")):
            print(f"users: sample {sample} ...", flush=True)
            steps.append(run_step(work, "users", sample, []))
            save()
            print(json.dumps({k: steps[-1][k] for k in ("motivate_wall_s", "users_processed", "users_ok")}), flush=True)
    if "items" in phases:
        print("items: the item analyst over every item ...", flush=True)
        steps.append(run_step(work, "items", ITEM_PHASE_USERS, ["motivate.agents.item_profiles=analyst"]))
        save()
    print(json.dumps(report["totals"], indent=2))


if __name__ == "__main__":
    main()
