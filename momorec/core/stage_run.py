"""The one wrapper every stage runs in: its MLflow run, its clock, the Delta versions it read and wrote, and its
progress display.

    with stage_run(cfg, "recommend", {"recommend": ...}, show_progress=show) as stage:
        stage.read({"sequences": 4})
        advance = stage.steps("recommend", total=2)
        ...
        version = stage.wrote("recommendations", delta.write(...))
        return RecommendResult(**stage.result_fields(), users=...)

The MLflow run is `tracking.stage_run`'s (nested under the pipeline's run, the stage's config as params, its
wall time logged on exit, FAILED when the stage raises). The versions a stage declares are logged once, as
`delta.read.<table>` / `delta.written.<table>` params, when it ends (a failed stage logs what it got to).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from momorec import tracking
from momorec.config import PlatformConfig
from momorec.progress import progress_bar


class _StepColumn(ProgressColumn):
    """The label of a bar's last step (`StageRun.steps`); empty for bars without one."""

    def render(self, task: Task) -> Text:
        return Text(str(task.fields.get("step", "")))


class StageRun:
    """A running stage: what it reports while it runs, and the fields every StageResult takes from it."""

    def __init__(self, mlflow_run: Any, started: float, progress: Progress) -> None:
        self.mlflow_run = mlflow_run
        self.started = started
        self.progress = progress  # disabled (a no-op) unless the stage was asked to show progress on a terminal
        self.read_versions: dict[str, int | None] = {}
        self.written_versions: dict[str, int | None] = {}

    @property
    def run_id(self) -> str:
        return self.mlflow_run.info.run_id

    @property
    def info(self) -> Any:
        """The MLflow run's info (code that takes an MLflow run can take a StageRun)."""
        return self.mlflow_run.info

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def read(self, versions: Mapping[str, int | None]) -> None:
        """Delta tables this stage read, at these versions."""
        self.read_versions.update(versions)

    def wrote(self, table: str, version: int | None) -> int | None:
        """A Delta table this stage committed; returns `version`."""
        self.written_versions[table] = version
        return version

    def task(self, description: str, total: float | None) -> TaskID:
        """A bar on the stage's progress display."""
        return self.progress.add_task(description, total=total)

    def steps(self, description: str, total: int) -> Callable[[str], None]:
        """A bar of `total` named steps: call the returned `advance(label)` after each one."""
        task = self.task(description, total)
        return lambda label: self.progress.update(task, advance=1, step=label)

    def result_fields(self) -> dict[str, Any]:
        """mlflow_run_id and wall_time_s (from the stage's start) of its StageResult."""
        return {"mlflow_run_id": self.run_id, "wall_time_s": round(self.elapsed(), 3)}


@contextlib.contextmanager
def stage_run(
    cfg: PlatformConfig,
    stage: str,
    params: Mapping[str, Any] | None = None,
    *,
    show_progress: bool = False,
    run_id: str | None = None,
    started: float | None = None,
) -> Iterator[StageRun]:
    """Run one stage inside its MLflow run and progress display (see the module doc). `run_id` continues an
    earlier MLflow run (a train run whose driver died); `started` is the stage's own start (checks it made
    before opening the run count in its wall time)."""
    started = time.perf_counter() if started is None else started
    progress = progress_bar(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _StepColumn(),
        TimeElapsedColumn(),
        show=show_progress,
    )
    with tracking.stage_run(cfg, stage, params, run_id=run_id) as mlflow_run, progress:
        current = StageRun(mlflow_run, started, progress)
        try:
            yield current
        finally:
            tracking.log_table_versions(read=current.read_versions, written=current.written_versions)
