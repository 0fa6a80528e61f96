"""The `momorec` command: one sub-command per stage. Thin: parse, build the config, call one function."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from momorec.config import ConfigError, PlatformConfig, load_config
from momorec.pipeline import run_pipeline, stage_function
from momorec.typed import StageResult

app = typer.Typer(add_completion=False, no_args_is_help=True, help="MoMoREC: motivation- and semantic-ID-aware recommendation.")
console = Console(stderr=True)

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="YAML config file (see configs/).")]
SetOpt = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", help="Override a config key, e.g. --set ingest.kcore=5 (repeatable, applied in order)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as one JSON object on stdout.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO level.")]


def _load(config: Path, overrides: list[str] | None) -> PlatformConfig:
    try:
        return load_config(config, overrides or [])
    except ConfigError as exc:
        console.print(f"[red]config error:[/red] {exc}")
        raise typer.Exit(code=2) from exc


def _print_result(result: StageResult, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(result.model_dump_json() + "\n")
        return
    table = Table(title=f"momorec {result.stage}", show_header=False)
    for key, value in result.model_dump().items():
        shown = json.dumps(value, default=str) if isinstance(value, dict | list) else str(value)
        table.add_row(key, shown)
    Console().print(table)


def run_stage(name: str, config: Path, overrides: list[str] | None, as_json: bool, verbose: bool) -> StageResult:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr)
    cfg = _load(config, overrides)
    func = stage_function(name)
    try:
        result = func(cfg, show_progress=not as_json)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        console.print(f"[red]{name} failed:[/red] {exc}")
        raise typer.Exit(code=1) from exc
    _print_result(result, as_json)
    return result


def _make_stage_command(name: str, doc: str) -> None:
    def command(config: ConfigOpt, set_: SetOpt = None, as_json: JsonOpt = False, verbose: VerboseOpt = False) -> None:
        run_stage(name, config, set_, as_json, verbose)

    command.__doc__ = doc
    app.command(name=name)(command)


_make_stage_command("ingest", "Spark ingest of behaviour logs and the catalog into Delta tables.")
_make_stage_command("motivate", "LLM agents: item profiles, user motivations and their embeddings.")
_make_stage_command("quantize", "Residual semantic IDs for items and users (PCA + residual k-means).")
_make_stage_command("train", "Fit a sequential recommender (SASRec / GRU4Rec / BERT4Rec) with Ray Train.")
_make_stage_command("evaluate", "Leave-one-out evaluation: full ranking (and labelled sampled-100).")
_make_stage_command("recommend", "Top-K recommendations per user, explained by the user's motivation, into Delta.")


def _run_pipeline_command(cfg: PlatformConfig, as_json: bool, call) -> None:
    try:
        result = call()
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        console.print(f"[red]pipeline failed:[/red] {exc}")
        raise typer.Exit(code=1) from exc
    if as_json:
        sys.stdout.write(result.model_dump_json() + "\n")
        return
    out = Console()
    table = Table(title=f"momorec {result.stage}: {cfg.dataset}")
    table.add_column("stage")
    table.add_column("result")
    table.add_column("wall s", justify="right")
    for name, stage in result.stages.items():
        table.add_row(name, summarize(stage), f"{stage.get('wall_time_s') or 0:.1f}")
    out.print(table)
    out.print(f"Wall time:      {result.wall_time_s:.1f} s")
    out.print(f"Delta tables:   {result.warehouse}")
    out.print(f"MLflow run:     {result.mlflow_run_id} (experiment {result.experiment!r}, store {result.tracking_uri})")
    if result.tracking_uri.startswith("sqlite:"):
        out.print(f"Open the UI:    .venv/bin/mlflow ui --backend-store-uri {result.tracking_uri} --host 127.0.0.1")


@app.command("run")
def run(config: ConfigOpt, set_: SetOpt = None, as_json: JsonOpt = False, verbose: VerboseOpt = False) -> None:
    """The whole pipeline (the config's pipeline.stages) under one parent MLflow run; unchanged stages are skipped."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr)
    cfg = _load(config, set_)
    _run_pipeline_command(cfg, as_json, lambda: run_pipeline(cfg, show_progress=not as_json))


@app.command("refresh")
def refresh(
    config: ConfigOpt,
    new_logs: Annotated[list[str], typer.Option("--new-logs", "-n", help="The night's event log (file, folder or glob); repeatable.")],
    log_format: Annotated[str, typer.Option("--format", help="auto | csv | tsv | parquet | jsonl | recbole")] = "auto",
    user_col: Annotated[str, typer.Option(help="User column of the new logs.")] = "user",
    item_col: Annotated[str, typer.Option(help="Item column of the new logs.")] = "item",
    timestamp_col: Annotated[str, typer.Option(help="Timestamp column of the new logs ('' = file order).")] = "timestamp",
    set_: SetOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """The nightly job: ingest new logs, redo only what they change, warm-start, promote, re-recommend."""
    from pydantic import ValidationError

    from momorec.ingest.config import EventSource
    from momorec.refresh import run_refresh

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr)
    cfg = _load(config, set_)
    try:
        source = EventSource(path=new_logs[0], format=log_format, user_col=user_col, item_col=item_col,
                             timestamp_col=timestamp_col or None)
    except ValidationError as exc:
        console.print(f"[red]bad new-log options:[/red] {exc}")
        raise typer.Exit(code=2) from exc
    _run_pipeline_command(cfg, as_json, lambda: run_refresh(cfg, new_logs, show_progress=not as_json, source=source))


def summarize(stage: dict) -> str:
    """The figures a person looks at first, per stage result."""
    if stage.get("skipped"):
        return f"skipped: {stage.get('reason', 'unchanged')}"
    if stage.get("stage") == "promote":
        return (f"v{stage.get('candidate_version')} -> @{stage.get('decision')} "
                f"(valid NDCG@10 {stage.get('candidate_valid_ndcg_10')} vs champion {stage.get('champion_valid_ndcg_10')})")
    keys = ("users", "items", "interactions", "rows_rejected", "users_processed", "items_processed", "users_ok",
            "users_failed", "levels", "best_epoch", "valid", "metrics", "model_version")
    parts = []
    for key in keys:
        if key in stage and stage[key] not in (None, {}, []):
            value = stage[key]
            if isinstance(value, dict):
                value = ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in list(value.items())[:6])
            parts.append(f"{key}={value}")
    if stage.get("unchanged"):
        parts.append("unchanged")
    return "; ".join(parts)


@app.command("config")
def show_config(config: ConfigOpt, set_: SetOpt = None) -> None:
    """Print the fully resolved config (defaults + file + overrides) as YAML."""
    import yaml

    cfg = _load(config, set_)
    sys.stdout.write(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))


from momorec.platform.cli_commands import register as register_platform_commands  # noqa: E402

register_platform_commands(app)

if __name__ == "__main__":
    app()
