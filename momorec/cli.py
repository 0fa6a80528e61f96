"""The `momorec` command: one sub-command per stage. Thin: parse, build the config, call one function."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from momorec import progress
from momorec.config import ConfigError, PlatformConfig, load_config
from momorec.pipeline import PipelineResult, run_one_stage, run_pipeline, stage_function
from momorec.progress import stage_summary
from momorec.run_log import RunOutput, StageFailed, captured, one_line, record_failure
from momorec.typed import StageResult

if TYPE_CHECKING:
    from momorec.motivate.inspect import MotivationQuality

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    help="MoMoREC: motivation- and semantic-ID-aware recommendation.",
)
console = Console(stderr=True)

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="YAML config file (see configs/).")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set", "-s", help="Override a config key, e.g. --set ingest.kcore=5 (repeatable, applied in order)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as one JSON object on stdout.")]
VerboseOpt = Annotated[
    bool,
    typer.Option(
        "--verbose", "-v", help="Show Spark, Ray and LLM output and INFO logs here (else only in the log file)."
    ),
]


def _usage_error(as_json: bool, kind: str, message: str) -> typer.Exit:
    """A bad config or option, before anything ran: exit 2, as one JSON object with --json."""
    if as_json:
        sys.stdout.write(json.dumps({"error": f"{kind}: {message}", "stage": None, "log": None}) + "\n")
    else:
        console.print(f"[red]{kind}:[/red] {escape(message)}", highlight=False)
    return typer.Exit(code=2)


def _load(config: Path, overrides: list[str] | None, as_json: bool = False) -> PlatformConfig:
    try:
        return load_config(config, overrides or [])
    except ConfigError as exc:
        raise _usage_error(as_json, "config error", str(exc)) from exc


def _fail(as_json: bool, command: str, error: BaseException, out: RunOutput) -> typer.Exit:
    """One line (or one JSON object) saying what failed and why; the traceback is in the log file."""
    record_failure(error)
    stage = error.stage if isinstance(error, StageFailed) else command
    reason = one_line(error)
    if as_json:
        out.out.write(json.dumps({"error": reason, "stage": stage, "log": out.log_path}) + "\n")
    else:
        said = progress.console()
        said.print(f"[red]momorec {command} failed[/red] at {stage}: {reason}", highlight=False, soft_wrap=True)
        said.print(f"Full log: {out.log_path}", highlight=False, soft_wrap=True)
    return typer.Exit(code=1)


def _interrupted(as_json: bool, command: str, out: RunOutput) -> typer.Exit:
    """Exit 130 (the shell's code for SIGINT), said as one line or one JSON object."""
    logging.getLogger("momorec").warning("command %s interrupted", command)
    if as_json:
        out.out.write(json.dumps({"error": "interrupted", "stage": command, "log": out.log_path}) + "\n")
    else:
        said = progress.console()
        said.print(f"[red]momorec {command} interrupted[/red]", highlight=False, soft_wrap=True)
        said.print(f"Full log: {out.log_path}", highlight=False, soft_wrap=True)
    return typer.Exit(code=130)


def _execute(command: str, cfg: PlatformConfig, as_json: bool, verbose: bool, call) -> tuple[StageResult, RunOutput]:
    """Run `call()` with the libraries' output in the command's log file; print the result or one failure line."""
    with contextlib.ExitStack() as stack:
        try:
            out = stack.enter_context(captured(cfg.log_dir, command, verbose=verbose, show_progress=not as_json))
        except OSError as exc:  # no log file to hold a traceback, and nothing ran yet: one line, as for a bad config
            raise _usage_error(as_json, "log file error", f"cannot write in {cfg.log_dir}: {one_line(exc)}") from exc
        try:
            result = call()
        except Exception as exc:  # every failure: one line here, the traceback in the log
            raise _fail(as_json, command, exc, out) from exc
        except KeyboardInterrupt as exc:  # Ctrl-C or a scheduler's SIGINT: an outcome like any other
            raise _interrupted(as_json, command, out) from exc
        if as_json:
            out.out.write(result.model_dump_json() + "\n")
        else:
            _print_result(result, out)
        return result, out


def _print_result(result: StageResult, out: RunOutput) -> None:
    from momorec.motivate.inspect import MotivationQuality

    console_out = Console(file=out.out)
    if isinstance(result, PipelineResult):
        _print_pipeline(result, console_out, out.log_path)
        return
    if isinstance(result, MotivationQuality):
        _print_quality(result, console_out, out.log_path)
        return
    table = Table(title=f"momorec {result.stage}", show_header=False)
    for key, value in result.model_dump().items():
        shown = json.dumps(value, default=str) if isinstance(value, dict | list) else str(value)
        table.add_row(key, shown)
    console_out.print(table)
    console_out.print(f"Full log:       {out.log_path}", highlight=False, soft_wrap=True)


def _print_quality(result: MotivationQuality, out: Console, log_path: str) -> None:
    table = Table(title="momorec inspect: motivation and profile quality")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in result.metrics().items():
        table.add_row(name, f"{value:.4f}" if not value.is_integer() else f"{value:.0f}")
    out.print(table)
    for note in result.notes:
        out.print(f"Note: {note}", highlight=False, soft_wrap=True)
    out.print(f"MLflow run:     {result.mlflow_run_id}", highlight=False, soft_wrap=True)
    out.print(f"Full log:       {log_path}", highlight=False, soft_wrap=True)


def _print_pipeline(result: PipelineResult, out: Console, log_path: str) -> None:
    table = Table(title=f"momorec {result.stage}: {result.dataset}")
    table.add_column("stage")
    table.add_column("result")
    table.add_column("wall s", justify="right")
    for name, stage in result.stages.items():
        table.add_row(name, stage_summary(stage), f"{stage.get('wall_time_s') or 0:.1f}")
    out.print(table)
    out.print(f"Wall time:      {result.wall_time_s:.1f} s", highlight=False, soft_wrap=True)
    out.print(f"Delta tables:   {result.warehouse}", highlight=False, soft_wrap=True)
    out.print(
        f"MLflow run:     {result.mlflow_run_id} (experiment {result.experiment!r}, store {result.tracking_uri})",
        highlight=False,
        soft_wrap=True,
    )
    if result.tracking_uri.startswith("sqlite:"):
        out.print(
            f"Open the UI:    .venv/bin/mlflow ui --backend-store-uri {result.tracking_uri} --host 127.0.0.1",
            highlight=False,
            soft_wrap=True,
        )
    out.print(f"Full log:       {log_path}", highlight=False, soft_wrap=True)


def run_stage(name: str, config: Path, overrides: list[str] | None, as_json: bool, verbose: bool) -> StageResult:
    cfg = _load(config, overrides, as_json)
    stage_function(name)  # an unknown name fails before anything starts
    result, _ = _execute(name, cfg, as_json, verbose, lambda: run_one_stage(cfg, name, show_progress=not as_json))
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


@app.command("inspect")
def inspect_quality(
    config: ConfigOpt, set_: SetOpt = None, as_json: JsonOpt = False, verbose: VerboseOpt = False
) -> None:
    """Training-free quality of the motivations and item profiles (retrieval, grounding, specificity, review),
    logged to MLflow as quality.* in an `inspect` run."""
    from momorec.motivate.inspect import run_inspect

    cfg = _load(config, set_, as_json)
    _execute("inspect", cfg, as_json, verbose, lambda: run_inspect(cfg))


texts_app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    help="The agents' texts out of a warehouse (no embeddings) and back in, re-embedded without the LLM.",
)
app.add_typer(texts_app, name="texts")
FolderArg = Annotated[str, typer.Argument(help="Folder of the texts: a local path or s3:// gs:// abfss:// URI.")]


