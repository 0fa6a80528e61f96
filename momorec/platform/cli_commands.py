"""The `momorec submit` and `momorec compare` commands. Thin: parse, build options, call momorec.platform.

They join the main CLI with `register(app)` (momorec/cli.py); until then they also run on their own:
`python -m momorec.platform.cli_commands submit ...` / `... compare ...`.

Exit codes of `submit`: 0 submitted (with --follow: the job SUCCEEDED), 1 the followed job FAILED or
was STOPPED, 2 nothing was submitted (bad config, no/wrong token, head unreachable).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from momorec.config import ConfigError, TrackingConfig, load_config
from momorec.platform import auth
from momorec.platform import compare as comparing
from momorec.platform import overlay as overlays
from momorec.platform import submit as submitting
from momorec.storage.locations import is_uri

console = Console(stderr=True)
log = logging.getLogger(__name__)
NOT_SUBMITTABLE = {"submit", "compare"}


def _registered_commands() -> list[str]:
    """Names of the momorec CLI's commands (what a job may run), read from the typer app itself."""
    from momorec.cli import app as main_app

    names = []
    for info in main_app.registered_commands:
        name = info.name or (info.callback.__name__.replace("_", "-") if info.callback else None)
        if name and name not in NOT_SUBMITTABLE:
            names.append(name)
    return names


def _fail(message: str, code: int = 2) -> typer.Exit:
    console.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code=code)


def _quiet_ray(verbose: bool) -> None:
    """Ray's client logs packaging details at INFO and warns about its default excludes on every upload."""
    import ray.job_submission  # noqa: F401  (ray sets up its loggers on import)

    logging.getLogger("ray").setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("ray._private.runtime_env.working_dir").setLevel(logging.INFO if verbose else logging.ERROR)


def _split_env(items: list[str]) -> tuple[list[str], dict[str, str]]:
    """`--env NAME` passes the local value through; `--env NAME=VALUE` sets it."""
    names, values = [], {}
    for item in items:
        if "=" in item:
            key, value = item.split("=", 1)
            values[key.strip()] = value
        else:
            names.append(item.strip())
    return names, values


