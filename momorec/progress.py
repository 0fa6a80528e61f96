"""What a person sees while the platform runs: one line per stage, and a bar inside long stages.

Everything is drawn on one console (stderr by default, so `--json` stdout stays one JSON object).
The CLI points it at the real terminal when it sends the libraries' own output (Spark, Ray, vLLM)
to the run's log file (momorec.run_log); stages draw their bars with `progress_bar()` so those bars
stay visible there. In a pipe the bars are off and the stage lines remain.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn

_console = Console(stderr=True)


def console() -> Console:
    """The console progress is drawn on."""
    return _console


def use_console(target: Console) -> Console:
    """Draw progress on `target` from now on; returns the console used before."""
    global _console
    previous, _console = _console, target
    return previous


def progress_bar(*columns: ProgressColumn | str, show: bool = True, transient: bool = True) -> Progress:
    """A rich Progress on the progress console; drawn only on a terminal (a pipe gets the stage lines)."""
    return Progress(*columns, console=_console, transient=transient, disable=not (show and _console.is_terminal))


@contextlib.contextmanager
def step_progress(show: bool, description: str, total: int) -> Iterator[Callable[[str], None]]:
    """Yield `advance(label)`: call it after each of `total` steps. A no-op when `show` is False."""
    if not show:
        yield lambda label: None
        return
    progress = progress_bar(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[step]}"),
        TimeElapsedColumn(),
    )
    with progress:
        task = progress.add_task(description, total=total, step="")

        def advance(label: str) -> None:
            progress.update(task, advance=1, step=label)

        yield advance


def stage_started(position: str, name: str) -> None:
    _console.print(f"[bold]{position}[/bold] {name} ...", highlight=False, soft_wrap=True)


def stage_finished(position: str, name: str, result: dict) -> None:
    seconds = result.get("wall_time_s") or 0.0
    _console.print(
        f"[green]done[/green] {position} {name} in {seconds:.1f} s: {stage_summary(result)}",
        highlight=False,
        soft_wrap=True,
    )


def _figure(value) -> str:
    """A float to 4 places; a {mean, std} over seeds as mean ± std."""
    if isinstance(value, dict) and "mean" in value:
        return f"{value['mean']:.4f} ± {value.get('std') or 0.0:.4f}"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def stage_summary(stage: dict) -> str:
    """The figures a person looks at first, per stage result."""
    if stage.get("skipped"):
        return f"skipped: {stage.get('reason', 'unchanged')}"
    if stage.get("stage") == "promote":
        candidate, champion = stage.get("candidate_valid_ndcg_10"), stage.get("champion_valid_ndcg_10")
        return (
            f"v{stage.get('candidate_version')} -> @{stage.get('decision')} "
            f"(valid NDCG@10 {_figure(candidate)} vs champion {_figure(champion)})"
        )
    keys = (
        "users",
        "items",
        "interactions",
        "rows_rejected",
        "users_processed",
        "items_processed",
        "users_ok",
        "users_failed",
        "levels",
        "best_epoch",
        "valid",
        "model_version",
    )
    parts = []
    for key in keys:
        if key in stage and stage[key] not in (None, {}, []):
            value = stage[key]
            if isinstance(value, dict):
                value = ", ".join(f"{k}={_figure(v)}" for k, v in list(value.items())[:6])
            parts.append(f"{key}={value}")
    # quantize: per entity, the rows coded and the codes per level
    for entity, summary in (stage.get("entities") or {}).items():
        codes = "x".join(str(level["codes"]) for level in summary.get("levels") or [])
        parts.append(f"{entity}: {summary.get('action')} {summary.get('rows_coded')} rows, codes {codes}")
    # evaluate: the headline metrics per protocol, not every cut-off
    for protocol, metrics in (stage.get("metrics") or {}).items():
        if not isinstance(metrics, dict):
            continue
        shown = ", ".join(f"{m}={_figure(metrics[m])}" for m in ("ndcg_10", "hr_10") if m in metrics)
        parts.append(f"{protocol}: {shown}")
    if stage.get("unchanged"):
        parts.append("unchanged")
    return "; ".join(parts)
