"""Compare the runs of an MLflow experiment: metrics side by side, best per metric, protocol and seeds.

    momorec compare --experiment momorec --metric test.full.ndcg_10 --metric test.sampled100.hr_10 --plot cmp.png

Metric names carry their protocol: `<split>.<protocol>.<measure>`, e.g. `test.full.ndcg_10` (full
ranking over all items, the headline) or `test.sampled100.hr_10` (the target against 100 sampled
negatives). The evaluate stage logs `<name>.mean` / `<name>.std` over seeds on its run and `<name>`
on one nested run per seed (tag `momorec.seed`); a requested name matches either form. By default
the per-seed runs are folded into their parent (their seeds listed there); `per_seed=True` lists them.

A run's model is read from its params (`train.model.*`), or from its train run's params when it has a
`train_run_id` param (evaluate runs): e.g. "sasrec + item:frozen, user:frozen" or "sasrec (baseline)".
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)

SPLITS = ("test", "valid")
STATS = ("mean", "std")
# Measures where smaller is better; everything else (hr, ndcg, recall, mrr, utilization...) is larger-is-better.
LOWER_IS_BETTER = ("loss", "error", "wall_time", "time_s", "p_value", "collision")
SEED_TAG = "momorec.seed"
PARENT_TAG = "mlflow.parentRunId"


class CompareError(ValueError):
    """The experiment or a requested metric does not exist; the message lists what does."""


class MetricInfo(BaseModel):
    """One compared metric and its winner(s)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Metric name without .mean/.std, e.g. test.full.ndcg_10.")
    split: str = Field(description="test | valid | '' (not a protocol metric).")
    protocol: str = Field(description="full | sampled<N> | ''.")
    measure: str = Field(description="e.g. ndcg_10.")
    higher_is_better: bool
    best_value: float | None = None
    best_run_ids: list[str] = Field(default_factory=list)


