"""Progress bars for long stage steps (rich, on stderr so `--json` stdout stays one JSON object)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn


@contextlib.contextmanager
def step_progress(show: bool, description: str, total: int) -> Iterator[Callable[[str], None]]:
    """Yield `advance(label)`: call it after each of `total` steps. A no-op when `show` is False."""
    if not show:
        yield lambda label: None
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[step]}"), TimeElapsedColumn(), console=Console(stderr=True), transient=False,
    )
    with progress:
        task = progress.add_task(description, total=total, step="")

        def advance(label: str) -> None:
            progress.update(task, advance=1, step=label)

        yield advance
