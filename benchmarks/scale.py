"""The platform's growth curve: every stage at S, M and L on synthetic data, and a nightly refresh at 1 %.

    .venv/bin/python benchmarks/scale.py --scales S M [--work /tmp/momorec-scale] [--set key=value ...]
    .venv/bin/python benchmarks/scale.py --scales tiny --out /tmp/scale-tiny.json   # what the CI test runs

Per scale, in its own work folder (warehouse + sqlite MLflow store):
1. scripts/synth_data.py writes the event log, the catalog and one night of new events for `--share` of the
   users (kept between invocations: a folder with a manifest is reused);
2. the full run, one process per stage (`momorec run --set pipeline.stages=[<stage>]`, as a cluster runs
   jobs/<stage>.py): ingest, quantize, train, evaluate (full ranking), recommend. The LLM stage is NOT run:
   `embeddings` stands in for it and writes seeded random vectors of the LLM's width (576, SmolLM2-135M's
   hidden size) for every item and user into item_profiles / user_motivations. Quantize fits and assigns
   those vectors (all items, all users). The LLM's own cost per user is measured on Beauty
   (benchmarks/results/beauty_generation.json) and reported beside, not added;
3. the refresh on night.parquet, one process per stage (`momorec refresh --set refresh.stages=[<stage>]`),
   `embeddings` writing vectors only for the night's users and new items (what motivate would redo).

Each process runs under a sampler of its process tree (psutil, every 0.2 s): `driver` is the peak RSS of the
stage's own process, `workers` the peak of the summed RSS of its descendants (Spark's JVM, Ray's raylet and
workers; shared object-store pages count once per process mapping them, so this overstates). Training is
capped at `train.max_steps_per_epoch` steps; its full-epoch time is extrapolated from the measured step time
and labelled so. Growth exponents: log(time ratio) / log(events ratio) between consecutive scales.
Writes benchmarks/results/scale.json (merged per scale, so scales can run in separate invocations) and
scale.png (time vs events per stage, log-log).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
RESULTS = REPO / "benchmarks" / "results" / "scale.json"
FULL_STAGES = ["ingest", "embeddings", "quantize", "train", "evaluate", "recommend"]
LLM_WIDTH = 576  # SmolLM2-135M's hidden size: what motivate's `kind: llm` embedder writes
EMBED_BATCH = 50_000
# Targets of issue 13.
MAX_EXPONENT = 1.1
MAX_REFRESH_SHARE = 0.05
MAX_DRIVER_RSS_GB = 4.0
FULL_RUN_SEEDS = 3  # configs/beauty.yaml


def config_text(scale: str, data: Path, warehouse: Path, steps: int) -> str:
    """The benchmark's config: the synthetic log and catalog, semantic IDs on, one seed, a capped epoch.
    Codebooks as Beauty's (3 x 256, PCA to 64); the tiny scale's 300 items get 3 x 16 (PCA to 16)."""
    codes, pca_dim = (16, 16) if scale == "tiny" else (256, 64)
    return f"""# benchmarks/scale.py, scale {scale}
dataset: synth-{scale}
warehouse: {warehouse}
seed: 2026
pipeline:
  stages: [ingest, quantize, train, evaluate, recommend]
ingest:
  sources:
    - path: {data / "events"}
      format: parquet
  catalog:
    path: {data / "items.jsonl"}
  kcore: 0
quantize:
  entities: [item, user]
  pca_dim: {pca_dim}
  levels: 3
  codes: {codes}
  iterations: 10
  unique_items: false
train:
  model:
    architecture: sasrec
    max_len: 50
    item_semantic: {{mode: frozen, on_missing: reserved}}
    user_semantic: {{mode: frozen, on_missing: reserved}}
    user_fusion: prefix
  epochs: 1
  patience: 1
  batch_size: 256
  eval_batch_size: 1024
  max_steps_per_epoch: {steps}
  seeds: [2026]
  launcher: local
  torch_threads: 2
  log_model: true