@texts_app.command("export")
def texts_export(
    folder: FolderArg, config: ConfigOpt, set_: SetOpt = None, as_json: JsonOpt = False, verbose: VerboseOpt = False
) -> None:
    """Write item_profiles and user_motivations texts as Parquet, with a manifest of their settings."""
    from momorec.motivate.texts import export_texts

    cfg = _load(config, set_, as_json)
    _execute("texts-export", cfg, as_json, verbose, lambda: export_texts(cfg, folder))


@texts_app.command("import")
def texts_import(
    folder: FolderArg, config: ConfigOpt, set_: SetOpt = None, as_json: JsonOpt = False, verbose: VerboseOpt = False
) -> None:
    """Embed exported texts with the config's embedder into this warehouse; `motivate` then skips them."""
    from momorec.motivate.texts import import_texts
    from momorec.storage import lease

    cfg = _load(config, set_, as_json)

    def call() -> StageResult:
        with lease.held(cfg, "texts-import"):
            return import_texts(cfg, folder)

    _execute("texts-import", cfg, as_json, verbose, call)


@app.command("run")
def run(config: ConfigOpt, set_: SetOpt = None, as_json: JsonOpt = False, verbose: VerboseOpt = False) -> None:
    """The whole pipeline (the config's pipeline.stages) under one parent MLflow run; unchanged stages are skipped."""
    cfg = _load(config, set_, as_json)
    _execute("run", cfg, as_json, verbose, lambda: run_pipeline(cfg, show_progress=not as_json))


