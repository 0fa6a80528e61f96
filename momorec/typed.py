"""The base of every config and result model: strict, typed, JSON-serialisable."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A config section: unknown keys and wrong types are errors, not silent defaults."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class StageResult(BaseModel):
    """What a stage returns: small, printable, and one JSON object with `--json`."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    stage: str
    mlflow_run_id: str | None = None
    wall_time_s: float = 0.0
