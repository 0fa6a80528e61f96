"""benchmarks/paper_matrix.py's report: cells from packed runs, paired tests, MLflow runs `momorec compare` reads."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks import paper_matrix as pm  # noqa: E402
from momorec.core.metrics import ndcg_at_k  # noqa: E402

USERS = np.arange(1, 401)


def _ranks(rng: np.random.Generator, scale: float) -> np.ndarray:
    return np.maximum(1, rng.geometric(1.0 / scale, size=USERS.size))


def _packed(folder: Path) -> dict[str, np.ndarray]:
    """runs.json + ranks.npz as `train` packs them: plain < item IDs < item + user IDs, 2 seeds, one run cut."""
    rng = np.random.default_rng(7)
    scales = {"plain": 60.0, "item_trainable": 20.0, "item_user_trainable": 20.0, "item_user_trainable_final": 15.0}
    records, ranks = [], {}
    for variant, scale in scales.items():
        for seed in (2026, 2027):
            key = f"ml100k__sasrec__{variant}__{seed}"
            if variant.startswith("item_user_trainable") and seed == 2027:
                records.append(
                    {
                        "dataset": "ml100k",
                        "backbone": "sasrec",
                        "variant": variant,
                        "seed": seed,
                        "status": "stopped: deadline",
                    }
                )
                continue
            r = _ranks(rng, scale)
            ranks[key] = np.stack([USERS, r])
            metrics = {
                "test.full.ndcg_10": float(ndcg_at_k(r, 10).mean()),
                "test.full.hr_10": float((r <= 10).mean()),
                "valid.full.ndcg_10": float(ndcg_at_k(_ranks(rng, scale), 10).mean()),
            }
            records.append(
                {
                    "dataset": "ml100k",
                    "backbone": "sasrec",
                    "variant": variant,
                    "seed": seed,
                    "status": "done",
                    "metrics": metrics,
                    "overrides": [f"v={variant}"],
                }
            )
    (folder / "runs.json").write_text(
        json.dumps(
            {"device": "test", "torch": "x", "parallel": 2, "wall_s": 1.0, "extra_overrides": [], "runs": records}
        )
    )
    np.savez(folder / "ranks.npz", **ranks)
    return ranks


def test_report_pairs_each_variant_with_its_baseline_and_compare_reads_the_cells(tmp_path, tracking_env):
    ranks = _packed(tmp_path)
    args = type(
        "Args",
        (),
        {
            "runs": [str(tmp_path)],
            "bench": str(tmp_path / "bench"),
            "results": str(tmp_path / "paper.json"),
            "tracking_uri": tracking_env,
            "no_mlflow": False,
        },
    )
    result = pm.report(args)
    cells = result["cells"]

    plain, item, user = (cells[f"ml100k/sasrec/{v}"] for v in ("plain", "item_trainable", "item_user_trainable"))
    expected = np.mean([ndcg_at_k(ranks[f"ml100k__sasrec__plain__{s}"][1], 10).mean() for s in (2026, 2027)])
    assert abs(plain["summary"]["test.full.ndcg_10"]["mean"] - expected) < 1e-12
    assert item["vs_plain_ndcg10"]["seeds"] == [2026, 2027] and item["vs_plain_ndcg10"]["mean_diff"] > 0
    assert item["vs_plain_ndcg10"]["t_pvalue"] < 0.01
    # the motivation cell has one seed: it is paired on that seed alone, and against item IDs too
    assert user["vs_plain_ndcg10"]["seeds"] == [2026] and user["vs_item_ids_ndcg10"]["seeds"] == [2026]
    assert user["not_done"] == {"2027": "stopped: deadline"}
    final = cells["ml100k/sasrec/item_user_trainable_final"]  # the fusion choice: paired with item IDs alone too
    assert final["vs_item_ids_ndcg10"]["seeds"] == [2026] and final["vs_plain_ndcg10"]["mean_diff"] > 0
    assert json.loads(Path(args.results).read_text())["cells"].keys() == cells.keys()

    from momorec.platform.compare import collect

    comparison = collect("paper-ml100k", ["test.full.ndcg_10", "paired.vs_plain.ndcg_10_p_value"], tracking_env)
    rows = {row.model: row for row in comparison.runs}
    assert set(rows) == {
        "sasrec (baseline)",
        "sasrec + item:trainable",
        "sasrec + item:trainable, user:trainable",
        "sasrec + item:trainable, user:trainable (final state)",
    }
    assert rows["sasrec (baseline)"].seeds == [2026, 2027]
    assert (
        abs(rows["sasrec + item:trainable"].values["test.full.ndcg_10"] - item["summary"]["test.full.ndcg_10"]["mean"])
        < 1e-9
    )
    assert "paired.vs_plain.ndcg_10_p_value" not in rows["sasrec (baseline)"].values
    assert pm.markdown_table(result).count("\n") == 5  # header, rule, four cells

    # the fusion is chosen on validation, over the seed both variants finished, never on test figures
    (choice,) = result["validation_choices"]
    assert choice["question"] == "how user IDs enter" and choice["seeds"] == [2026]
    valid = {
        v: cells[f"ml100k/sasrec/{v}"]["seeds"]["2026"]["valid.full.ndcg_10"] for v in choice["valid.full.ndcg_10"]
    }
    assert choice["valid.full.ndcg_10"] == valid and set(valid) == {"item_user_trainable", "item_user_trainable_final"}
    assert choice["chosen"] == max(valid, key=valid.get)
    assert "how user IDs enter" in pm.choice_line(choice)


def test_the_plan_runs_only_the_variants_whose_ids_were_exported(tmp_path):
    beauty = ("data", "item", "user", "item@whiten128", "user@whiten128")
    for name, files in (("beauty", beauty), ("yelp", ("data", "item")), ("ml100k", ())):
        (tmp_path / name).mkdir()
        for f in files:
            (tmp_path / name / f"{f}.npz").write_bytes(b"")
    runs = pm.planned_runs(tmp_path, list(pm.DATASETS), [1, 2, 3])
    by_dataset = {d: {(r.backbone, r.variant) for r in runs if r.dataset.name == d} for d in pm.DATASETS}
    assert by_dataset["ml100k"] == set()
    assert ("bert4rec", "item_user_trainable") in by_dataset["beauty"]
    assert all("user" not in v for _, v in by_dataset["yelp"]) and ("gru4rec", "item_trainable") in by_dataset["yelp"]
    # beauty: 3 backbones x 3 variants + SASRec's 2 frozen ones, its fusion choice (user IDs added to the final
    # state) and its 2 trainable ones on the whitened codes; yelp: 3 backbones x 2 variants (no user IDs: no fusion
    # choice), the frozen extras on Beauty only
    assert len(runs) == 3 * (3 * 3 + 2 + 1 + 2) + 3 * (3 * 2)
    assert {r.dataset.name for r in runs if r.variant == pm.FUSION_VARIANT} == {"beauty"}
    assert {r.cell for r in runs if r.codes} == {"item_trainable@whiten128", "item_user_trainable@whiten128"}
    extras = [i for i, r in enumerate(runs) if r.variant.endswith(("_frozen", "_final")) or r.codes]
    assert extras == list(range(len(runs) - len(extras), len(runs)))  # the extras come last
    command = next(r for r in runs if r.backbone == "bert4rec").command(tmp_path, tmp_path / "s", "cuda")
    assert 'train.model.architecture="bert4rec"' in command and "train.use_gpu=true" in command
    assert "train.time_budget_min=1.25" in next(r for r in runs).command(tmp_path, tmp_path / "s", "cpu", 1.25)
    # a CPU's own run budget replaces the dataset's device budget, and the time left still caps it
    first = next(r for r in runs if r.dataset.name == "beauty")
    assert "train.time_budget_min=30.00" in first.command(tmp_path, tmp_path / "s", "cpu", 90.0, 30.0)
    assert "train.time_budget_min=12.00" in first.command(tmp_path, tmp_path / "s", "cpu", 12.0, 30.0)
    # a backbone's settings tuned on one dataset (configs/overlays/<dataset>-<backbone>.yaml) apply there only
    ml100k = pm.Run(pm.DATASETS["ml100k"], "gru4rec", "plain", 1).command(tmp_path, tmp_path / "s", "cpu")
    assert "train.learning_rate=0.01" in ml100k and 'train.model.architecture="gru4rec"' in ml100k
    yelp = next(r for r in runs if r.backbone == "gru4rec" and r.dataset.name == "yelp")
    assert not any("learning_rate" in a for a in yelp.command(tmp_path, tmp_path / "s", "cpu"))
    beauty_gru = next(r for r in runs if r.backbone == "gru4rec" and r.dataset.name == "beauty")
    dropouts = [a for a in beauty_gru.command(tmp_path, tmp_path / "s", "cpu") if a.startswith("train.model.dropout")]
    assert dropouts == ["train.model.dropout=0.3", "train.model.dropout=0.5"]  # the tuned value comes last: it wins
    alt = next(r for r in runs if r.codes).command(tmp_path, tmp_path / "s", "cpu")
    assert str(tmp_path / "beauty" / "item@whiten128.npz") in alt and alt[alt.index("--label") + 1] == "whiten128"


def test_runs_of_several_train_calls_merge_a_finished_run_is_never_replaced_by_an_unfinished_one(tmp_path):
    """A device call and CPU sessions each pack a folder; report reads them all, one record per run key."""
    first, second = tmp_path / "device", tmp_path / "cpu"
    for folder in (first, second):
        folder.mkdir()
    ranks_first = _packed(first)
    # the second call: item_user_trainable seed 2027 finished there, plain seed 2026 was cut there
    key = "ml100k__sasrec__item_user_trainable__2027"
    late_ranks = np.stack([USERS, np.full(USERS.size, 3)])
    records = [
        {"dataset": "ml100k", "backbone": "sasrec", "variant": "plain", "seed": 2026, "status": "stopped: deadline"},
        {
            "dataset": "ml100k",
            "backbone": "sasrec",
            "variant": "item_user_trainable",
            "seed": 2027,
            "status": "done",
            "device": "cpu: x86_64 (2 cores)",
            "metrics": {"test.full.ndcg_10": 0.5, "test.full.hr_10": 1.0},
        },
    ]
    (second / "runs.json").write_text(json.dumps({"device": "cpu: x86_64 (2 cores)", "runs": records}))
    np.savez(second / "ranks.npz", **{key: late_ranks})

    merged, ranks, folders = pm.merge_runs([first, second])
    by_key = {f"{r['variant']}__{r['seed']}": r for r in merged}
    assert len(merged) == 8 and [f["device"] for f in folders] == ["test", "cpu: x86_64 (2 cores)"]
    assert by_key["plain__2026"]["status"] == "done" and by_key["plain__2026"]["device"] == "test"
    assert np.array_equal(ranks["ml100k__sasrec__plain__2026"], ranks_first["ml100k__sasrec__plain__2026"])
    assert by_key["item_user_trainable__2027"]["metrics"]["test.full.ndcg_10"] == 0.5
    assert np.array_equal(ranks[key], late_ranks)