class RunRow(BaseModel):
    """One run's line in the comparison."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    run_name: str
    stage: str = ""
    status: str = ""
    start_time: int | None = Field(None, description="Epoch milliseconds.")
    model: str = ""
    seeds: list[int] = Field(default_factory=list)
    values: dict[str, float] = Field(
        default_factory=dict, description="metric name -> value (the mean over seeds when logged so)."
    )
    stds: dict[str, float] = Field(default_factory=dict, description="metric name -> std over seeds, when logged.")


class Comparison(BaseModel):
    model_config = ConfigDict(extra="forbid")

    experiment: str
    tracking_uri: str
    metrics: list[MetricInfo]
    runs: list[RunRow]


# ---- pure parts -------------------------------------------------------------------------------


def parse_metric(name: str) -> MetricInfo:
    """`test.sampled100.hr_10[.mean]` -> split test, protocol sampled100, measure hr_10."""
    parts = name.split(".")
    if parts[-1] in STATS:
        parts = parts[:-1]
    base = ".".join(parts)
    if len(parts) == 3 and parts[0] in SPLITS:
        split, protocol, measure = parts
    else:
        split, protocol, measure = "", "", base
    lower = any(token in measure for token in LOWER_IS_BETTER)
    return MetricInfo(name=base, split=split, protocol=protocol, measure=measure, higher_is_better=not lower)


def protocol_label(info: MetricInfo) -> str:
    """Readable protocol: 'full ranking', 'sampled, 100 negatives'."""
    if info.protocol == "full":
        return "full ranking"
    if info.protocol.startswith("sampled"):
        return f"sampled, {info.protocol.removeprefix('sampled') or '?'} negatives"
    return info.protocol


def _sort_key(info: MetricInfo) -> tuple:
    family, _, k = info.measure.partition("_")
    return (
        SPLITS.index(info.split) if info.split in SPLITS else 9,
        info.protocol != "full",
        info.protocol,
        family != "ndcg",
        family,
        int(k) if k.isdigit() else 0,
        info.measure,
    )


def default_metrics(available: Iterable[str]) -> list[str]:
    """Test (and validation full-ranking) NDCG@10 and HR@10 under every protocol logged; else every protocol metric."""
    infos = [parse_metric(n) for n in available]
    protocol = [i for i in infos if i.split]
    headline = [
        i for i in protocol if i.measure in ("ndcg_10", "hr_10") and (i.split == "test" or i.protocol == "full")
    ]
    chosen = headline or protocol
    return [i.name for i in sorted({i.name: i for i in chosen}.values(), key=_sort_key)]


def mark_best(metrics: list[MetricInfo], rows: list[RunRow]) -> list[MetricInfo]:
    """Fill best_value / best_run_ids (ties: all of them) per metric."""
    out = []
    for info in metrics:
        scored = [
            (row.values[info.name], row.run_id)
            for row in rows
            if info.name in row.values and math.isfinite(row.values[info.name])
        ]
        if not scored:
            out.append(info)
            continue
        best = max(v for v, _ in scored) if info.higher_is_better else min(v for v, _ in scored)
        out.append(info.model_copy(update={"best_value": best, "best_run_ids": [r for v, r in scored if v == best]}))
    return out


def _metric_value(metrics: dict[str, float], name: str) -> tuple[float | None, float | None]:
    if name in metrics:
        return metrics[name], None
    if f"{name}.mean" in metrics:
        return metrics[f"{name}.mean"], metrics.get(f"{name}.std")
    return None, None


def _seeds_from_params(params: dict[str, str], tags: dict[str, str]) -> list[int]:
    if tags.get(SEED_TAG, "").lstrip("-").isdigit():
        return [int(tags[SEED_TAG])]
    raw = params.get("train.seeds")
    if raw:
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, list) and all(isinstance(s, int) for s in value):
            return value
    seed = params.get("seed", "")
    return [int(seed)] if seed.lstrip("-").isdigit() else []


def model_label(params: dict[str, str]) -> str:
    """'sasrec + item:frozen, user:frozen', 'sasrec + item:trainable, user:trainable (final state)', 'gru4rec
    (baseline)', or '' when the params say nothing."""
    arch = params.get("train.model.architecture")
    if not arch:
        return ""
    modes = [
        f"{who}:{params[key]}"
        for who in ("item", "user")
        if (key := f"train.model.{who}_semantic.mode") in params and params[key] not in ("none", "null", "")
    ]
    if modes and modes[-1].startswith("user:") and params.get("train.model.user_fusion") == "final":
        modes[-1] += " (final state)"  # not the default leading token: another model, another row name
    return f"{arch} + {', '.join(modes)}" if modes else f"{arch} (baseline)"


# ---- reading MLflow ---------------------------------------------------------------------------


