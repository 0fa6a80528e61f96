"""What the quantize stage returns, and its per-level metrics table for the terminal."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from rich.table import Table

from momorec.typed import StageResult


class LevelMetrics(BaseModel):
    """Quality after levels 0..level (see momorec.quantize.metrics for the definitions)."""

    model_config = ConfigDict(extra="forbid")

    level: int
    codes: int
    rel_error: float = Field(description="Unexplained share of the variance in the clustered (PCA) space.")
    rel_error_input: float = Field(description="The same in the input space: includes what PCA dropped.")
    utilization: float
    perplexity: float
    collision_rate: float


class EntitySummary(BaseModel):
    """One entity type's run: counts, what was done, quality."""

    model_config = ConfigDict(extra="forbid")

    entity_type: str
    action: Literal["fit", "assign", "refit"] = Field(
        description="fit: new codebook; assign: coded with the latest frozen one; refit: assign drifted, so refit."
    )
    rows_in: int
    rows_coded: int
    rows_rejected: int
    rejects: dict[str, int] = Field(default_factory=dict, description="Rejected rows by reason (non-zero only).")
    fit_rows: int = Field(description="Entities in the codebook's fit set (training entities).")
    assigned_rows: int = Field(description="Entities coded with the frozen codebook outside its fit set.")
    codebook_version: str
    codebook_dir: str
    input_dim: int
    reduced_dim: int
    pca_explained_variance: float
    levels: list[LevelMetrics] = Field(description="Quality over every coded entity.")
    fit_levels: list[LevelMetrics] | None = Field(None, description="Quality over the fit set (when fit this run).")
    fit_rel_error: float = Field(description="Fit-time relative reconstruction error after the last level.")
    drift: float | None = Field(
        None,
        description="rel_error / fit_rel_error of the entities outside the fit set (fit) or new since the codebook "
        "(assign); None when there are none.",
    )
    needs_refit: bool = Field(False, description="Assigned with a frozen codebook and drift > drift_threshold.")
    unique_level_size: int | None = Field(None, description="Codes of the item uniqueness level (None when off).")
    used_ray: bool = False
    fit_time_s: float = 0.0


class QuantizeResult(StageResult):
    stage: str = "quantize"
    table: str
    table_version: int
    entities: dict[str, EntitySummary] = Field(default_factory=dict)


def metrics_table(result: QuantizeResult) -> Table:
    """Per entity type and level: K, errors, utilization, perplexity, collision rate."""
    table = Table(title=f"semantic IDs -> {result.table} (v{result.table_version})")
    for column in ("entity", "level", "K", "rel err", "rel err (input)", "util", "perplexity", "collision"):
        table.add_column(column, justify="left" if column == "entity" else "right")
    for name, summary in result.entities.items():
        label = f"{name} ({summary.action}, {summary.rows_coded} rows)"
        for m in summary.levels:
            table.add_row(
                label if m.level == 0 else "",
                str(m.level),
                str(m.codes),
                f"{m.rel_error:.4f}",
                f"{m.rel_error_input:.4f}",
                f"{m.utilization:.3f}",
                f"{m.perplexity:.1f}",
                f"{m.collision_rate:.4f}",
            )
        if summary.unique_level_size is not None:
            table.add_row("", "unique", str(summary.unique_level_size), "", "", "", "", "0.0000")
    return table