@app.command("refresh")
def refresh(
    config: ConfigOpt,
    new_logs: Annotated[
        list[str], typer.Option("--new-logs", "-n", help="The night's event log (file, folder or glob); repeatable.")
    ],
    log_format: Annotated[str, typer.Option("--format", help="auto | csv | tsv | parquet | jsonl | recbole")] = "auto",
    user_col: Annotated[str, typer.Option(help="User column of the new logs.")] = "user",
    item_col: Annotated[str, typer.Option(help="Item column of the new logs.")] = "item",
    timestamp_col: Annotated[
        str, typer.Option(help="Timestamp column of the new logs ('' = file order).")
    ] = "timestamp",
    set_: SetOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """The nightly job: ingest new logs, redo only what they change, warm-start, promote, re-recommend."""
    from pydantic import ValidationError

    from momorec.ingest.config import EventSource
    from momorec.refresh import run_refresh

    cfg = _load(config, set_, as_json)
    try:
        source = EventSource(
            path=new_logs[0],
            format=log_format,
            user_col=user_col,
            item_col=item_col,
            timestamp_col=timestamp_col or None,
        )
    except ValidationError as exc:
        raise _usage_error(as_json, "bad new-log options", str(exc)) from exc
    _execute(
        "refresh", cfg, as_json, verbose, lambda: run_refresh(cfg, new_logs, show_progress=not as_json, source=source)
    )


@app.command("config")
def show_config(config: ConfigOpt, set_: SetOpt = None) -> None:
    """Print the fully resolved config (defaults + file + overrides) as YAML."""
    import yaml

    cfg = _load(config, set_)
    sys.stdout.write(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))


from momorec.platform.cli_commands import register as register_platform_commands  # noqa: E402

register_platform_commands(app)


def main(argv: list[str] | None = None) -> None:
    """The console entry: `app`, with the outcomes its parser would print as text kept to the contract too.

    With --json a usage error (an unknown option, a missing --config) is one JSON object and exit 2, and
    an interrupt (Ctrl-C, SIGINT from a scheduler) is one JSON object and exit 130, like every other
    outcome; an error that escaped every handler is one JSON object and exit 1. Without --json the parser
    prints its own message, and an escaped error keeps typer's traceback, which never shows local variables.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    as_json = "--json" in args

    def said(error: str, code: int) -> None:
        sys.stdout.write(json.dumps({"error": error, "stage": None, "log": None}) + "\n")
        sys.stdout.flush()
        sys.exit(code)

    try:
        code = app(args=args, prog_name="momorec", standalone_mode=False)
    except (KeyboardInterrupt, typer.Abort):
        if as_json:
            said("interrupted", 130)
        console.print("[red]interrupted[/red]", highlight=False)
        sys.exit(130)
    except typer.TyperException as exc:  # the parser's errors (usage: exit code 2)
        if as_json:
            said(f"{'usage error' if exc.exit_code == 2 else 'error'}: {exc.format_message()}", exc.exit_code)
        exc.show()
        sys.exit(exc.exit_code)
    except Exception as exc:
        if as_json:
            said(one_line(exc), 1)
        raise
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
