"""Config sections of what several stages share (light: no torch, so loading a config stays fast)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from momorec.typed import StrictModel


class ScoringConfig(StrictModel):
    """How the users of a table are scored (evaluate, recommend, champion rescoring): `scoring:` in a
    config; each stage sets its own batch size."""

    engine: Literal["local", "ray"] = Field(
        "local", description="local: batches one after another in this process; ray: Ray Data actors (a cluster)."
    )
    num_actors: int = Field(2, ge=1, description="ray: scoring actors (each holds the model once).")
    cpus_per_actor: float = Field(1.0, gt=0, description="ray: CPUs per actor (also its torch threads, at least 1).")
    gpus_per_actor: float = Field(0.0, ge=0, description="ray: GPUs per actor (0 = CPU actors).")
