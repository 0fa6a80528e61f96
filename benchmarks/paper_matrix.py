"""The paper's table: dataset x backbone x {plain, + item IDs, + item IDs + user motivation IDs}, 3 seeds each.

Three steps. `prepare` and `report` run on the CPU machine (Spark, Delta, vLLM, MLflow); `train` runs wherever
torch is, a GPU machine included (it needs torch, numpy, pydantic and pyyaml only: the data travel as .npz):

    .venv/bin/python benchmarks/paper_matrix.py prepare                  # -> .bench/paper/<dataset>/*.npz
    python3 benchmarks/paper_matrix.py train --out OUT --parallel 16     # every run side by side -> OUT
    .venv/bin/python benchmarks/paper_matrix.py report                   # -> benchmarks/results/paper_matrix.json

On this 2-core CPU (a session at a time, the runs folder then kept in benchmarks/results/paper_runs/<name>):

    .venv/bin/python benchmarks/paper_matrix.py train --datasets ml100k --only __sasrec__ __gru4rec__ \
        --parallel 2 --run-budget-min 30 --deadline-s 6000 --out benchmarks/results/paper_runs/<name>

prepare, per dataset, into its own warehouse: the ingest stage (the dataset's config in configs/), the item
texts (the catalog entry of every item, embedded by the config's embedder), the user motivations (Beauty and
MovieLens-100K: every user's, generated once by the motivate stage and kept in benchmarks/results/<...>_texts,
re-embedded by `momorec texts import`; Yelp: none, see MISSING), the quantize stage (the
config's settings; codebooks fit on training entities only), then .npz exports of the split and of the item
and user IDs. Its manifest.json records the ingest counts, the stage results and what each export holds.

train runs benchmarks/train_quality.py once per (dataset, backbone, variant, seed) in a pool of --parallel
processes, longest first, each with the dataset's config plus configs/overlays/<backbone>.yaml (SASRec: the
dataset config itself) and a time budget; runs still going at --deadline-s are stopped and reported as such.
It packs what $OUT can carry: runs.json (every run's record), ranks.npz (every run's per-user test ranks, full
ranking) and logs.tar.gz.

report merges the runs into cells (mean +- std over seeds), a paired t-test and Wilcoxon test of per-user test
NDCG@10 (mean over the shared seeds) against the same backbone's plain baseline and, for the motivation
variants, against item IDs alone; logs one MLflow run per cell (a child per seed) in the experiment
`paper-<dataset>`, so `momorec compare --experiment paper-beauty` shows the same table; puts each extra variant
(frozen IDs, the final-state fusion, other codes) beside the table's variant it is the alternative of on mean
validation NDCG@10 (`validation_choices`: what those settings are chosen on); and prints the README's table and
those choices. Protocol: leave-one-out, the test item ranked against every item, the user's history excluded
(headline); sampled-100 figures are kept as a labelled extra.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BENCH = REPO / ".bench" / "paper"
RESULTS = REPO / "benchmarks" / "results" / "paper_matrix.json"
PREPARE_RESULTS = REPO / "benchmarks" / "results" / "paper_prepare.json"
# the runs folders of every train call whose figures the table holds (runs.json, ranks.npz; a few MB each), kept
# so that calls on several machines and sessions (the matrix takes days on a 2-core CPU) add up to one table
RUNS = REPO / "benchmarks" / "results" / "paper_runs"
SEEDS = (2026, 2027, 2028)
BACKBONES = ("sasrec", "gru4rec", "bert4rec")
# The matrix's variants (benchmarks/train_quality.VARIANTS); trainable level tables beat frozen centroids for
# items on Beauty (benchmarks/results/train_quality_llm_cpu.json), so they are the table's columns.
VARIANTS = ("plain", "item_trainable", "item_user_trainable")
EXTRA_VARIANTS = {"sasrec": ("item_frozen", "item_user_frozen")}  # frozen, where it was measured to matter
EXTRA_DATASETS = ("beauty",)
# how the user's motivation IDs enter (a leading token, the table's, or added to the final state), chosen on
# validation with SASRec on every dataset that has them
FUSION_VARIANT = "item_user_trainable_final"
MISSING = {
    "yelp": {
        "item_user_trainable": "no Yelp user motivations: all 30,431 users take ~2.8 h of the LLM stage on this "
        "2-core CPU (0.33 s a user) and no device run of the LLM stage has been made"
    }
}


@dataclass(frozen=True)
class Dataset:
    name: str
    config: str
    users: str  # "motivate": every user through the LLM stage (or its texts imported, see `texts`); "none"
    budget_min: float  # time budget of one training run on the device
    texts: str  # exported texts (benchmarks/results/<dataset>_texts): imported when there, written after motivate
    # other quantize settings, each exported as item@<label>.npz / user@<label>.npz and trained with SASRec's
    # ID variants: the table's codes are the config's, these say on validation whether other settings would win
    alt_codes: tuple[tuple[str, tuple[str, ...]], ...] = ()


DATASETS = {
    "beauty": Dataset(
        "beauty",
        "configs/beauty.yaml",
        "motivate",
        4.0,
        "benchmarks/results/beauty_texts/catalog_items",
        # whitened PCA-128 doubled the item-ID lift of SmolLM2 embeddings, on validation too (README)
        (("whiten128", ("quantize.pca_dim=128", "quantize.pca_whiten=true")),),
    ),
    "ml100k": Dataset("ml100k", "configs/ml100k.yaml", "motivate", 2.0, "benchmarks/results/ml100k_texts"),
    "yelp": Dataset("yelp", "configs/yelp.yaml", "none", 4.0, ""),
}


# ---- prepare (CPU machine) ---------------------------------------------------------------------------------


def prepare(dataset: Dataset, bench: Path) -> dict:
    from benchmarks.llm_engines import momorec as cli

    work = bench / dataset.name
    work.mkdir(parents=True, exist_ok=True)
    sets = [f"warehouse={work / 'warehouse'}", f"tracking.tracking_uri=sqlite:///{work / 'mlflow.db'}"]
    if dataset.users == "none":
        # the stage motivates users too; one seeded user is the cheapest way to get every item's text embedded
        sets += ["motivate.execution.sample_users=1", "quantize.entities=[item]"]
    config = REPO / dataset.config
    manifest_path = work / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"dataset": dataset.name}
    manifest.update({"config": dataset.config, "overrides": sets[2:], "machine": _machine()})
    steps = [("ingest", ["ingest"])]
    texts = REPO / dataset.texts if dataset.texts else None
    if texts is not None and (texts / "manifest.json").exists():
        steps.append(("texts", ["texts", "import", str(texts)]))  # the generation's texts, embedded again
    else:
        steps.append(("motivate", ["motivate"]))
        if texts is not None:  # so the next prepare (another machine) imports them instead of generating
            steps.append(("texts_export", ["texts", "export", str(texts)]))
    steps += [("inspect", ["inspect"]), ("quantize", ["quantize"])]
    for name, args in steps:
        if name in manifest or (name == "texts" and "motivate" in manifest):
            continue
        start = time.perf_counter()
        print(f"{dataset.name}: {name} ...", flush=True)
        manifest[name] = {"result": cli(args, work, sets, config=config, timeout=3 * 3600)}
        manifest[name]["wall_s"] = round(time.perf_counter() - start, 1)
        manifest_path.write_text(json.dumps(manifest, indent=2, default=str))
    manifest["exports"] = export_npz(config, sets, work, "")
    manifest_path.write_text(json.dumps(manifest, indent=2, default=str))
    for label, alt in dataset.alt_codes:
        # quantize again with the other settings (a new codebook version) and export those codes too
        start = time.perf_counter()
        result = cli(["quantize"], work, [*sets, *alt], config=config, timeout=3600)
        manifest[f"quantize@{label}"] = {"result": result, "overrides": list(alt)}
        manifest[f"quantize@{label}"]["wall_s"] = round(time.perf_counter() - start, 1)
        manifest[f"exports@{label}"] = export_npz(config, [*sets, *alt], work, f"@{label}")
        manifest_path.write_text(json.dumps(manifest, indent=2, default=str))
    return manifest


def export_npz(config: Path, sets: list[str], work: Path, label: str) -> dict:
    """The split, and the item and user IDs (with their codebooks, for the frozen variants) as .npz."""
    from momorec.config import load_config
    from momorec.core.sequences import load_sequences
    from momorec.train.runner import portable_semantic_inputs

    cfg = load_config(config, sets)
    data = load_sequences(cfg.table_path("sequences"), cfg.table_path("item_ids"))
    written = {}
    if not label:
        data.save_npz(str(work / "data.npz"))
        written["data"] = {"path": "data.npz", "users": int(data.num_users), "items": int(data.num_items)}
    for entity in [e for e in ("item", "user") if e in cfg.quantize.entities]:
        inputs, facts = portable_semantic_inputs(cfg, entity)
        inputs.save_npz(str(work / f"{entity}{label}.npz"))
        coded = int(inputs.codes.numpy().any(axis=1).sum())
        written[entity] = {"path": f"{entity}{label}.npz", "with_codes": coded, **facts}
    return written


# ---- train (any machine with torch) ------------------------------------------------------------------------

START_AND_TEST_S = 60.0  # a run's imports, data loading and final test scoring (both protocols), with room


@dataclass(frozen=True)
class Run:
    dataset: Dataset
    backbone: str
    variant: str
    seed: int
    codes: str = ""  # "" = the config's quantize settings, else a Dataset.alt_codes label

    @property
    def cell(self) -> str:
        return self.variant + (f"@{self.codes}" if self.codes else "")

    @property
    def key(self) -> str:
        return f"{self.dataset.name}__{self.backbone}__{self.cell}__{self.seed}"

    def command(
        self, bench: Path, scratch: Path, device: str, budget_min: float | None = None, run_budget_min: float = 0
    ) -> list[str]:
        """run_budget_min: one run's training time (0: the dataset's device budget); budget_min: the time left."""
        folder = bench / self.dataset.name
        sets = [f"train.use_gpu={'true' if device == 'cuda' else 'false'}", "train.log_model=false"]
        from momorec.platform.overlay import overlay_sets

        if self.backbone != "sasrec":
            sets += overlay_sets(REPO / "configs" / "overlays" / f"{self.backbone}.yaml")
        tuned = REPO / "configs" / "overlays" / f"{self.dataset.name}-{self.backbone}.yaml"
        if tuned.exists():  # the backbone's settings tuned on this dataset's validation split (its comments say how)
            sets += overlay_sets(tuned)
        budget = run_budget_min or self.dataset.budget_min
        budget = budget if budget_min is None else min(budget_min, budget)
        sets.append(f"train.time_budget_min={budget:.2f}")
        command = [
            sys.executable,
            str(REPO / "benchmarks" / "train_quality.py"),
            "--config",
            str(REPO / self.dataset.config),
            "--warehouse",
            str(scratch / "warehouse"),
            "--data-npz",
            str(folder / "data.npz"),
            "--variants",
            self.variant,
            "--seeds",
            str(self.seed),
            "--results",
            str(scratch / "parts" / f"{self.key}.json"),
            "--threads",
            "1",
        ]
        suffix = f"@{self.codes}" if self.codes else ""
        if (folder / f"item{suffix}.npz").exists():
            command += ["--semantic-npz", str(folder / f"item{suffix}.npz")]
        if (folder / f"user{suffix}.npz").exists():
            command += ["--user-semantic-npz", str(folder / f"user{suffix}.npz")]
        if self.codes:
            command += ["--label", self.codes]
        return command + ["--set", *sets]


def planned_runs(bench: Path, datasets: list[str], seeds: list[int]) -> list[Run]:
    runs = []
    for name in datasets:
        folder = bench / name
        if not (folder / "data.npz").exists():
            continue
        for backbone in BACKBONES:
            for variant in VARIANTS + (EXTRA_VARIANTS.get(backbone, ()) if name in EXTRA_DATASETS else ()):
                if "item" in variant and not (folder / "item.npz").exists():
                    continue
                if "user" in variant and not (folder / "user.npz").exists():
                    continue
                runs += [Run(DATASETS[name], backbone, variant, seed) for seed in seeds]
        if (folder / "item.npz").exists() and (folder / "user.npz").exists():
            runs += [Run(DATASETS[name], "sasrec", FUSION_VARIANT, seed) for seed in seeds]
        for label, _ in DATASETS[name].alt_codes:
            for variant in ("item_trainable", "item_user_trainable"):
                needed = [f"item@{label}.npz"] + ([f"user@{label}.npz"] if "user" in variant else [])
                if all((folder / f).exists() for f in needed):
                    runs += [Run(DATASETS[name], "sasrec", variant, seed, label) for seed in seeds]
    # the small dataset first (its runs end in about a minute), then the large ones longest first (BERT4Rec
    # trains longest), the extras last: a late run is cut short by time, so the order decides what is cut
    return sorted(
        runs,
        key=lambda r: (
            r.variant in EXTRA_VARIANTS.get(r.backbone, ()) or r.variant == FUSION_VARIANT or bool(r.codes),
            r.dataset.budget_min > 2.0,
            r.backbone != "bert4rec",
        ),
    )


def train(args: argparse.Namespace) -> None:
    import torch

    bench, out = Path(args.bench), Path(args.out)
    scratch = Path(args.scratch)
    (scratch / "parts").mkdir(parents=True, exist_ok=True)
    (scratch / "logs").mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    runs = planned_runs(bench, args.datasets, args.seeds)
    if args.only:
        runs = [r for r in runs if any(part in r.key for part in args.only)]
    if args.limit:
        runs = runs[: args.limit]
    start = time.monotonic()
    deadline = start + args.deadline_s
    status: dict[str, dict] = {}
    if args.resume:
        # runs whose results an earlier call left in the scratch folder are packed again, not trained again
        for run in runs:
            if _finished_part(scratch, run):
                status[run.key] = {"status": "done", "resumed": True}
    packing = threading.Lock()

    def one(run: Run) -> None:
        if run.key in status:
            return
        left = deadline - time.monotonic()
        # a run that starts late trains for what is left (its test scoring and start-up inside the margin), so
        # it ends with test figures, flagged stopped_by_time, rather than being killed at the deadline
        train_min = (left - START_AND_TEST_S) / 60
        if train_min < 0.5:
            status[run.key] = {"status": "not started: deadline"}
            return
        command = run.command(bench, scratch, device, train_min, args.run_budget_min) + args.overrides
        begun = time.monotonic()
        with open(scratch / "logs" / f"{run.key}.log", "w") as log:
            try:
                done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, timeout=left, cwd=REPO)
                status[run.key] = {"status": "done" if done.returncode == 0 else f"failed: rc {done.returncode}"}
            except subprocess.TimeoutExpired:
                status[run.key] = {"status": "stopped: deadline"}
        status[run.key]["wall_s"] = round(time.monotonic() - begun, 1)
        print(f"{run.key}: {status[run.key]}", flush=True)
        with packing:  # after every run, so a stopped matrix (a session's end, a device's limit) loses one run
            pack(runs, status, scratch, out, device, time.monotonic() - start, args, quiet=True)

    print(f"{len(runs)} runs on {device}, {args.parallel} at a time", flush=True)
    with ThreadPoolExecutor(args.parallel) as pool:
        list(pool.map(one, runs))
    pack(runs, status, scratch, out, device, time.monotonic() - start, args)


def _finished_part(scratch: Path, run: Run) -> bool:
    part = scratch / "parts" / f"{run.key}.json"
    if not part.exists():
        return False
    entry = next(iter(json.loads(part.read_text())["variants"].values()))
    return str(run.seed) in entry.get("seeds", {})


def pack(
    runs: list[Run], status: dict, scratch: Path, out: Path, device: str, wall: float, args, quiet: bool = False
) -> None:
    """Everything into three files (a device call carries back at most 8): runs.json, ranks.npz, logs.tar.gz."""
    import torch

    gpu = torch.cuda.get_device_name(0) if device == "cuda" else None
    machine = gpu or f"cpu: {platform.processor() or platform.machine()} ({os.cpu_count()} cores)"
    records, ranks = [], {}
    for run in runs:
        record = {
            "dataset": run.dataset.name,
            "backbone": run.backbone,
            "variant": run.cell,
            "seed": run.seed,
            "device": machine,
            **status.get(run.key, {"status": "not run"}),
        }
        part = scratch / "parts" / f"{run.key}.json"
        if part.exists():
            written = json.loads(part.read_text())
            entry = next(iter(written["variants"].values()))
            record["common_overrides"] = written.get("common_overrides", [])
            record.update(
                {
                    k: entry[k]
                    for k in ("overrides", "device", "architecture", "semantic_ids", "motivated_users")
                    if k in entry
                }
            )
            per_seed = entry.get("seeds", {}).get(str(run.seed))
            if per_seed:
                record["metrics"] = {k: v for k, v in per_seed.items() if k != "checkpoint"}
                users_ranks = np.load(Path(per_seed["checkpoint"]) / "test_full_ranks.npy")
                ranks[run.key] = users_ranks.astype(np.int64)
                if "motivated_users_file" in entry:
                    ranks[f"{run.key}__motivated"] = np.load(entry["motivated_users_file"])
        records.append(record)
    (out / "runs.json").write_text(
        json.dumps(
            {
                "device": machine,
                "cpu_flags": _machine()["cpu_flags"],
                "torch": torch.__version__,
                "parallel": args.parallel,
                "wall_s": round(wall, 1),
                "extra_overrides": args.overrides,
                "runs": records,
            },
            indent=2,
        )
    )
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **ranks)
    (out / "ranks.npz").write_bytes(buffer.getvalue())
    with tarfile.open(out / "logs.tar.gz", "w:gz") as tar:
        tar.add(scratch / "logs", arcname="logs")
    done = sum(r["status"] == "done" for r in records)
    if not quiet:
        print(f"packed {done}/{len(records)} finished runs into {out} ({wall:.0f} s)", flush=True)


# ---- report (CPU machine) ----------------------------------------------------------------------------------


def cell_key(dataset: str, backbone: str, variant: str) -> str:
    return f"{dataset}/{backbone}/{variant}"


def report(args: argparse.Namespace) -> dict:
    from momorec.core.metrics import ndcg_at_k
    from momorec.core.significance import mean_std, paired_test

    records, ranks, folders = merge_runs([Path(folder) for folder in args.runs])
    cells: dict[str, dict] = {}
    for record in records:
        key = cell_key(record["dataset"], record["backbone"], record["variant"])
        cell = cells.setdefault(
            key,
            {
                "dataset": record["dataset"],
                "backbone": record["backbone"],
                "variant": record["variant"],
                "seeds": {},
                "not_done": {},
            },
        )
        for field in ("overrides", "common_overrides", "semantic_ids", "motivated_users"):
            if field in record:
                cell[field] = record[field]
        if "metrics" in record:
            cell["seeds"][str(record["seed"])] = record["metrics"]
            cell.setdefault("devices", {})[str(record["seed"])] = record["device"]
        else:
            cell["not_done"][str(record["seed"])] = record["status"]

    def per_user(cell: dict, seeds: list[str]) -> tuple[np.ndarray, np.ndarray]:
        stack = [ranks[f"{cell['dataset']}__{cell['backbone']}__{cell['variant']}__{s}"] for s in seeds]
        return stack[0][0], np.mean([ndcg_at_k(r[1], 10) for r in stack], axis=0)

    def compare(cell: dict, other: dict | None) -> dict | None:
        if other is None:
            return None
        seeds = sorted(set(cell["seeds"]) & set(other["seeds"]))
        if not seeds:
            return None
        users_a, a = per_user(other, seeds)
        users_b, b = per_user(cell, seeds)
        if not np.array_equal(users_a, users_b):
            raise ValueError(f"{cell['variant']} and {other['variant']} ranked different users")
        return {"seeds": [int(s) for s in seeds], **paired_test(a, b)}

    for cell in cells.values():
        if cell["seeds"]:
            cell["summary"] = mean_std(
                [{k: float(v) for k, v in m.items() if isinstance(v, int | float)} for m in cell["seeds"].values()]
            )
        base = cell_key(cell["dataset"], cell["backbone"], "plain")
        if cell["variant"] != "plain":
            cell["vs_plain_ndcg10"] = compare(cell, cells.get(base))
        if "user" in cell["variant"]:
            variant, _, codes = cell["variant"].partition("@")
            item_variant = variant.replace("item_user", "item").removesuffix("_final") + (f"@{codes}" if codes else "")
            item_only = cell_key(cell["dataset"], cell["backbone"], item_variant)
            cell["vs_item_ids_ndcg10"] = compare(cell, cells.get(item_only))
    prepared = json.loads(PREPARE_RESULTS.read_text()) if PREPARE_RESULTS.exists() else {}
    choices = validation_choices(cells)
    result = {
        "protocol": "leave-one-out; test.full = the test item ranked against every item, the user's history "
        "excluded (headline); test.sampled100 = against 100 uniform unseen negatives (labelled, optimistic); "
        "early stopping on valid.full.ndcg_10; paired tests on per-user test NDCG@10, mean over the shared seeds",
        "seeds": list(SEEDS),
        "device": sorted({record["device"] for record in records if "metrics" in record}),
        "runs_folders": folders,
        # a dataset not prepared on this machine keeps the facts its prepare wrote where it ran
        "prepare": {name: _prepare_facts(Path(args.bench) / name) or prepared.get(name) for name in DATASETS},
        "missing": MISSING,
        "validation_choices": choices,
        "cells": cells,
    }
    target = Path(args.results)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=2, sort_keys=True, default=str))
    if not args.no_mlflow:
        from momorec.config import TrackingConfig
        from momorec.tracking import tracking_uri

        log_mlflow(result, args.tracking_uri or tracking_uri(TrackingConfig()))
    print(markdown_table(result))
    for choice in choices:
        print(choice_line(choice))
    return result


def _alternative_to(variant: str) -> tuple[str, str] | None:
    """(the question, the table's variant) an extra variant is the alternative of; None for a table column."""
    base, _, codes = variant.partition("@")
    if codes:
        return "item codes", base
    if variant == FUSION_VARIANT:
        return "how user IDs enter", FUSION_VARIANT.removesuffix("_final")
    if variant.endswith("_frozen"):
        return "frozen or trainable IDs", variant.removesuffix("_frozen") + "_trainable"
    return None


def validation_choices(cells: dict[str, dict]) -> list[dict]:
    """Each extra variant against the table's variant it is the alternative of, on mean validation NDCG@10 (full
    ranking) over the seeds both ran: what the settings are chosen on (never on test figures)."""
    choices = []
    for key in sorted(cells, key=_table_order):
        cell = cells[key]
        alternative = _alternative_to(cell["variant"])
        if alternative is None:
            continue
        question, table_variant = alternative
        table = cells.get(cell_key(cell["dataset"], cell["backbone"], table_variant))
        if table is None:
            continue
        seeds = sorted(set(cell["seeds"]) & set(table["seeds"]))
        if not seeds:
            continue
        valid = {
            c["variant"]: float(np.mean([c["seeds"][s]["valid.full.ndcg_10"] for s in seeds])) for c in (table, cell)
        }
        choices.append(
            {
                "dataset": cell["dataset"],
                "backbone": cell["backbone"],
                "question": question,
                "seeds": [int(s) for s in seeds],
                "valid.full.ndcg_10": valid,
                "chosen": max(valid, key=valid.get),
            }
        )
    return choices


def choice_line(choice: dict) -> str:
    valid = ", ".join(f"{variant} {value:.4f}" for variant, value in choice["valid.full.ndcg_10"].items())
    seeds = choice["seeds"]
    span = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}-{seeds[-1]}"
    return (
        f"- {choice['dataset']} {choice['backbone']}, {choice['question']}: valid NDCG@10 {valid} ({span}): "
        f"{choice['chosen']}"
    )