def _all_runs(client, experiment_id: str, max_runs: int) -> list:
    runs, token = [], None
    while len(runs) < max_runs:
        page = client.search_runs(
            [experiment_id],
            max_results=min(1000, max_runs - len(runs)),
            order_by=["attributes.start_time ASC"],
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            break
    return runs


def collect(
    experiment: str,
    metrics: list[str] | None = None,
    tracking_uri: str | None = None,
    per_seed: bool = False,
    max_runs: int = 5000,
) -> Comparison:
    """Read the experiment's runs and build the comparison (no printing)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    import mlflow

    uri = tracking_uri or mlflow.get_tracking_uri()
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = sorted(e.name for e in client.search_experiments())
        raise CompareError(f"no experiment {experiment!r} in {uri}; experiments there: {names}")
    runs = _all_runs(client, exp.experiment_id, max_runs)
    ids = {r.info.run_id for r in runs}
    child_seeds: dict[str, set[int]] = {}
    for r in runs:
        parent, seed = r.data.tags.get(PARENT_TAG), r.data.tags.get(SEED_TAG, "")
        if parent and seed.lstrip("-").isdigit():
            child_seeds.setdefault(parent, set()).add(int(seed))

    available = {parse_metric(m).name for r in runs for m in r.data.metrics}
    names = list(metrics) if metrics else default_metrics(available)
    if not names:
        raise CompareError(
            f"no run of {experiment!r} logged a protocol metric (<valid|test>.<protocol>.<measure>); "
            f"pick some with --metric; logged: {sorted(available)}"
        )
    missing = [m for m in names if parse_metric(m).name not in available]
    if missing:
        raise CompareError(f"metric(s) {missing} logged by no run of {experiment!r}; logged: {sorted(available)}")
    infos = [parse_metric(m) for m in names]

    train_params: dict[str, dict[str, str]] = {}

    def params_of_train_run(run_id: str) -> dict[str, str]:
        if run_id not in train_params:
            try:
                train_params[run_id] = client.get_run(run_id).data.params
            except MlflowException:
                train_params[run_id] = {}
        return train_params[run_id]

    rows: list[RunRow] = []
    for r in runs:
        tags, params = r.data.tags, r.data.params
        is_seed_child = tags.get(PARENT_TAG) in ids and SEED_TAG in tags
        if is_seed_child and not per_seed:
            continue
        values, stds = {}, {}
        for info in infos:
            value, std = _metric_value(r.data.metrics, info.name)
            if value is not None:
                values[info.name] = value
                if std is not None:
                    stds[info.name] = std
        if not values:
            continue
        label = model_label(params) or (
            model_label(params_of_train_run(params["train_run_id"])) if params.get("train_run_id") else ""
        )
        seeds = sorted(child_seeds.get(r.info.run_id, ())) or _seeds_from_params(params, tags)
        rows.append(
            RunRow(
                run_id=r.info.run_id,
                run_name=r.info.run_name or "",
                stage=tags.get("momorec.stage", ""),
                status=r.info.status,
                start_time=r.info.start_time,
                model=label,
                seeds=seeds,
                values=values,
                stds=stds,
            )
        )
    return Comparison(experiment=experiment, tracking_uri=uri, metrics=mark_best(infos, rows), runs=rows)


# ---- showing it -------------------------------------------------------------------------------


def render_table(comparison: Comparison):
    """A rich Table: one row per run, one column per metric, best per metric starred and green."""
    from rich.table import Table

    table = Table(
        title=f"MLflow experiment {comparison.experiment!r}: {len(comparison.runs)} runs",
        caption="★ best per metric (higher is better; ↓ marks lower-is-better); value = mean ± std over seeds",
    )
    table.add_column("run")
    table.add_column("stage")
    table.add_column("model", no_wrap=True)
    table.add_column("seeds")
    for info in comparison.metrics:
        arrow = "" if info.higher_is_better else " ↓"
        where = f"{info.split}\n{protocol_label(info)}" if info.split else "\n"
        table.add_column(f"{info.measure}{arrow}\n{where}", justify="right", no_wrap=True)
    for row in comparison.runs:
        cells = [
            f"{row.run_name} ({row.run_id[:8]})",
            row.stage,
            row.model or "-",
            ",".join(map(str, row.seeds)) or "-",
        ]
        for info in comparison.metrics:
            if info.name not in row.values:
                cells.append("-")
                continue
            text = f"{row.values[info.name]:.4f}"
            if info.name in row.stds:
                text += f" ± {row.stds[info.name]:.4f}"
            if row.run_id in info.best_run_ids:
                text = f"[bold green]{text} ★[/bold green]"
            cells.append(text)
        table.add_row(*cells)
    return table


def plot(comparison: Comparison, path: str) -> str:
    """Grouped bar chart (one group per metric, one bar per run, std as error bars) written as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    metrics, runs = comparison.metrics, comparison.runs
    if not metrics or not runs:
        raise CompareError("nothing to plot: no run logged the selected metrics")
    width = 0.8 / len(runs)
    x = np.arange(len(metrics))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(metrics) + 0.3 * len(runs)), 4.5))
    for i, row in enumerate(runs):
        heights = [row.values.get(m.name, np.nan) for m in metrics]
        errors = [row.stds.get(m.name, 0.0) for m in metrics]
        label = f"{row.run_name} ({row.run_id[:8]})" + (f" · {row.model}" if row.model else "")
        ax.bar(x - 0.4 + width * (i + 0.5), heights, width, yerr=errors, capsize=2, label=label)
    ax.set_xticks(
        x, [f"{m.measure}\n{m.split} · {protocol_label(m)}" if m.split else m.measure for m in metrics], fontsize=8
    )
    ax.set_ylabel("value (mean over seeds)")
    ax.set_title(f"MLflow experiment {comparison.experiment!r}")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    log.info("comparison plot written to %s", path)
    return path


def to_json(comparison: Comparison) -> str:
    return comparison.model_dump_json()