evaluate:
  protocols: [full]
recommend:
  top_k: 10
  batch_size: 1024
refresh:
  epochs: 1
"""


class TreeSampler:
    """Peak RSS of a process (driver) and of the sum of its descendants (workers), sampled every `every` s."""

    def __init__(self, pid: int, every: float = 0.2) -> None:
        import psutil

        self.root = psutil.Process(pid)
        self.every = every
        self.driver = self.workers = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                driver = self.root.memory_info().rss
                workers = 0
                for child in self.root.children(recursive=True):
                    try:
                        workers += child.memory_info().rss
                    except psutil.Error:
                        pass
                self.driver, self.workers = max(self.driver, driver), max(self.workers, workers)
            except psutil.Error:
                return
            self._stop.wait(self.every)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return {
            "driver_peak_rss_gb": round(self.driver / 2**30, 3),
            "workers_peak_rss_gb": round(self.workers / 2**30, 3),
        }


def measured(command: list[str], env: dict[str, str], log_path: Path) -> dict:
    """Run `command`, sampling its process tree; its --json result (last stdout line) and the figures."""
    start = time.perf_counter()
    with log_path.open("a") as log:
        log.write(f"\n$ {' '.join(command)}\n")
        log.flush()
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, env=env, text=True, cwd=REPO)
        sampler = TreeSampler(proc.pid)
        out, _ = proc.communicate()
        figures = sampler.stop()
        log.write(out)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed (rc {proc.returncode}); see {log_path}")
    lines = [line for line in out.splitlines() if line.startswith("{")]
    return {"wall_s": round(wall, 2), **figures, "result": json.loads(lines[-1]) if lines else {}}


def momorec(args: list[str]) -> list[str]:
    return [str(REPO / ".venv" / "bin" / "momorec"), *args]


def stage_command(stage: str, config: Path, overrides: list[str], night: Path | None) -> list[str]:
    sets = [x for o in overrides for x in ("--set", o)]
    if stage == "embeddings":
        mode = ["--night", str(night)] if night else []
        return [sys.executable, __file__, "embed", "--config", str(config), *mode, *sets]
    if night is None:
        return momorec(["run", "-c", str(config), "--set", f"pipeline.stages=[{stage}]", *sets, "--json"])
    return momorec(
        ["refresh", "-c", str(config), "-n", str(night), "--set", f"refresh.stages=[{stage}]", *sets, "--json"]
    )


def stage_result(measured_run: dict, stage: str) -> dict:
    """The stage's own result inside a pipeline result (or the embed step's own)."""
    result = measured_run.pop("result")
    return result.get("stages", {}).get(stage, result)


# ---- the LLM stand-in -------------------------------------------------------------------------------------


def embed(config: str, night: str | None, overrides: list[str]) -> dict:
    """Seeded random vectors of the LLM's width for every item and user (full run), or for the night's users
    and the items without a vector yet (refresh): rows ok, texts empty. Batch-bounded: EMBED_BATCH rows."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from momorec.config import load_config
    from momorec.storage import delta, schemas

    cfg = load_config(config, overrides)
    start = time.perf_counter()
    counts = {}
    for table, ids_table, id_column, raw_column, schema in (
        ("item_profiles", "item_ids", "item_id", "item", schemas.ITEM_PROFILES),
        ("user_motivations", "user_ids", "user_id", "user", schemas.USER_MOTIVATIONS),
    ):
        path = cfg.table_path(table)
        ids = delta.read(cfg.table_path(ids_table), columns=[raw_column, id_column])
        if night is None or not delta.exists(path):
            todo = ids.column(id_column).to_numpy()
        elif id_column == "user_id":  # the night's users: their recent history changed
            raw = pq.read_table(night, columns=["user"]).column("user").cast(pa.string())
            todo = ids.filter(pc.is_in(ids.column("user"), pc.unique(raw))).column("user_id").to_numpy()
        else:  # items that have no vector yet
            have = delta.read(path, columns=["item_id"]).column("item_id")
            todo = ids.filter(pc.invert(pc.is_in(ids.column("item_id"), have))).column("item_id").to_numpy()
        todo = np.sort(todo)

        def batches(todo=todo, schema=schema, id_column=id_column):
            for first in range(0, todo.size, EMBED_BATCH):
                part = todo[first : first + EMBED_BATCH]
                rng = np.random.default_rng([2026, int(part[0])])
                vectors = rng.standard_normal((part.size, LLM_WIDTH), dtype=np.float32)
                columns = {id_column: part, "status": ["ok"] * part.size}
                columns["embedding"] = pa.FixedSizeListArray.from_arrays(vectors.ravel(), LLM_WIDTH).cast(
                    pa.list_(pa.float32())
                )
                yield pa.table(columns).select([id_column, "status", "embedding"])

        def full(batches=batches, schema=schema):
            for batch in batches():
                n = batch.num_rows
                values = {name: batch.column(name) for name in batch.column_names}
                row = {f.name: values.get(f.name, pa.nulls(n, f.type)) for f in schema}
                for name in ("failure_reason", "prompt_version", "model", "content_hash"):
                    if name in row and name not in values:
                        row[name] = pa.array([f"synthetic-{LLM_WIDTH}" if name == "model" else ""] * n)
                yield from pa.table(row, schema=schema).to_batches()

        if night is None or not delta.exists(path):
            delta.write(path, lambda full=full, schema=schema: pa.RecordBatchReader.from_batches(schema, full()))
        elif todo.size:
            delta.upsert(path, pa.Table.from_batches(list(full()), schema=schema), [id_column])
        counts[table] = int(todo.size)
    return {"stage": "embeddings", "wall_time_s": round(time.perf_counter() - start, 2), "rows": counts}


