"""One command's output: the platform's own lines on the terminal, everything else in a log file.

Spark (its JVM prints to the process's stderr), Ray's core workers (C++ lines such as `E core_worker`),
Ray Data's progress and vLLM's INFO lines all write to file descriptors 1 and 2, many of them from
child processes that inherit those descriptors. So the redirect is done at the descriptor level
(`os.dup2`), before any of them starts: the log file then holds every line, and the terminal keeps
only the stage lines, the progress bars and the result. `--verbose` leaves the descriptors alone.

A failure becomes one line that names the stage and the reason; the traceback goes to the log file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from rich.console import Console

from momorec import progress

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class StageFailed(RuntimeError):
    """A pipeline stage raised; `stage` names it and `reason` is the one-line cause."""

    def __init__(self, stage: str, error: BaseException) -> None:
        self.stage = stage
        self.reason = one_line(error)
        super().__init__(f"stage {stage} failed: {self.reason}")


def one_line(error: BaseException) -> str:
    """`Type: message` on one line. A Ray error holds the remote traceback; its last line is the cause."""
    if isinstance(error, StageFailed):
        return error.reason
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    name = type(error).__name__
    if not lines:
        return name
    last = lines[-1]
    head = last.split(":", 1)[0]
    return last if len(lines) > 1 and head.isidentifier() and head[0].isupper() else f"{name}: {last}"


@dataclass
class RunOutput:
    """Where a command writes: `out` is the real stdout (results), `log_path` the full log."""

    out: IO[str]
    log_path: str
    verbose: bool


def log_file_path(log_dir: str, command: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return os.path.join(log_dir, f"{command}-{stamp}-{os.getpid()}.log")


@contextlib.contextmanager
def captured(log_dir: str, command: str, verbose: bool = False, show_progress: bool = True) -> Iterator[RunOutput]:
    """Run the body with descriptors 1 and 2 sent to a new log file (unless `verbose`).

    Yields a RunOutput whose `out` is the terminal's stdout; progress is drawn on the terminal's stderr.
    On exit a Ray that the body started is shut down while the redirect still holds, so its shutdown
    chatter stays in the log; a Ray that was up before (a notebook's, a test session's) is left running.
    """
    os.makedirs(log_dir, exist_ok=True)
    path = log_file_path(log_dir, command)
    ray_was_up = _ray_is_up()
    log_file = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - closed below
    root = logging.getLogger()
    file_handler = logging.StreamHandler(log_file)
    file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(file_handler)
    root.setLevel(logging.INFO)
    if verbose:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(stream)
        try:
            yield RunOutput(out=sys.stdout, log_path=path, verbose=True)
        finally:
            if not ray_was_up:
                _shutdown_ray()
            root.removeHandler(stream)
            root.removeHandler(file_handler)
            log_file.close()
        return

    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    terminal_out, own_out = _terminal(sys.stdout, 1, saved_out)
    terminal_err, own_err = _terminal(sys.stderr, 2, saved_err)
    previous = progress.use_console(Console(file=terminal_err, quiet=not show_progress))
    os.dup2(log_file.fileno(), 1)
    os.dup2(log_file.fileno(), 2)
    try:
        yield RunOutput(out=terminal_out, log_path=path, verbose=False)
    finally:
        if not ray_was_up:
            _shutdown_ray()
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        os.close(saved_out)
        os.close(saved_err)
        progress.use_console(previous)
        for stream, owned in ((terminal_out, own_out), (terminal_err, own_err)):
            stream.flush()
            if owned:
                stream.close()
        root.removeHandler(file_handler)
        log_file.close()


def _terminal(stream: IO[str], fd: int, saved_fd: int) -> tuple[IO[str], bool]:
    """Where the user's text goes once `fd` points at the log: a copy of the saved descriptor when `stream`
    writes to `fd` (a real terminal or pipe), else `stream` itself (a notebook, typer's CliRunner).
    Returns (stream, whether we opened it)."""
    try:
        writes_to_fd = stream.fileno() == fd
    except (AttributeError, OSError, ValueError):
        writes_to_fd = False
    if writes_to_fd:
        return os.fdopen(os.dup(saved_fd), "w", encoding="utf-8", buffering=1), True
    return stream, False


def record_failure(error: BaseException) -> None:
    """The whole traceback into the log (through logging, so it reaches the file in both modes)."""
    logging.getLogger("momorec").error(
        "command failed:\n%s", "".join(traceback.format_exception(type(error), error, error.__traceback__))
    )


def _ray_is_up() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and bool(getattr(ray, "is_initialized", lambda: False)())


def _shutdown_ray() -> None:
    if _ray_is_up():
        with contextlib.suppress(Exception):
            sys.modules["ray"].shutdown()
