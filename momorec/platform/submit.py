"""Submit a `momorec` command to a Ray cluster through the Ray Jobs API, and follow it.

    momorec submit train --config configs/beauty.yaml --address http://HEAD:8265 --follow

The job's entrypoint is the same CLI a person runs locally (`python -m momorec.cli <command> --config
... --set ...`), started by the cluster in a runtime environment: this repository as `working_dir`
(uploaded, minus the excludes and .gitignore'd files) or the package baked into the cluster image,
selected environment variables (MLflow's tracking URI...), and optional pip packages / py_modules.

Ray 2.60 clusters authenticate the Jobs API with a bearer token (momorec.platform.auth): the token is
sent as a header and never reaches a message, a log line or the job's runtime environment. Errors
come back as `SubmitError` with a message a person can act on (wrong token, no token, head
unreachable), never a stack trace.

API: ray.job_submission.JobSubmissionClient (submit_job, get_job_status, get_job_info,
tail_job_logs), docs.ray.io/en/latest/cluster/running-applications/job-submission/sdk.html.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, Field

from momorec.platform.auth import TOKEN_ENV, TOKEN_PATH_ENV, RayToken, redact
from momorec.typed import StrictModel

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
# Never uploaded: local outputs and environments (Ray also honours .gitignore in working_dir).
DEFAULT_EXCLUDES = [
    ".git",
    ".venv",
    "warehouse",
    "mlruns",
    "mlartifacts",
    "mlflow.db",
    "mlflow-server",
    "**/__pycache__",
    "*.pyc",
    ".pytest_cache",
    "*.egg-info",
    ".cache",
]
# Passed through to the job when set here: where the job's MLflow runs go.
DEFAULT_PASS_ENV = ["MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_DISABLE_TELEMETRY"]
# The runtime environment is readable by anyone with dashboard access: no credentials in it.
FORBIDDEN_ENV = {TOKEN_ENV, TOKEN_PATH_ENV}
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


class SubmitError(RuntimeError):
    """Submission failed before or while talking to the cluster; the message is safe to print."""


class SubmitOptions(StrictModel):
    """Where and how a job runs; `momorec submit` fills it from its options."""

    address: str = Field(description="Ray dashboard (Jobs API) URL of the head, e.g. http://HEAD:8265.")
    working_dir: str | None = Field(
        str(REPO_ROOT),
        description="Folder uploaded as the job's working dir; None = run the package in the cluster image.",
    )
    excludes: list[str] = Field(
        default_factory=lambda: list(DEFAULT_EXCLUDES), description="working_dir paths not uploaded."
    )
    pass_env: list[str] = Field(
        default_factory=lambda: list(DEFAULT_PASS_ENV),
        description="Environment variables copied to the job when set here.",
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="Further environment variables of the job (NAME: value)."
    )
    pip: list[str] = Field(
        default_factory=list, description="pip requirements installed for the job (runtime_env pip)."
    )
    py_modules: list[str] = Field(
        default_factory=list, description="Local modules/wheels shipped with the job (runtime_env py_modules)."
    )
    entrypoint_num_cpus: float | None = Field(
        None, ge=0, description="CPUs reserved for the driver process (None = Ray's default, 0)."
    )
    entrypoint_num_gpus: float | None = Field(None, ge=0, description="GPUs reserved for the driver process.")
    submission_id: str | None = Field(
        None, description="Job id to use (e.g. refresh-2026-05-01: a second submit is refused)."
    )
    python: str = Field("python", description="Interpreter on the cluster that runs `-m momorec.cli`.")


class JobOutcome(BaseModel):
    """What `momorec submit` reports."""

    model_config = ConfigDict(extra="forbid")

    job_id: str
    address: str
    entrypoint: str
    status: str | None = Field(
        None, description="Ray job status after --follow (SUCCEEDED, FAILED, STOPPED); None when not followed."
    )
    message: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status in (None, "SUCCEEDED")


# ---- building the job -------------------------------------------------------------------------


def stage_entrypoint(
    command: str,
    config: str,
    overrides: list[str] | None = None,
    extra: list[str] | None = None,
    python: str = "python",
) -> str:
    """The shell command the cluster runs.

    `python -m momorec.cli <command> --config <config> [--set k=v]... [extra]`
    """
    args = [python, "-m", "momorec.cli", command, "--config", config]
    for override in overrides or []:
        args += ["--set", override]
    return shlex.join(args + list(extra or []))


def job_config_path(config: str | os.PathLike[str], working_dir: str | None) -> str:
    """The config path as the job sees it: relative to the uploaded working dir.

    A local file outside `working_dir` would not exist on the cluster, so that is an error.
    """
    path = Path(config).resolve()
    if working_dir is None:
        return str(config)
    root = Path(working_dir).resolve()
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        raise SubmitError(
            f"config {config} is outside the uploaded working dir {root}; move it there or pass "
            "--remote-config with a path that exists on the cluster"
        ) from None


def runtime_env(
    opts: SubmitOptions, token: RayToken | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The job's runtime_env dict: working_dir + excludes, env_vars, pip, py_modules."""
    environ = os.environ if environ is None else environ
    env_vars = {name: environ[name] for name in opts.pass_env if environ.get(name)}
    env_vars.update(opts.env)
    secret = token.secret.get_secret_value() if token else None
    for name, value in env_vars.items():
        if name in FORBIDDEN_ENV or (secret and secret in value):
            raise SubmitError(
                f"environment variable {name} would put the Ray token into the job's runtime environment "
                "(visible in the dashboard); the cluster's nodes have their own token"
            )
    uri = env_vars.get("MLFLOW_TRACKING_URI", "")
    if uri.startswith(("sqlite:", "file:")) or (uri and "://" not in uri):
        log.warning("MLFLOW_TRACKING_URI is a local store (%s); the job writes to the cluster's disk, not yours", uri)
    env: dict[str, Any] = {}
    if opts.working_dir is not None:
        env["working_dir"] = str(Path(opts.working_dir).resolve())
        env["excludes"] = list(opts.excludes)
    if env_vars:
        env["env_vars"] = env_vars
    if opts.pip:
        env["pip"] = list(opts.pip)
    if opts.py_modules:
        env["py_modules"] = [str(Path(m).resolve()) if os.path.exists(m) else m for m in opts.py_modules]
    return env