# ---- one scale --------------------------------------------------------------------------------------------


def training_extrapolation(work: Path, train: dict) -> dict:
    """The capped epoch's measured figures and a full epoch extrapolated from them (labelled)."""
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{work / 'mlflow.db'}")
    run = mlflow.get_run(train["models"][0]["seed_run_id"]).data.metrics
    steps, step_time = run.get("train.steps", 0.0), run.get("train.epoch_time_s", 0.0)
    full_steps = math.ceil(run.get("train.rows", train["train_rows"]) / 256)  # the rows it trained on
    per_step = step_time / steps if steps else float("nan")
    return {
        "steps_run": int(steps),
        "steps_time_s": round(step_time, 2),
        "s_per_step": round(per_step, 4),
        "validation_s": round(run.get("valid.time_s", 0.0), 2),
        "full_epoch_steps": full_steps,
        "full_epoch_s_extrapolated": round(per_step * full_steps + run.get("valid.time_s", 0.0), 1),
    }


def measure_stage(stage: str, config: Path, overrides: list[str], night: Path | None, run_dir: Path) -> dict:
    """One stage's process of the run in `run_dir` (a refresh's with `night`), measured: wall time, peak RSS, and
    the figures of its result that the report uses."""
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{run_dir / 'mlflow.db'}")
    m = measured(stage_command(stage, config, overrides, night), env, run_dir / "stages.log")
    promote = m["result"].get("stages", {}).get("promote") if stage == "train" else None
    result = stage_result(m, stage)
    if promote is not None:  # a champion rescored for the promotion: part of the night, not of an epoch
        m["promote_s"] = round(promote.get("wall_time_s") or 0.0, 2)
    m["stage_wall_s"] = round(result.get("wall_time_s") or 0.0, 2)
    m["skipped"] = bool(result.get("skipped"))
    if stage == "ingest":
        m |= {k: result.get(k) for k in ("mode", "rebuild_reason", "rows_read", "interactions", "users")}
    if stage == "train" and not m["skipped"]:
        m["training"] = training_extrapolation(run_dir, result)
        m["users_selected"] = result.get("users_selected", {})
    if stage == "embeddings":
        m["rows"] = result["rows"]
    if stage == "recommend":
        m |= {k: result.get(k) for k in ("users", "rescored", "reason", "changed_by")}
    return m