def submit(
    command: Annotated[str, typer.Argument(help="momorec command the job runs: a stage, run, refresh, recommend...")],
    config: Annotated[Path, typer.Option("--config", "-c", help="YAML config (inside the uploaded working dir).")],
    extra: Annotated[
        list[str] | None, typer.Argument(help="Further arguments of that command, after `--`: -- --new-logs s3://...")
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            "--address", "-a", envvar="RAY_API_SERVER_ADDRESS", help="Jobs API of the head: http://HEAD:8265."
        ),
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", "-s", help="Config override section.key=value (repeatable).")
    ] = None,
    overlay: Annotated[
        list[Path] | None,
        typer.Option("--overlay", help="Partial config YAML applied before --set, e.g. infra/spark-cluster.yaml."),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Stream the job's logs until it ends; exit 1 if it failed.")
    ] = False,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            help="File holding the cluster token (else $RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token).",
        ),
    ] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="NAME (pass the local value) or NAME=VALUE for the job.")
    ] = None,
    pip: Annotated[
        list[str] | None, typer.Option("--pip", help="pip requirement installed for the job (repeatable).")
    ] = None,
    py_module: Annotated[
        list[str] | None, typer.Option("--py-module", help="Local module or wheel shipped with the job.")
    ] = None,
    working_dir: Annotated[
        Path | None,
        typer.Option("--working-dir", help="Folder uploaded as the job's working dir (default: this repository)."),
    ] = None,
    no_upload: Annotated[
        bool, typer.Option("--no-upload", help="Upload nothing: run the momorec installed in the cluster image.")
    ] = False,
    remote_config: Annotated[
        bool, typer.Option("--remote-config", help="--config is a path on the cluster: not checked here.")
    ] = False,
    num_cpus: Annotated[
        float | None, typer.Option("--entrypoint-num-cpus", help="CPUs reserved for the driver.")
    ] = None,
    num_gpus: Annotated[
        float | None, typer.Option("--entrypoint-num-gpus", help="GPUs reserved for the driver.")
    ] = None,
    submission_id: Annotated[
        str | None, typer.Option("--submission-id", help="Job id (a second submit with it is refused).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the entrypoint and runtime env as JSON; submit nothing.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the outcome as one JSON object (logs go to stderr).")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO level.")] = False,
) -> None:
    """Submit a momorec command to a Ray cluster through the Ray Jobs API (token auth aware)."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr)
    _quiet_ray(verbose)
    if not address:
        raise _fail("no Ray address: pass --address http://HEAD:8265 or set RAY_API_SERVER_ADDRESS")
    known = _registered_commands()
    if command not in known:
        raise _fail(f"unknown momorec command {command!r}; known: {', '.join(known)}")
    upload_dir = None if no_upload else str((working_dir or submitting.REPO_ROOT).resolve())
    try:
        overrides = [s for path in overlay or [] for s in overlays.overlay_sets(path)] + list(set_ or [])
        if remote_config:
            job_config = str(config)
        else:
            checked = load_config(config, overrides)  # fail here, not on the cluster
            if not is_uri(checked.warehouse):
                log.warning(
                    "warehouse %r is a path: the job resolves it on the cluster, against the job's own working "
                    "folder, which is gone when the job ends; use an object-store URI (s3://, gs://, abfss://) "
                    "or a path every node mounts",
                    checked.warehouse,
                )
            job_config = submitting.job_config_path(config, upload_dir)
        token = auth.resolve_token(token_file)
    except (ConfigError, auth.TokenError, submitting.SubmitError) as exc:
        raise _fail(str(exc)) from None

    pass_names, env_values = _split_env(env or [])
    try:
        opts = submitting.SubmitOptions(
            address=address,
            working_dir=upload_dir,
            pass_env=submitting.DEFAULT_PASS_ENV + pass_names,
            env=env_values,
            pip=pip or [],
            py_modules=py_module or [],
            entrypoint_num_cpus=num_cpus,
            entrypoint_num_gpus=num_gpus,
            submission_id=submission_id,
        )
        if dry_run:
            plan = {
                "address": address,
                "runtime_env": submitting.runtime_env(opts, token),
                "entrypoint": submitting.stage_entrypoint(command, job_config, overrides, extra, python=opts.python),
                "token_source": token.source if token else None,
            }
            sys.stdout.write(json.dumps(plan, indent=None if as_json else 2) + "\n")
            return

        def announce(job_id: str) -> None:
            if as_json:
                return
            sys.stdout.write(f"submitted job {job_id} to {address}\n")
            sys.stdout.flush()
            console.print(
                f"  logs: ray job logs {job_id} --address {address} --follow\n"
                f"  stop: ray job stop {job_id} --address {address}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )

        outcome = submitting.submit_command(
            command,
            job_config,
            opts,
            token,
            overrides,
            extra,
            follow_logs=follow,
            out=sys.stderr if as_json else sys.stdout,
            on_submitted=announce,
        )
    except submitting.SubmitError as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        console.print("stopped following; the job keeps running on the cluster", highlight=False)
        raise typer.Exit(code=130) from None
    except Exception as exc:  # a security boundary: whatever Ray raises, show it with the token masked, no traceback
        raise _fail(f"{type(exc).__name__}: {auth.redact(str(exc), token)}") from None

    if as_json:
        sys.stdout.write(outcome.model_dump_json() + "\n")
    elif follow:
        colour = "green" if outcome.succeeded else "red"
        console.print(
            f"job {outcome.job_id}: [{colour}]{outcome.status}[/{colour}]"
            + (f" ({escape(outcome.message)})" if outcome.message else ""),
            highlight=False,
            soft_wrap=True,
        )
    if not outcome.succeeded:
        raise typer.Exit(code=1)


def compare(
    experiment: Annotated[str, typer.Option("--experiment", "-e", help="MLflow experiment name.")],
    metric: Annotated[
        list[str] | None,
        typer.Option("--metric", "-m", help="Metric, e.g. test.full.ndcg_10 (repeatable; default: the headline ones)."),
    ] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a bar chart PNG here.")] = None,
    tracking_uri: Annotated[
        str | None,
        typer.Option("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, else ./mlflow.db)."),
    ] = None,
    per_seed: Annotated[bool, typer.Option("--per-seed", help="Also list the per-seed nested runs.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as one JSON object.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO level.")] = False,
) -> None:
    """Compare runs of an MLflow experiment: metrics side by side, best per metric, protocol and seeds."""
    from momorec.tracking import tracking_uri as default_uri

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr)
    uri = tracking_uri or default_uri(TrackingConfig())
    try:
        result = comparing.collect(experiment, metric or None, uri, per_seed=per_seed)
        if plot is not None:
            comparing.plot(result, str(plot))
    except comparing.CompareError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        sys.stdout.write(comparing.to_json(result) + "\n")
        return
    out = Console()
    (out if out.is_terminal else Console(width=200)).print(comparing.render_table(result))  # pipes: no wrapping
    if plot is not None:
        console.print(f"plot: {plot}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add `submit` and `compare` to a typer app (the momorec CLI)."""
    app.command("submit")(submit)
    app.command("compare")(compare)


app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    help="MoMoREC platform commands: submit to a Ray cluster, compare MLflow runs.",
)
register(app)

if __name__ == "__main__":
    app()