# ---- talking to the cluster -------------------------------------------------------------------


@contextlib.contextmanager
def _cluster_errors(address: str, token: RayToken | None) -> Iterator[None]:
    """Turn the Jobs API's exceptions into SubmitError messages that say what to do, token redacted."""
    from ray.exceptions import AuthenticationError

    try:
        yield
    except SubmitError:
        raise
    except AuthenticationError as exc:
        rejected = "failed" in str(exc.message).lower() or "403" in str(exc.message)
        if rejected and token is not None:
            text = (
                f"the Ray cluster at {address} rejected the token from {token.source} (HTTP 403): it is not "
                "this cluster's token. Use the cluster's token (`ray get-auth-token` on the head, or its secret)."
            )
        elif token is not None:
            text = f"the Ray cluster at {address} did not accept the token from {token.source}."
        else:
            text = (
                f"the Ray cluster at {address} requires a token (token authentication is on) and none was found: "
                f"set {TOKEN_ENV}, or {TOKEN_PATH_ENV} / --token-file to a file holding it, or put it in "
                "~/.ray/auth_token."
            )
        raise SubmitError(text) from None
    except ConnectionError:
        raise SubmitError(
            f"cannot reach the Ray dashboard at {address}: is the head running and its dashboard port "
            "(8265 by default) reachable from here?"
        ) from None
    except (RuntimeError, ValueError) as exc:
        raise SubmitError(f"the Ray Jobs API at {address} refused the request: {redact(str(exc), token)}") from None


def connect(address: str, token: RayToken | None):
    """A JobSubmissionClient for `address`, sending the token as `Authorization: Bearer ...`."""
    from ray.job_submission import JobSubmissionClient

    with _cluster_errors(address, token):
        return JobSubmissionClient(address, headers=token.headers() if token else None)