def run_scale(
    scale: str,
    work: Path,
    share: float,
    steps: int,
    overrides: list[str],
    seed: int,
    phases: tuple[str, ...] = ("full", "refresh"),
    on_stage=lambda figures: None,
    previous: dict | None = None,
) -> dict:
    """Generate (or reuse) the scale's logs, run `phases` stage by stage; `on_stage(figures)` after every stage,
    so a stop keeps the stages that finished.

    With "full" among the phases the scale's run folder starts empty. Without it (`--phases refresh` after an
    earlier `--phases full`) the refresh runs on that full run's warehouse and MLflow store, and the figures
    continue `previous` (the full phase's, from the results file), so a long scale can span invocations."""
    import synth_data

    data = work / f"data-{scale}"
    if not (data / "manifest.json").exists():
        synth_data.generate(scale, data, seed=seed, users_per_part=200_000, night=share)
    manifest = json.loads((data / "manifest.json").read_text())
    run_dir = work / f"run-{scale}"
    config = run_dir / "config.yaml"
    figures: dict = {
        "scale": scale,
        "events": manifest["events"],
        "users": manifest["users"],
        "items": manifest["items"],
    }
    if "full" in phases:
        if run_dir.exists():
            import shutil

            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        config.write_text(config_text(scale, data, run_dir / "warehouse", steps))
    else:
        if not config.exists() or not _complete(previous or {}, "full"):
            raise SystemExit(f"scale {scale}: no finished full run in {run_dir} and in --out: run its full phase")
        kept = {k: v for k, v in previous.items() if k not in ("refresh", "refresh_vs_full")}
        figures = {**kept, **figures}
    nights = {"full": None, "refresh": data / "night.parquet"}
    for phase in phases:
        night = nights[phase]
        stages = figures.setdefault(phase, {})
        for stage in FULL_STAGES:
            print(f"[{scale}] {phase}: {stage} ...", flush=True)
            m = measure_stage(stage, config, overrides, night, run_dir)
            stages[stage] = m
            print(f"[{scale}] {phase}: {stage} {m['wall_s']} s, driver {m['driver_peak_rss_gb']} GB", flush=True)
            on_stage(figures)
        if phase == "full":
            figures["users_ingested"] = stages["ingest"]["users"]
    figures["night"] = manifest.get("night")
    return figures


SERVE_STAGES = ["ingest", "embeddings", "quantize", "recommend"]


def second_night(data: Path, share: float, seed: int) -> Path:
    """night2.parquet: another seeded share of the users buy 1-3 items each, drawn from the first night's purchases
    (the catalog's popularity as the generator drew it), dated the day after the first night."""
    import pyarrow.parquet as pq
    import synth_data

    out = data / "night2.parquet"
    if out.exists():
        return out
    manifest = json.loads((data / "manifest.json").read_text())
    first = pq.read_table(data / "night.parquet")
    first_items = np.char.lstrip(np.asarray(first.column("item").to_pylist(), dtype=str), "I").astype(np.int64)
    rng = np.random.default_rng(seed + 2)
    users = np.sort(rng.choice(manifest["users"], size=max(1, round(share * manifest["users"])), replace=False))
    owner = np.repeat(users, rng.integers(1, 4, size=users.size))
    items = rng.choice(first_items, size=owner.size)
    after = int(first.column("timestamp").to_numpy().max())
    timestamps = after + 1 + np.sort(rng.integers(0, 86_400, size=owner.size))
    table = synth_data._table({"user": owner, "item": items, "timestamp": timestamps})
    pq.write_table(table, out)
    return out