def merge_runs(folders: list[Path]) -> tuple[list[dict], dict[str, np.ndarray], list[dict]]:
    """The runs of several `train` calls (one a device call, others sessions on a CPU), one record per run key:
    a finished run wins over an unfinished one, and a later folder's finished run over an earlier one's."""
    by_key: dict[str, dict] = {}
    ranks: dict[str, np.ndarray] = {}
    facts = []
    for folder in folders:
        packed = json.loads((folder / "runs.json").read_text())
        with np.load(folder / "ranks.npz") as npz:
            folder_ranks = {k: npz[k] for k in npz.files}
        facts.append(
            {
                "folder": str(folder.relative_to(REPO) if folder.resolve().is_relative_to(REPO) else folder),
                **{k: packed.get(k) for k in ("device", "cpu_flags", "torch", "parallel", "wall_s")},
            }
        )
        for record in packed["runs"]:
            record.setdefault("device", packed["device"])
            key = f"{record['dataset']}__{record['backbone']}__{record['variant']}__{record['seed']}"
            if "metrics" not in record and "metrics" in by_key.get(key, {}):
                continue
            by_key[key] = record
            for name in (key, f"{key}__motivated"):
                if name in folder_ranks:
                    ranks[name] = folder_ranks[name]
    return list(by_key.values()), ranks, facts


