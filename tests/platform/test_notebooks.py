"""Both notebooks executed with nbclient on the demo data (a slice of its users, to fit CI's time).

quickstart.ipynb runs the real six-stage pipeline (Spark, Ray Data + the CPU LLM, quantize, Ray
Train, evaluate, recommend); the test then fills the experiment with baseline and MoMoREC runs of
the other backbones and executes compare.ipynb, which must plot all of them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import DEMO_LLM_SLICE

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
DEMO = REPO / "configs" / "demo.yaml"

pytestmark = [pytest.mark.spark, pytest.mark.ray, pytest.mark.llm, pytest.mark.slow]

# A slice of the demo: 8 users and the items their recent histories show; short answers; 2 epochs.
SLICE = [
    *DEMO_LLM_SLICE,
    "motivate.execution.limit_users=8",
    "quantize.codes=4",
    "quantize.pca_dim=8",
    "train.launcher=local",
    "evaluate.protocols=[full]",
]


def _execute(name: str, parameters: str) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source += "\n# injected by the test\n" + parameters
    NotebookClient(nb, timeout=1500, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return nb


def _outputs(nb: nbformat.NotebookNode, kind: str) -> list:
    return [
        o
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == kind or kind in o.get("data", {})
    ]


def test_quickstart_runs_the_pipeline_and_compare_plots_baseline_vs_momorec(tmp_path, tracking_env):
    from momorec.config import load_config

    overrides = [f"warehouse={tmp_path / 'warehouse'}", *SLICE]
    quick = _execute("quickstart", f"OVERRIDES = {overrides!r}")
    text = "".join(o.get("text", "") for o in _outputs(quick, "stream"))
    assert "pipeline " in text and "with a motivation" in text
    users_line = next(line for line in text.splitlines() if "with a motivation" in line)
    users, with_motivation = int(users_line.split()[0]), int(users_line.split(",")[1].split()[0])
    assert users == 200 and 1 <= with_motivation <= 8  # every demo user is served; the slice has motivations
    assert _outputs(quick, "image/png"), "the semantic-ID histogram was not drawn"

    # The other backbones, each as baseline and with MoMoREC's semantic IDs, into the same experiment.
    from momorec.evaluate.stage import run_evaluate
    from momorec.train.stage import run_train

    for arch in ("sasrec", "gru4rec", "bert4rec"):
        for mode in ("none", "frozen"):
            if (arch, mode) == ("sasrec", "frozen"):
                continue  # the quickstart's own model
            cfg = load_config(
                DEMO,
                [
                    *overrides,
                    f"train.model.architecture={arch}",
                    f"train.model.item_semantic.mode={mode}",
                    f"train.model.user_semantic.mode={mode}",
                    "train.log_model=false",
                ],
            )
            run_train(cfg, show_progress=False)
            run_evaluate(cfg, show_progress=False)

    compare = _execute("compare", f"TRACKING_URI = {tracking_env!r}")
    last = [c for c in compare.cells if c.cell_type == "code"][-1]
    plotted = ast.literal_eval(
        next(o for o in last.outputs if o["output_type"] == "execute_result")["data"]["text/plain"]
    )
    assert plotted == {"baseline": ["bert4rec", "gru4rec", "sasrec"], "MoMoREC": ["bert4rec", "gru4rec", "sasrec"]}
    assert _outputs(compare, "image/png"), "the comparison was not plotted"