def _finished_run(scale: str, work: Path) -> tuple[Path, Path]:
    """(run folder, its config) of a scale whose full phase ran; SystemExit otherwise."""
    run_dir = work / f"run-{scale}"
    config = run_dir / "config.yaml"
    if not config.exists():
        raise SystemExit(f"scale {scale}: no run folder {run_dir}: run its full phase first")
    return run_dir, config


def run_serve(scale: str, work: Path, share: float, seed: int, overrides: list[str]) -> dict:
    """A night that keeps the champion (its refresh trains nothing, or its model is not promoted): recommend serves
    the same model, so it rescores only the users whose rows can differ (recommend.users: changed) and MERGEs them.

    On the scale's finished run: `baseline` writes every user's row with the current champion (recommend.users:
    all; the table then records what it served), then a second night (`second_night`) goes through ingest, the
    LLM stand-in, quantize (frozen codebooks) and recommend, each as the refresh runs it."""
    run_dir, config = _finished_run(scale, work)
    night = second_night(work / f"data-{scale}", share, seed)
    figures: dict = {"night": str(night)}
    print(f"[{scale}] serve: baseline recommend (every user) ...", flush=True)
    everyone = [*overrides, "recommend.users=all", "pipeline.skip_unchanged=false"]
    figures["baseline_recommend"] = measure_stage("recommend", config, everyone, None, run_dir)
    for stage in SERVE_STAGES:
        print(f"[{scale}] serve: {stage} ...", flush=True)
        m = measure_stage(stage, config, overrides, night, run_dir)
        figures[stage] = m
        print(f"[{scale}] serve: {stage} {m['wall_s']} s, driver {m['driver_peak_rss_gb']} GB", flush=True)
    figures["recommend_vs_baseline"] = round(
        figures["recommend"]["wall_s"] / figures["baseline_recommend"]["wall_s"], 4
    )
    return figures


def run_variant(scale: str, work: Path, stage: str, overrides: list[str]) -> dict:
    """One stage of the scale's last run again (its warehouse as the phases left it), with `overrides`, measured
    like the others: e.g. the training at L under `train.launcher=ray`, whose driver holds no user."""
    run_dir, config = _finished_run(scale, work)
    print(f"[{scale}] variant: {stage} with {overrides} ...", flush=True)
    m = measure_stage(stage, config, overrides, None, run_dir) | {"overrides": overrides}
    print(f"[{scale}] variant: {stage} {m['wall_s']} s, driver {m['driver_peak_rss_gb']} GB", flush=True)
    return m


def convergence() -> dict:
    """How the full run trains as the project configures it (configs/beauty.yaml: 3 seeds, early stopping with
    patience 10) and how many epochs that takes: the mean epochs_run of plain SASRec on Beauty
    (benchmarks/results/train_quality.json), and the refresh's default epochs (refresh.epochs)."""
    from momorec.config import RefreshConfig

    quality = json.loads((REPO / "benchmarks" / "results" / "train_quality.json").read_text())
    runs = [s["epochs_run"] for s in quality["variants"]["plain"]["seeds"].values()]
    return {
        "seeds": FULL_RUN_SEEDS,
        "epochs_per_seed": round(float(np.mean(runs)), 1),
        "epochs_source": "train_quality.json: plain SASRec on Beauty, epochs_run of seeds "
        + ", ".join(map(str, quality["variants"]["plain"]["seeds"])),
        "refresh_epochs": RefreshConfig().epochs,
    }


def _train_s(stage: dict, epochs: float) -> float:
    """A train process's wall time with `epochs` full epochs instead of the capped one it ran: its overhead
    (start, data, checkpoint, MLflow) plus epochs x (full-epoch steps x measured step time + validation)."""
    t = stage["training"]
    overhead = stage["wall_s"] - t["steps_time_s"] - t["validation_s"]
    return overhead + epochs * (t["full_epoch_steps"] * t["s_per_step"] + t["validation_s"])