def _prepare_facts(folder: Path) -> dict | None:
    path = folder / "manifest.json"
    if not path.exists():
        return None
    manifest = json.loads(path.read_text())
    ingest = manifest.get("ingest", {}).get("result", {})
    motivate = manifest.get("motivate", manifest.get("texts", {})).get("result", {})
    inspect = manifest.get("inspect", {}).get("result", {})
    return {
        "config": manifest.get("config"),
        "overrides": manifest.get("overrides"),
        "machine": manifest.get("machine"),
        "ingest_counts": {k: ingest.get(k) for k in ("rows_read", "rows_rejected", "users", "items", "interactions")},
        "texts": {k: v for k, v in motivate.items() if k.startswith(("users_", "items_", "counts", "embedder"))},
        # training-free quality of the motivations (validation item, full ranking): `momorec inspect`
        "inspect": {k: inspect.get(k) for k in ("retrieval", "grounding", "specificity", "retrieval_users")},
        "exports": {k: v for k, v in manifest.items() if k.startswith("exports")},
        "wall_s": {k: v.get("wall_s") for k, v in manifest.items() if isinstance(v, dict) and "wall_s" in v},
    }


def log_mlflow(result: dict, tracking_uri: str) -> None:
    """One run per cell in experiment paper-<dataset> (metrics as <name>.mean/.std, paired p-values), a child
    run per seed tagged momorec.seed: the layout `momorec compare` folds back into one row per cell."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    for key, cell in sorted(result["cells"].items()):
        if not cell.get("seeds"):
            continue
        mlflow.set_experiment(f"paper-{cell['dataset']}")
        variant, _, codes = cell["variant"].partition("@")
        params = {
            "dataset": cell["dataset"],
            "train.model.architecture": cell["backbone"],
            **_model_settings(variant),
            "variant": cell["variant"],
            "codes": codes or "config",
            "train.seeds": json.dumps(sorted(int(s) for s in cell["seeds"])),
            "protocol": result["protocol"][:500],
            "device": json.dumps(sorted(set(cell.get("devices", {}).values())))[:500],
            "overrides": json.dumps(cell.get("overrides", []))[:500],
        }
        with mlflow.start_run(run_name=key, tags={"momorec.stage": "paper_matrix"}) as parent:
            mlflow.log_params(params)
            for name, stats in cell.get("summary", {}).items():
                if name.startswith(("test.", "valid.")):
                    mlflow.log_metrics({f"{name}.mean": stats["mean"], f"{name}.std": stats["std"]})
            for against, name in (("vs_plain_ndcg10", "vs_plain"), ("vs_item_ids_ndcg10", "vs_item_ids")):
                if cell.get(against):  # "p_value" in the name: `momorec compare` ranks it lower-is-better
                    mlflow.log_metric(f"paired.{name}.ndcg_10_p_value", cell[against]["t_pvalue"])
            for seed, metrics in cell["seeds"].items():
                tags = {"momorec.seed": seed, "mlflow.parentRunId": parent.info.run_id}
                with mlflow.start_run(run_name=f"{key}/seed_{seed}", nested=True, tags=tags):
                    mlflow.log_params({**params, "seed": seed})
                    mlflow.log_metrics(
                        {
                            k: float(v)
                            for k, v in metrics.items()
                            if isinstance(v, int | float) and k.startswith(("test.", "valid."))
                        }
                    )


def _model_settings(variant: str) -> dict[str, str]:
    """The semantic inputs a variant trains with, read from its overrides (benchmarks/train_quality.VARIANTS)."""
    from benchmarks.train_quality import VARIANTS as TRAINED

    sets = dict(override.split("=", 1) for override in TRAINED[variant])
    user = sets.get("train.model.user_semantic.mode", "none")
    return {
        "train.model.item_semantic.mode": sets.get("train.model.item_semantic.mode", "none"),
        "train.model.user_semantic.mode": user,
        "train.model.user_fusion": sets.get("train.model.user_fusion", "prefix") if user != "none" else "none",
    }


def markdown_table(result: dict) -> str:
    lines = [
        "| dataset | backbone | variant | test NDCG@10 (full) | HR@10 | valid NDCG@10 | seeds | epochs (cut by time) "
        "| p vs plain | p vs item IDs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in sorted(result["cells"], key=_table_order):
        cell = result["cells"][key]
        s = cell.get("summary", {})
        if "test.full.ndcg_10" not in s:
            lines.append(
                f"| {cell['dataset']} | {cell['backbone']} | {cell['variant']} | not done: "
                f"{sorted(set(cell['not_done'].values()))} | | | | | | |"
            )
            continue
        ndcg, hr = s["test.full.ndcg_10"], s["test.full.hr_10"]
        valid = f"{s['valid.full.ndcg_10']['mean']:.4f}" if "valid.full.ndcg_10" in s else ""
        spread = f" ± {ndcg['std']:.4f}" if len(cell["seeds"]) > 1 else ""  # one seed has no spread to show
        epochs = f"{s['epochs_run']['mean']:.0f}" if "epochs_run" in s else ""
        cut = sum(bool(m.get("stopped_by_time")) for m in cell["seeds"].values())

        def p(field: str, cell: dict = cell) -> str:
            test = cell.get(field)
            return f"{test['t_pvalue']:.2g} ({test['mean_diff']:+.4f})" if test else ""

        lines.append(
            f"| {cell['dataset']} | {cell['backbone']} | {cell['variant']} | {ndcg['mean']:.4f}{spread} | "
            f"{hr['mean']:.4f} | {valid} | {len(cell['seeds'])} | {epochs} ({cut}) | "
            f"{p('vs_plain_ndcg10')} | {p('vs_item_ids_ndcg10')} |"
        )
    return "\n".join(lines)


def _table_order(key: str) -> tuple:
    dataset, backbone, cell = key.split("/")
    variant, _, codes = cell.partition("@")
    order = list(VARIANTS) + [v for vs in EXTRA_VARIANTS.values() for v in vs] + [FUSION_VARIANT]
    return (list(DATASETS).index(dataset), BACKBONES.index(backbone), codes, order.index(variant))


def _machine() -> dict:
    from benchmarks.llm_engines import machine

    return machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    steps = parser.add_subparsers(dest="step", required=True)
    p = steps.add_parser("prepare", help="ingest, texts, quantize and .npz exports (CPU machine)")
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--bench", default=str(BENCH))
    p.add_argument("--results", default=str(PREPARE_RESULTS), help="what prepare measured, per dataset (JSON)")
    t = steps.add_parser("train", help="every run side by side (a GPU machine, or here)")
    t.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    t.add_argument("--bench", default=str(BENCH))
    t.add_argument("--out", default=os.environ.get("OUT", "/tmp/paper_matrix_out"))
    t.add_argument("--scratch", default="/tmp/paper_matrix_scratch")
    t.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    t.add_argument("--parallel", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    t.add_argument("--deadline-s", type=float, default=480.0, help="stop every run still going after this")
    t.add_argument(
        "--run-budget-min",
        type=float,
        default=0.0,
        help="one run's training time in minutes (default: the dataset's device budget; a CPU needs more)",
    )
    t.add_argument("--resume", action="store_true", help="keep the runs already finished in --scratch")
    t.add_argument(
        "--only", nargs="+", help="only runs whose key (dataset__backbone__variant__seed) holds one of these"
    )
    t.add_argument("--limit", type=int, help="only the first N runs of the plan (a smoke test)")
    t.add_argument("--set", dest="overrides", nargs="*", default=[], help="config overrides for every run")
    r = steps.add_parser("report", help="cells, paired tests, MLflow runs, the README table (CPU machine)")
    r.add_argument(
        "--runs",
        nargs="+",
        default=sorted(str(f) for f in RUNS.glob("*") if (f / "runs.json").exists()),
        help="the folders train wrote (runs.json, ranks.npz); later ones win (default: every one in "
        "benchmarks/results/paper_runs, in name order)",
    )
    r.add_argument("--bench", default=str(BENCH))
    r.add_argument("--results", default=str(RESULTS))
    r.add_argument(
        "--tracking-uri", help="MLflow store (default: `momorec compare`'s: $MLFLOW_TRACKING_URI, else ./mlflow.db)"
    )
    r.add_argument("--no-mlflow", action="store_true", help="write the results file only")
    args = parser.parse_args()
    if args.step == "prepare":
        target = Path(args.results)
        summary = json.loads(target.read_text()) if target.exists() else {}
        for name in args.datasets:
            prepare(DATASETS[name], Path(args.bench))
            summary[name] = _prepare_facts(Path(args.bench) / name)
            target.write_text(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")
        print(json.dumps(summary, indent=2, default=str))
    elif args.step == "train":
        train(args)
    else:
        report(args)


if __name__ == "__main__":
    main()
