"""Quality on full Amazon Beauty: leave-one-out, full ranking (headline) and sampled-100 (labelled).

Plain SASRec with RecBole's hyper-parameters (full-softmax CE, 2 layers, hidden 64, 2 heads,
dropout 0.5, max length 50, Adam lr 1e-3, batch 256), early stopping on validation NDCG@10
(patience 10), test scored once per seed with the best-validation weights. Targets: published
NDCG@10 0.0318 / HR@10 0.0605 (TIGER paper, Table 1) and RecBole 1.2.1's SASRec on the same split
(../shared/datasets/README.md: test NDCG@10 0.0417, HR@10 0.0844).

Semantic-ID variants (item_frozen, item_trainable, user_*) run when the quantize stage has written
the `semantic_ids` table and codebooks for the beauty warehouse; each is compared with the plain
baseline by a paired t-test and Wilcoxon test on per-user test NDCG@10 (mean over seeds).

    python benchmarks/train_quality.py --seeds 2026 2027 2028        # results: benchmarks/results/train_quality.json

Data: the ingest stage (configs/beauty.yaml) into --warehouse, run once if the tables are absent.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from momorec.config import load_config  # noqa: E402
from momorec.core.checkpoint import load_checkpoint, model_from_checkpoint  # noqa: E402
from momorec.core.metrics import ndcg_at_k, summarize  # noqa: E402
from momorec.core.ranking import protocol_label, rank_users  # noqa: E402
from momorec.core.sequences import SequenceData  # noqa: E402
from momorec.core.significance import mean_std, paired_test  # noqa: E402
from momorec.models import SemanticInputs  # noqa: E402
from momorec.train.runner import TrainingInputs, train_local  # noqa: E402

VARIANTS: dict[str, list[str]] = {
    # plain sets every semantic input to none itself: a config that enables semantic IDs must not leak into it
    "plain": ["train.model.item_semantic.mode=none", "train.model.user_semantic.mode=none"],
    "item_frozen": ["train.model.item_semantic.mode=frozen"],
    "item_trainable": ["train.model.item_semantic.mode=trainable"],
    "item_user_frozen": [
        "train.model.item_semantic.mode=frozen",
        "train.model.user_semantic.mode=frozen",
        "train.model.user_semantic.on_missing=reserved",
    ],
    "item_user_trainable": [
        "train.model.item_semantic.mode=trainable",
        "train.model.user_semantic.mode=trainable",
        "train.model.user_semantic.on_missing=reserved",
    ],
    # the user's motivation vector added to every output state instead of a leading token (chosen on validation)
    "item_user_trainable_final": [
        "train.model.item_semantic.mode=trainable",
        "train.model.user_semantic.mode=trainable",
        "train.model.user_semantic.on_missing=reserved",
        "train.model.user_fusion=final",
    ],
}
RESULTS = ROOT / "benchmarks" / "results" / "train_quality.json"
RESULTS_PATH = [RESULTS]  # --results may point elsewhere (e.g. the GPU run's $OUT)


def ensure_ingested(cfg) -> None:
    from momorec.storage import delta

    if delta.exists(cfg.table_path("sequences")):
        return
    from momorec.ingest.stage import run_ingest

    logging.info("ingesting Amazon Beauty into %s", cfg.dataset_root)
    run_ingest(cfg, show_progress=False)


def semantic_available(cfg, variant: str) -> bool:
    if variant == "plain":
        return True
    from momorec.storage import delta

    if not delta.exists(cfg.table_path("semantic_ids")):
        return False
    table = delta.read(cfg.table_path("semantic_ids"), columns=["entity_type"])
    kinds = set(table.column("entity_type").to_pylist())
    return "item" in kinds and ("user" in kinds or "user" not in variant)


def run_variant(
    cfg,
    variant: str,
    seeds: list[int],
    out: dict,
    ckpt_root: Path,
    data_npz: str | None,
    key: str,
    semantic_npz: str | None = None,
    user_semantic_npz: str | None = None,
) -> None:
    record = out["variants"].setdefault(key, {"overrides": VARIANTS[variant], "seeds": {}})
    if data_npz:
        semantic = {}
        for entity, section, path, flag in (
            ("item", cfg.train.model.item_semantic, semantic_npz, "--semantic-npz"),
            ("user", cfg.train.model.user_semantic, user_semantic_npz, "--user-semantic-npz"),
        ):
            semantic[entity] = None
            if section.mode != "none":
                if path is None:
                    raise SystemExit(f"variant {variant} needs {flag} with --data-npz")
                semantic[entity] = SemanticInputs.load_npz(path)
                record.setdefault("semantic_ids", {})[entity] = {"source": path, "version": semantic[entity].version}
        inputs = TrainingInputs(SequenceData.load_npz(data_npz), semantic["item"], semantic["user"])
    else:
        inputs = TrainingInputs.load(cfg)
    max_len = cfg.train.model.max_len
    if inputs.user_semantic is not None:  # users with motivation IDs (the others hold the reserved code 0)
        motivated = np.flatnonzero(inputs.user_semantic.codes.numpy().any(axis=1))
        record["motivated_users_file"] = str(ckpt_root / key / "motivated_users.npy")
        record["motivated_users"] = int(motivated.size)
        (ckpt_root / key).mkdir(parents=True, exist_ok=True)
        np.save(record["motivated_users_file"], motivated)
    threads = cfg.train.torch_threads or torch.get_num_threads()  # the loop sets torch_threads only once it starts
    record["device"] = "cuda" if cfg.train.use_gpu and torch.cuda.is_available() else f"cpu ({threads} threads)"
    record["architecture"] = cfg.train.model.architecture
    for seed in seeds:
        if str(seed) in record["seeds"]:
            continue
        start = time.perf_counter()
        tag = hashlib.sha1(
            json.dumps(sorted(cfg.train.model_dump(mode="json").items()), default=str).encode()
        ).hexdigest()[:8]
        folder = ckpt_root / key / tag / f"seed_{seed}"  # concurrent runs with other overrides never collide
        state = train_local(cfg, inputs, seed, str(folder))
        wall = time.perf_counter() - start
        device = "cuda" if cfg.train.use_gpu and torch.cuda.is_available() else "cpu"
        model = model_from_checkpoint(load_checkpoint(str(folder))).to(device)
        per_seed = {
            "best_epoch": state.best_epoch,
            "epochs_run": state.epoch,
            "train_wall_s": wall,
            "stopped_by_time": state.stopped_by_time,
            "valid.full.ndcg_10": state.best_metric,
            "epoch_time_s": float(np.median([h["train.epoch_time_s"] for h in state.history])),
        }
        for protocol in ("full", "sampled"):
            users, ranks = rank_users(
                model, inputs.data, "test", protocol, max_len, 1024, 100, negative_seed=seed, device=device
            )
            label = protocol_label(protocol, 100)
            per_seed.update({f"test.{label}.{k}": v for k, v in summarize(ranks).items() if k != "users"})
            if protocol == "full":
                np.save(folder / "test_full_ranks.npy", np.stack([users, ranks]))
        per_seed["checkpoint"] = str(folder)
        record["seeds"][str(seed)] = per_seed
        logging.info("%s seed %d: %s", variant, seed, json.dumps(per_seed))
        record["summary"] = mean_std(
            [{k: float(v) for k, v in m.items() if isinstance(v, int | float)} for m in record["seeds"].values()]
        )
        save(out)


def per_user_ndcg10(record: dict, seeds: list[str]) -> tuple[np.ndarray, np.ndarray]:
    runs = [np.load(Path(record["seeds"][s]["checkpoint"]) / "test_full_ranks.npy") for s in seeds]
    users = runs[0][0]
    return users, np.mean([ndcg_at_k(r[1], 10) for r in runs], axis=0)


def compare_with_plain(plain: dict, record: dict) -> None:
    """Paired t-test / Wilcoxon of per-user test NDCG@10 (mean over the shared seeds) against plain;
    for variants with user motivation IDs also on the users who have them (the motivated sample)."""
    seeds = sorted(set(plain["seeds"]) & set(record["seeds"]))
    if not seeds:
        return
    ua, a = per_user_ndcg10(plain, seeds)
    ub, b = per_user_ndcg10(record, seeds)
    if not np.array_equal(ua, ub):
        return
    record["vs_plain_ndcg10"] = {"seeds": seeds, **paired_test(a, b)}
    if record.get("motivated_users_file"):
        keep = np.isin(ua, np.load(record["motivated_users_file"]))
        record["vs_plain_ndcg10_motivated_users"] = {
            "seeds": seeds,
            "users": int(keep.sum()),
            **paired_test(a[keep], b[keep]),
        }


def merge(files: list[str], target: Path, note: str | None = None) -> None:
    """Union the variants/seeds of several result files (runs made in parallel), recompute the
    summaries, and the paired tests of every variant against its architecture's plain baseline."""
    out: dict = {"variants": {}, **({"note": note} if note else {})}
    for name in files:
        part = json.loads(Path(name).read_text())
        for key, value in part.items():
            if key != "variants":
                out.setdefault(key, value)
        for key, record in part["variants"].items():
            merged = out["variants"].setdefault(key, {k: v for k, v in record.items() if k not in ("seeds", "summary")})
            merged.setdefault("seeds", {}).update(record.get("seeds", {}))
    for key, record in out["variants"].items():
        record["summary"] = mean_std(
            [{k: float(v) for k, v in m.items() if isinstance(v, int | float)} for m in record["seeds"].values()]
        )
        plain_key = "plain" if record.get("architecture", "sasrec") == "sasrec" else f"{record['architecture']}_plain"
        if key != plain_key and plain_key in out["variants"]:
            compare_with_plain(out["variants"][plain_key], record)
    RESULTS_PATH[0] = target
    save(out)
    print(json.dumps({k: v.get("summary", {}).get("test.full.ndcg_10") for k, v in out["variants"].items()}, indent=2))