def refresh_share(figures: dict) -> dict:
    """The refresh's cost over the full run's, every stage but the LLM stand-in (process wall times).

    measured: the processes as they ran (one capped epoch in both); as_configured: training as a real run does
    it (`convergence`), extrapolated from the measured step and validation times: the full run's seeds x epochs
    to convergence, the refresh's refresh.epochs warm-started epochs over all users. The target uses the latter."""
    counted = [s for s in FULL_STAGES if s != "embeddings"]
    conv = convergence()
    out: dict = {"stages": counted, "convergence": conv}
    for label, full_train, refresh_train in (
        ("measured", figures["full"]["train"]["wall_s"], figures["refresh"]["train"]["wall_s"]),
        (
            "as_configured",
            _train_s(figures["full"]["train"], conv["seeds"] * conv["epochs_per_seed"]),
            _train_s(figures["refresh"]["train"], conv["refresh_epochs"]),
        ),
    ):
        full = {s: figures["full"][s]["wall_s"] for s in counted} | {"train": full_train}
        refresh = {s: figures["refresh"][s]["wall_s"] for s in counted} | {"train": refresh_train}
        out[label] = {
            "full_s": round(sum(full.values()), 1),
            "refresh_s": round(sum(refresh.values()), 1),
            "share": round(sum(refresh.values()) / sum(full.values()), 4),
            "refresh_per_stage_s": {s: round(v, 1) for s, v in refresh.items()},
            "full_per_stage_s": {s: round(v, 1) for s, v in full.items()},
        }
    return out


def _complete(figures: dict, phase: str) -> bool:
    """Whether every stage of `phase` ran (a stopped or partial run leaves some out)."""
    return all(stage in figures.get(phase, {}) for stage in FULL_STAGES)


def _stage_s(figures: dict, stage: str) -> float:
    """A full-run stage's process wall time; training's with one full (extrapolated) epoch."""
    m = figures["full"][stage]
    return _train_s(m, 1) if stage == "train" else m["wall_s"]


def exponents(scales: dict[str, dict]) -> dict:
    """Per stage, log(time ratio) / log(events ratio) between consecutive scales whose full run finished."""
    order = sorted((f for f in scales.values() if _complete(f, "full")), key=lambda f: f["events"])
    out = {}
    for a, b in zip(order, order[1:], strict=False):
        size = math.log(b["events"] / a["events"])
        out[f"{a['scale']}->{b['scale']}"] = {
            s: round(math.log(_stage_s(b, s) / _stage_s(a, s)) / size, 3) for s in FULL_STAGES
        }
    return out


SCORING_STAGES = ("evaluate", "recommend")  # full ranking / top-K: every user against every item


def scoring_work_exponents(scales: dict[str, dict]) -> dict:
    """For the stages that score every user against every item: log(time ratio) / log((users x items) ratio).
    Their arithmetic is users x items x hidden, so when the catalog grows with the log (4x from M to L) their time
    grows faster than the events; 1.0 here means the stage costs what its matmuls cost, whatever the scale."""
    order = sorted((f for f in scales.values() if _complete(f, "full")), key=lambda f: f["events"])
    out = {}
    for a, b in zip(order, order[1:], strict=False):
        work = math.log(b["users"] * b["items"] / (a["users"] * a["items"]))
        out[f"{a['scale']}->{b['scale']}"] = {
            s: round(math.log(_stage_s(b, s) / _stage_s(a, s)) / work, 3) for s in SCORING_STAGES
        }
    return out


