"""The `momorec` command: one sub-command per stage. Thin: parse, build the config, call one function."""

from __future__ import annotations

import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from momorec.config import ConfigError, PlatformConfig, load_config
from momorec.typed import StageResult

app = typer.Typer(add_completion=False, no_args_is_help=True, help="MoMoREC: motivation- and semantic-ID-aware recommendation.")
console = Console(stderr=True)

# Each stage is `run(cfg, progress) -> StageResult` in its own package; imported lazily so that
# `momorec ingest` does not pay for torch or vLLM.
STAGES: dict[str, str] = {
    "ingest": "momorec.ingest.stage:run_ingest",
    "motivate": "momorec.agents.stage:run_motivate",
    "quantize": "momorec.semantic_ids.stage:run_quantize",
    "train": "momorec.training.stage:run_train",
    "evaluate": "momorec.evaluation.stage:run_evaluate",
}

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


def _stage_function(name: str):
    module_name, func_name = STAGES[name].split(":")
    return getattr(importlib.import_module(module_name), func_name)


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
    func = _stage_function(name)
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


@app.command("config")
def show_config(config: ConfigOpt, set_: SetOpt = None) -> None:
    """Print the fully resolved config (defaults + file + overrides) as YAML."""
    import yaml

    cfg = _load(config, set_)
    sys.stdout.write(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))


if __name__ == "__main__":
    app()
