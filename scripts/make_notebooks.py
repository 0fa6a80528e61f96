"""Write notebooks/quickstart.ipynb and notebooks/compare.ipynb (unexecuted) from the cells below.

The notebooks are generated so their code stays reviewable here; tests/platform/test_notebooks.py
executes both with nbclient on the demo data.

    python scripts/make_notebooks.py
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

OUT = Path(__file__).resolve().parents[1] / "notebooks"


def parameters(source: str):
    cell = new_code_cell(source)
    cell.metadata["tags"] = ["parameters"]
    return cell


QUICKSTART = [
    new_markdown_cell(
        "# MoMoREC quickstart\n\n"
        "Runs the demo pipeline (`configs/demo.yaml`: 200 Amazon Beauty users, 187 items) end to end, "
        "exactly as `make run` does:\n\n"
        "ingest (Spark → Delta) → motivate (LLM agents on Ray Data) → quantize (residual semantic IDs) → "
        "train (SASRec with Ray Train) → evaluate (leave-one-out) → recommend (top-K with the user's motivation).\n\n"
        "Then it shows the results: the stage table, the test metrics with their protocol and seeds, a few "
        "users' recommendations next to the motivation the LLM wrote for them, and how the semantic codes are used.\n\n"
        "Stages whose inputs did not change are skipped, so running it a second time is quick. "
        "Run it from the `notebooks/` folder of a checkout, with the project's `.venv` as the kernel."
    ),
    parameters(
        "# Parameters (the tests override them to run a small slice of the demo).\n"
        'CONFIG = "../configs/demo.yaml"\n'
        'OVERRIDES: list[str] = []  # e.g. ["motivate.execution.limit_users=16", "train.epochs=2"]'
    ),
    new_code_cell(
        "import logging\n\n"
        "import pandas as pd\n\n"
        "from momorec.progress import stage_summary as summarize\n"
        "from momorec.config import load_config\n"
        "from momorec.pipeline import run_pipeline\n\n"
        "logging.basicConfig(level=logging.WARNING)\n"
        "cfg = load_config(CONFIG, OVERRIDES)\n"
        "result = run_pipeline(cfg, show_progress=False)\n"
        "stages = pd.DataFrame(\n"
        '    [{"stage": name, "wall s": round(r.get("wall_time_s") or 0.0, 1), "result": summarize(r)} for name, r in result.stages.items()]\n'
        ")\n"
        'print(f"pipeline {result.wall_time_s:.0f} s; tables under {result.warehouse}; MLflow run {result.mlflow_run_id}")\n'
        "stages"
    ),
    new_markdown_cell(
        "## Test metrics\n\nFull ranking (every item scored, the user's history excluded) is the headline protocol; "
        "`sampled100` ranks the target against 100 sampled negatives and is labelled as such. Mean ± std over the seeds."
    ),
    new_code_cell(
        'evaluate = result.stages["evaluate"]\n'
        'evaluate = evaluate.get("last_result", evaluate)  # a skipped stage carries its last result\n'
        "metrics = pd.DataFrame(\n"
        '    [{"protocol": protocol, "metric": name, "mean": s["mean"], "std": s.get("std"), "seeds": evaluate["seeds"]}\n'
        '     for protocol, by_name in evaluate["metrics"].items() for name, s in by_name.items()]\n'
        ")\n"
        "metrics"
    ),
    new_markdown_cell("## Recommendations, explained by the user's motivation"),
    new_code_cell(
        "from momorec.storage import delta\n\n"
        'recs = delta.read(cfg.table_path("recommendations")).to_pandas()\n'
        'titles = dict(zip(*delta.read(cfg.table_path("items"), columns=["item_id", "title"]).to_pydict().values()))\n'
        "shown = recs[recs.motivation_text.notna()].head(3)\n"
        "for row in shown.itertuples():\n"
        '    print(f"user {row.user_id} (user codes {row.user_codes})")\n'
        '    print(f"  motivation: {row.motivation_text}")\n'
        "    for item, codes in list(zip(row.items, row.item_codes))[:5]:\n"
        '        print(f"  -> {titles.get(item, item)!s:.70}  codes {codes}")\n'
        'print(f"{len(recs)} users, {recs.motivation_text.notna().sum()} with a motivation")'
    ),
    new_markdown_cell("## Semantic IDs: how evenly each level's codes are used"),
    new_code_cell(
        "import matplotlib.pyplot as plt\n"
        "import numpy as np\n\n"
        'sids = delta.read(cfg.table_path("semantic_ids")).to_pandas()\n'
        "fig, axes = plt.subplots(1, 2, figsize=(10, 3))\n"
        'for ax, entity in zip(axes, ["item", "user"]):\n'
        "    codes = np.array(sids[sids.entity_type == entity].codes.tolist())\n"
        "    for level in range(codes.shape[1] if codes.size else 0):\n"
        '        ax.hist(codes[:, level], bins=np.arange(codes.max() + 2) - 0.5, alpha=0.5, label=f"level {level + 1}")\n'
        '    ax.set_title(f"{entity} codes ({len(codes)} {entity}s)")\n'
        '    ax.set_xlabel("code")\n'
        "    ax.legend()\n"
        "fig.tight_layout()"
    ),
    new_markdown_cell(
        "## MLflow\n\nEvery stage is a child run of the pipeline run above. Open the UI with\n\n"
        "```\n.venv/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1\n```\n\n"
        "and compare runs in the terminal with `momorec compare`, or in `compare.ipynb`."
    ),
]

COMPARE = [
    new_markdown_cell(
        "# Baseline vs MoMoREC, per backbone\n\n"
        "Reads the evaluate runs of an MLflow experiment (`momorec.platform.compare`) and plots, for each "
        "backbone (SASRec, GRU4Rec, BERT4Rec), the plain item-ID model (baseline) next to the same model with "
        "MoMoREC's semantic IDs. Bars are means over seeds with their std; the title names the protocol.\n\n"
        "Fill the experiment first, e.g. `momorec run -c configs/demo.yaml`, then `momorec train` + `momorec evaluate` "
        "with `--set train.model.architecture=gru4rec` and with `--set train.model.item_semantic.mode=none "
        "--set train.model.user_semantic.mode=none` for the baselines."
    ),
    parameters(
        "TRACKING_URI = None  # None = MLFLOW_TRACKING_URI, else ../mlflow.db\n"
        'EXPERIMENT = "momorec"\n'
        'METRIC = "test.full.ndcg_10"'
    ),
    new_code_cell(
        "import os\n\n"
        "import pandas as pd\n\n"
        "from momorec.platform.compare import collect, protocol_label\n\n"
        'uri = TRACKING_URI or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///" + os.path.abspath("../mlflow.db")\n'
        "comparison = collect(EXPERIMENT, [METRIC], tracking_uri=uri)\n"
        "info = comparison.metrics[0]\n"
        "runs = pd.DataFrame(\n"
        '    [{"run": r.run_name, "run_id": r.run_id, "stage": r.stage, "model": r.model, "seeds": r.seeds,\n'
        '      "mean": r.values.get(METRIC), "std": r.stds.get(METRIC, 0.0), "start": r.start_time}\n'
        '     for r in comparison.runs if r.stage == "evaluate" and r.model]\n'
        ")\n"
        "if runs.empty:\n"
        '    raise RuntimeError(f"no evaluate run of {EXPERIMENT!r} logged {METRIC}: run the pipeline first")\n'
        'runs["backbone"] = runs.model.str.split().str[0]\n'
        'runs["variant"] = runs.model.map(lambda m: "baseline" if m.endswith("(baseline)") else "MoMoREC")\n'
        "# The latest evaluate run of each (backbone, model variant).\n"
        'latest = runs.sort_values("start").groupby(["backbone", "model"]).tail(1).sort_values(["backbone", "variant"])\n'
        'latest[["backbone", "variant", "model", "mean", "std", "seeds", "run_id"]]'
    ),
    new_code_cell(
        "import matplotlib.pyplot as plt\n"
        "import numpy as np\n\n"
        "backbones = sorted(latest.backbone.unique())\n"
        'variants = ["baseline", "MoMoREC"]\n'
        "fig, ax = plt.subplots(figsize=(2.2 * len(backbones) + 2, 3.5))\n"
        "for k, variant in enumerate(variants):\n"
        '    part = latest[latest.variant == variant].groupby("backbone").tail(1).set_index("backbone")\n'
        '    means = [part["mean"].get(b, np.nan) for b in backbones]\n'
        '    stds = [part["std"].get(b, 0.0) for b in backbones]\n'
        "    ax.bar(np.arange(len(backbones)) + (k - 0.5) * 0.38, means, 0.38, yerr=stds, capsize=3, label=variant)\n"
        "seeds = sorted({s for seeds in latest.seeds for s in seeds})\n"
        "ax.set_xticks(np.arange(len(backbones)), backbones)\n"
        'ax.set_ylabel(f"{info.measure} ({info.split})")\n'
        'ax.set_title(f"{EXPERIMENT}: {info.measure}, {protocol_label(info)}, seeds {seeds}")\n'
        "ax.legend()\n"
        "fig.tight_layout()\n"
        "PLOTTED = {v: latest[latest.variant == v].backbone.tolist() for v in variants}\n"
        "PLOTTED"
    ),
]


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Write notebooks/quickstart.ipynb and notebooks/compare.ipynb.")
    parser.parse_args()
    OUT.mkdir(exist_ok=True)
    kernel = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    for name, cells in (("quickstart", QUICKSTART), ("compare", COMPARE)):
        nb = new_notebook(cells=cells, metadata=kernel)
        for number, cell in enumerate(nb.cells):
            cell.id = f"{name}-{number}"  # stable ids: regenerating an unchanged notebook changes nothing
        nbformat.write(nb, OUT / f"{name}.ipynb")
        print(f"wrote {OUT / f'{name}.ipynb'}")


if __name__ == "__main__":
    main()