def draw(scales: dict[str, dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = sorted((f for f in scales.values() if _complete(f, "full")), key=lambda f: f["events"])
    fig, ax = plt.subplots(figsize=(7, 5))
    for stage in FULL_STAGES:
        label = "train (one epoch, extrapolated)" if stage == "train" else stage
        ax.plot([f["events"] for f in order], [_stage_s(f, stage) for f in order], "o-", label=label)
    refreshed = [f for f in order if "refresh_vs_full" in f]
    ax.plot(
        [f["events"] for f in refreshed],
        [f["refresh_vs_full"]["as_configured"]["refresh_s"] for f in refreshed],
        "k--",
        label="refresh at 1 % (all stages but the LLM; refresh.epochs)",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("events")
    ax.set_ylabel("wall time of the stage's process (s)")
    ax.set_title(f"MoMoREC stages vs scale ({platform.machine()}, {os.cpu_count()} cores)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png, dpi=120)


def verdict(scales: dict[str, dict], slopes: dict, work_slopes: dict | None = None) -> dict:
    """The issue's targets, each True or False. The exponents are against the events; full ranking's arithmetic is
    users x items, which grows 40x from M to L for 10x the events (its bare matmuls alone have exponent
    log 40 / log 10 = 1.6 there), so the scoring stages are checked against that work too, labelled."""
    checks = {}
    for pair, per_stage in slopes.items():
        for stage, slope in per_stage.items():
            if stage not in ("train", "embeddings"):
                checks[f"exponent {stage} {pair} <= {MAX_EXPONENT}"] = slope <= MAX_EXPONENT
    for pair, per_stage in (work_slopes or {}).items():
        for stage, slope in per_stage.items():
            checks[f"exponent {stage} {pair} per users x items <= {MAX_EXPONENT}"] = slope <= MAX_EXPONENT
    if "refresh_vs_full" in scales.get("M", {}):
        checks[f"refresh at M <= {MAX_REFRESH_SHARE:.0%} of full"] = (
            scales["M"]["refresh_vs_full"]["as_configured"]["share"] <= MAX_REFRESH_SHARE
        )
    if "L" in scales:
        ran = [s for phase in ("full", "refresh") for s in scales["L"].get(phase, {}).values()]
        peak = max(s["driver_peak_rss_gb"] for s in ran)
        label = "" if _complete(scales["L"], "full") else f" (stages run so far: {len(ran)})"
        checks[f"driver peak RSS at L <= {MAX_DRIVER_RSS_GB} GB{label}"] = peak <= MAX_DRIVER_RSS_GB
        ray_train = scales["L"].get("variants", {}).get("train_ray")
        if ray_train is not None:  # the cluster path: Ray Train workers hold the users, the driver none
            others = [m for phase in ("full", "refresh") for s, m in scales["L"].get(phase, {}).items() if s != "train"]
            peak = max(m["driver_peak_rss_gb"] for m in [*others, ray_train])
            checks[f"driver peak RSS at L <= {MAX_DRIVER_RSS_GB} GB with train.launcher=ray"] = (
                peak <= MAX_DRIVER_RSS_GB
            )
    return checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    e = sub.add_parser("embed", help="(internal) the LLM stand-in of one run")
    e.add_argument("--config", required=True)
    e.add_argument("--night", default=None)
    e.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--scales", nargs="+", default=["S", "M"])
    parser.add_argument("--work", default="/tmp/momorec-scale")
    parser.add_argument("--share", type=float, default=0.01, help="Share of users with new events in the night.")
    parser.add_argument("--steps", type=int, default=200, help="train.max_steps_per_epoch (extrapolated).")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--phases", nargs="+", default=["full", "refresh"], choices=["full", "refresh"])
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--out", default=str(RESULTS))
    sub.add_parser("report", help="recompute the shares, exponents, targets and the PNG of --out's scales")
    sv = sub.add_parser("serve", help="a second night that keeps the champion: recommend rescores the changed users")
    sv.add_argument("--scale", required=True)
    v = sub.add_parser("variant", help="one stage of a scale's finished run again, with --set overrides, kept apart")
    v.add_argument("--scale", required=True)
    v.add_argument("--stage", required=True, choices=[s for s in FULL_STAGES if s != "embeddings"])
    v.add_argument("--label", help="e.g. train_ray: where scale.json keeps it (scales.<S>.variants)")
    v.add_argument(
        "--replace",
        action="store_true",
        help="re-measure the full run's stage as configured (no --with) after a code change; the old figure is "
        "kept under scales.<S>.superseded",
    )
    v.add_argument(
        "--with", dest="variant_sets", action="append", default=[], help="an override, e.g. train.launcher=ray"
    )
    args = parser.parse_args()
    if args.command == "embed":
        print(json.dumps(embed(args.config, args.night, args.overrides)))
        return
    out = Path(args.out)
    if args.command == "report":
        report = json.loads(out.read_text())
        finish(report, out)
        return
    if args.command == "serve":
        report = json.loads(out.read_text())
        figures = run_serve(args.scale, Path(args.work), args.share, args.seed, args.overrides)
        report["scales"][args.scale]["serve"] = figures
        finish(report, out)
        return
    if args.command == "variant":
        if args.replace == bool(args.label) or (args.replace and args.variant_sets):
            raise SystemExit("variant: either --label (with any --with), or --replace (without --with)")
        report = json.loads(out.read_text())
        figures = run_variant(args.scale, Path(args.work), args.stage, args.variant_sets)
        scale = report["scales"][args.scale]
        if args.replace:
            scale.setdefault("superseded", {})[args.stage] = scale["full"][args.stage]
            figures["remeasured"] = (
                f"re-run alone at commit {_commit()} on the warehouse the refresh phase left (one night of new "
                "events more than the full run saw); the old figure is under superseded"
            )
            if figures.get("promote_s"):  # the refresh's champion rescored: the full run it replaces had none
                figures["process_wall_s"] = figures["wall_s"]
                figures["wall_s"] = round(figures["wall_s"] - figures["promote_s"], 2)
            scale["full"][args.stage] = figures
        else:
            scale.setdefault("variants", {})[args.label] = figures
        finish(report, out)
        return

    report = json.loads(out.read_text()) if out.exists() else {}
    report |= {
        "benchmark": "scale",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "llm_stage": "not run: seeded random vectors of width 576 (SmolLM2-135M) stand in for it; its measured "
        "cost is beauty_generation.json's 0.33 s per user (all Beauty users, this CPU)",
        "training": f"capped at {args.steps} steps per epoch; full epoch extrapolated from the step time",
        "rss": "driver: the stage process; workers: sum over its descendants (Spark JVM, Ray), sampled every 0.2 s",
    }
    scales = report.setdefault("scales", {})
    for scale in args.scales:

        def keep(figures, scale=scale):  # after every stage: a stop keeps what finished
            scales[scale] = figures
            finish(report, out)

        run_scale(
            scale,
            Path(args.work),
            args.share,
            args.steps,
            args.overrides,
            args.seed,
            tuple(args.phases),
            keep,
            previous=scales.get(scale),
        )


def _commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def finish(report: dict, out: Path) -> None:
    """Shares, exponents and targets from the scales' raw figures; write the JSON and the PNG, print them."""
    scales = report["scales"]
    for figures in scales.values():
        if _complete(figures, "full") and _complete(figures, "refresh"):
            figures["refresh_vs_full"] = refresh_share(figures)
    report["exponents"] = exponents(scales)
    report["exponents_per_scoring_work"] = scoring_work_exponents(scales)
    report["targets"] = verdict(scales, report["exponents"], report["exponents_per_scoring_work"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    draw(scales, out.with_suffix(".png"))
    print(json.dumps({k: report[k] for k in ("exponents", "exponents_per_scoring_work", "targets")}, indent=2))
    for name, figures in scales.items():
        shares = figures.get("refresh_vs_full", {})
        print(name, {k: v for k, v in shares.items() if k in ("measured", "as_configured")})


if __name__ == "__main__":
    main()