def save(out: dict) -> None:
    RESULTS_PATH[0].parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH[0].write_text(json.dumps(out, indent=2, sort_keys=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "beauty.yaml"))
    parser.add_argument("--warehouse", default=str(ROOT / "warehouse"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[2026, 2027, 2028])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS))
    parser.add_argument(
        "--set", dest="overrides", nargs="*", default=[], help="extra config overrides, e.g. train.epochs=50"
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--export-npz", help="write the ingested Beauty split to this .npz and stop (for a GPU box)")
    parser.add_argument(
        "--data-npz", help="read the split from this .npz instead of the Delta tables (plain variant only)"
    )
    parser.add_argument("--results", default=str(RESULTS), help="result file (JSON); merged with what it already holds")
    parser.add_argument(
        "--semantic-npz", help="item semantic IDs for --data-npz runs (train_semantic_proxy.py, beauty_llm_ids.py)"
    )
    parser.add_argument("--user-semantic-npz", help="user motivation IDs for --data-npz runs (beauty_llm_ids.py)")
    parser.add_argument("--note", help="what this result file holds (stored as its 'note')")
    parser.add_argument(
        "--label", help="suffix of the result key (e.g. whiten128): the same variant with other semantic IDs"
    )
    parser.add_argument("--merge", nargs="+", help="merge these result files (parallel runs) into --results, then stop")
    args = parser.parse_args()
    if args.merge:
        merge(args.merge, Path(args.results), args.note)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    base = [f"warehouse={args.warehouse}", "train.launcher=local", *args.overrides]
    if args.threads:
        base.append(f"train.torch_threads={args.threads}")
    cfg = load_config(args.config, base)
    RESULTS_PATH[0] = Path(args.results)
    if not args.data_npz:
        ensure_ingested(cfg)
    if args.export_npz:
        TrainingInputs.load(cfg).data.save_npz(args.export_npz)
        return
    out = json.loads(RESULTS_PATH[0].read_text()) if RESULTS_PATH[0].exists() else {}
    out.setdefault("variants", {})
    out["common_overrides"] = base[1:]
    out["protocol"] = (
        f"leave-one-out on {cfg.dataset}; test.full = all items ranked, history excluded; "
        "test.sampled100 = 100 uniform unseen negatives (labelled, optimistic)"
    )
    out["reference"] = (
        {}
        if cfg.dataset != "beauty"
        else {
            "published_sasrec": {"test.full.ndcg_10": 0.0318, "test.full.hr_10": 0.0605},
            "recbole_1.2.1_sasrec_same_split": {
                "test.full.ndcg_10": 0.0417,
                "test.full.hr_10": 0.0844,
                "test.full.ndcg_5": 0.0328,
                "test.full.hr_5": 0.0567,
            },
        }
    )
    ckpt_root = Path(args.warehouse) / cfg.dataset / "benchmark_checkpoints"
    for variant in args.variants:
        vcfg = load_config(args.config, base + VARIANTS[variant])
        arch = vcfg.train.model.architecture
        key = (variant if arch == "sasrec" else f"{arch}_{variant}") + (f"_{args.label}" if args.label else "")
        plain_key = "plain" if arch == "sasrec" else f"{arch}_plain"
        if args.data_npz and (
            (variant != "plain" and not args.semantic_npz) or ("user" in variant and not args.user_semantic_npz)
        ):
            continue  # no IDs of that kind were given for the .npz run
        if not args.data_npz and not semantic_available(cfg, variant):
            out["variants"][key] = {"skipped": "no semantic_ids table (item/user) in the warehouse yet"}
            save(out)
            continue
        run_variant(
            vcfg, variant, args.seeds, out, ckpt_root, args.data_npz, key, args.semantic_npz, args.user_semantic_npz
        )
        if variant != "plain" and "seeds" in out["variants"].get(plain_key, {}):
            compare_with_plain(out["variants"][plain_key], out["variants"][key])
        save(out)
    print(json.dumps(out, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