def submit_entrypoint(
    client,
    entrypoint: str,
    opts: SubmitOptions,
    token: RayToken | None = None,
    metadata: Mapping[str, str] | None = None,
) -> str:
    """Submit one entrypoint; returns the Ray job (submission) id."""
    env = runtime_env(opts, token)
    with _cluster_errors(opts.address, token):
        job_id = client.submit_job(
            entrypoint=entrypoint,
            runtime_env=env,
            submission_id=opts.submission_id,
            metadata=dict(metadata or {}),
            entrypoint_num_cpus=opts.entrypoint_num_cpus,
            entrypoint_num_gpus=opts.entrypoint_num_gpus,
        )
    log.info("submitted %s to %s: %s", job_id, opts.address, entrypoint)
    return job_id


class RedactingWriter:
    """Writes text with the token masked, also when the token is split across two chunks."""

    def __init__(self, out: IO[str], token: RayToken | None) -> None:
        self._out = out
        self._secret = token.secret.get_secret_value() if token else ""
        self._pending = ""

    def write(self, text: str) -> None:
        if not self._secret:
            self._out.write(text)
            return
        buffer = (self._pending + text).replace(self._secret, "***")
        hold = 0
        for size in range(min(len(self._secret) - 1, len(buffer)), 0, -1):
            if self._secret.startswith(buffer[-size:]):
                hold = size
                break
        self._pending = buffer[len(buffer) - hold :] if hold else ""
        self._out.write(buffer[: len(buffer) - hold])
        self._out.flush()

    def close(self) -> None:
        self._out.write(self._pending)
        self._pending = ""
        self._out.flush()


def wait_for_job(client, job_id: str, timeout_s: float = 600.0, poll_s: float = 1.0) -> str:
    """Poll until the job is SUCCEEDED / FAILED / STOPPED; returns that status."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = str(client.get_job_status(job_id).value)
        if status in TERMINAL:
            return status
        if time.monotonic() > deadline:
            raise SubmitError(f"job {job_id} still {status} after {timeout_s:.0f} s")
        time.sleep(poll_s)


def follow(
    client, job_id: str, out: IO[str], token: RayToken | None = None, address: str = ""
) -> tuple[str, str | None]:
    """Stream the job's logs to `out` (token masked) until it ends; returns (status, Ray's message)."""

    async def stream(writer: RedactingWriter) -> None:
        async for chunk in client.tail_job_logs(job_id):
            writer.write(chunk)

    writer = RedactingWriter(out, token)
    with _cluster_errors(address, token):
        try:
            asyncio.run(stream(writer))
        except RuntimeError as exc:  # the log stream dropped; the job itself may still be running
            log.warning("log stream of %s ended early (%s); polling its status", job_id, redact(str(exc), token))
        finally:
            writer.close()
        status = wait_for_job(client, job_id)
        message = client.get_job_info(job_id).message
    return status, redact(message, token) if message else None


def submit_command(
    command: str,
    config: str,
    opts: SubmitOptions,
    token: RayToken | None = None,
    overrides: list[str] | None = None,
    extra: list[str] | None = None,
    follow_logs: bool = False,
    out: IO[str] | None = None,
    on_submitted: Callable[[str], None] | None = None,
) -> JobOutcome:
    """Submit `momorec <command> --config <config>` (the path as the cluster sees it); optionally follow it.

    `on_submitted(job_id)` runs as soon as the cluster has accepted the job (before following).
    """
    entrypoint = stage_entrypoint(command, config, overrides, extra, python=opts.python)
    client = connect(opts.address, token)
    job_id = submit_entrypoint(
        client, entrypoint, opts, token, metadata={"momorec.command": command, "momorec.config": config}
    )
    if on_submitted is not None:
        on_submitted(job_id)
    outcome = JobOutcome(job_id=job_id, address=opts.address, entrypoint=entrypoint)
    if follow_logs:
        status, message = follow(client, job_id, out or sys.stdout, token, opts.address)
        outcome = outcome.model_copy(update={"status": status, "message": message})
    return outcome
