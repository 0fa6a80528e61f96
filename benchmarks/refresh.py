"""The nightly refresh vs a full run: wall time when a small share of users has new events.

In a fresh work folder (its own warehouse and sqlite MLflow store): a full `momorec run` of the
config, then one night of new logs for `--share` of the users (2 unseen purchases each,
scripts/make_new_logs.py), then `momorec refresh` on it, then the same refresh again (must change
nothing). Target: refresh <= 10 % of the full run. Writes benchmarks/results/refresh.json.

    python benchmarks/refresh.py [--config configs/demo.yaml] [--share 0.01] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # scripts/make_new_logs.py
RESULTS = REPO / "benchmarks" / "results" / "refresh.json"


def stage_walls(result) -> dict[str, float | str]:
    return {
        name: ("skipped" if r.get("skipped") else round(r.get("wall_time_s") or 0.0, 1))
        for name, r in result.stages.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "demo.yaml"))
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--share", type=float, default=0.01, help="Share of users with new events.")
    parser.add_argument("--workdir", default=None, help="Work folder (default: a new temporary one).")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument(
        "--next-night",
        action="store_true",
        help="Reuse --workdir's warehouse and the full-run time measured there (in --out): time one more "
        "night on other users, without a second full run.",
    )
    args = parser.parse_args()

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="momorec-refresh-bench-"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work / 'mlflow.db'}"
    from momorec.config import load_config
    from momorec.pipeline import run_pipeline
    from momorec.refresh import run_refresh
    from momorec.storage import delta
    from scripts.make_new_logs import new_events, write_csv

    cfg = load_config(args.config, [f"warehouse={work / 'warehouse'}", *args.overrides])
    nights = 1
    if args.next_night:
        previous = json.loads(Path(args.out).read_text())
        if previous["workdir"] != str(work):
            raise SystemExit(f"--next-night needs the workdir of {args.out}: {previous['workdir']}")
        full_s, full, nights = previous["full_run_s"], None, previous.get("nights", 1) + 1
    else:
        t = time.perf_counter()
        full = run_pipeline(cfg, show_progress=False)
        full_s = time.perf_counter() - t
    users = delta.read(cfg.table_path("user_ids"), columns=["user_id"]).num_rows
    changed = max(1, math.ceil(args.share * users))
    logs = write_csv(new_events(cfg, changed, events=2, seed=cfg.seed + nights), str(work / f"night{nights}.csv"))

    t = time.perf_counter()
    night = run_refresh(cfg, [logs], show_progress=False)
    refresh_s = time.perf_counter() - t
    t = time.perf_counter()
    again = run_refresh(cfg, [logs], show_progress=False)
    again_s = time.perf_counter() - t

    motivate = night.stages.get("motivate", {})
    figures = {
        "machine": f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}, no GPU",
        "config": os.path.relpath(args.config, REPO),
        "overrides": args.overrides,
        "users": users,
        "users_changed": changed,
        "new_events": 2 * changed,
        "full_run_s": round(full_s, 1),
        "refresh_s": round(refresh_s, 1),
        "refresh_over_full": round(refresh_s / full_s, 4),
        "target_refresh_over_full": 0.10,
        "meets_target": refresh_s <= 0.10 * full_s,
        "same_night_again_s": round(again_s, 1),
        "same_night_again_skipped": [n for n, r in again.stages.items() if r.get("skipped")],
        "refresh_users_motivated": motivate.get("users_processed"),
        "refresh_items_profiled": motivate.get("items_processed"),
        "promotion": night.stages.get("promote", {}).get("decision"),
        "nights": nights,
        "full_stages_s": stage_walls(full) if full is not None else previous["full_stages_s"],
        "refresh_stages_s": stage_walls(night),
        "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
        "workdir": str(work),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
