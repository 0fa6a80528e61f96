"""The nightly refresh: the pipeline again, on the night's new logs, doing only what they change.

1. ingest the new event files next to the configured ones (a file already ingested, by SHA-256,
   adds nothing: running the same night twice changes no table);
2. motivate only users whose recent training history changed and items that are new or changed
   (per-row content hashes);
3. quantize with the frozen codebooks (`refresh.quantize_mode`, default auto: refit only when
   the drift measure passes `quantize.drift_threshold`);
4. train warm-started from the @champion's weights, with the refresh's shorter epoch budget, on the users
   whose history changed since the champion was trained plus a stable replay sample of the others
   (`refresh.train_users`, `refresh.replay_ratio`);
5. evaluate; the new model becomes @champion only if it is not worse on validation, else
   @challenger (momorec.registry). Validation, the champion's rescoring and the evaluation score a stable
   seeded sample of `refresh.metric_users` users, so they cost the same whatever the number of users;
6. recommend from the champion: while it is the model that wrote `recommendations`, only the users whose rows
   can differ are rescored and MERGEd (`refresh.recommend_users`); a new champion rewrites every row.
Every stage whose inputs did not change is skipped (momorec.stage_state).
"""

from __future__ import annotations

import logging
import os

from momorec.config import PlatformConfig
from momorec.ingest.config import EventSource
from momorec.pipeline import PipelineResult, run_pipeline
from momorec.storage import objectstore
from momorec.storage.locations import is_uri

log = logging.getLogger(__name__)


def refresh_config(cfg: PlatformConfig) -> PlatformConfig:
    """The config a refresh runs with: the full run's, with the refresh's quantize mode, epoch budget,
    seeds (default: the champion's), warm start from the current champion, training on the users that changed
    since the champion was trained (plus a replay sample), and validation, promotion and evaluation on a stable
    sample of `refresh.metric_users` users.

    The warm start names the champion's registered version (`models:/<name>/<version>`: pinned, so
    the run's params say which weights it started from even after the alias moves); the train stage
    reads that version's checkpoint from the registry.
    """
    from momorec.registry import CHAMPION, alias_version, model_row, version_uri

    r = cfg.refresh
    train = {
        "epochs": r.epochs,
        "patience": min(r.patience, r.epochs),
        "replay_ratio": r.replay_ratio,
        "valid_users": r.metric_users,
    }
    version = alias_version(cfg, CHAMPION) if r.warm_start or r.seeds is None else None
    if version is not None and r.warm_start:
        train["warm_start"] = version_uri(cfg, version)
    champion = None if version is None else model_row(cfg, version)
    if r.train_users == "changed" and r.warm_start and champion is not None:
        # a warm-started model already knows the unchanged users: it trains on what changed since it was trained
        train["users_since"] = champion.get("sequences_version")
    if r.seeds is not None:
        train["seeds"] = list(r.seeds)
    elif champion is not None:
        train["seeds"] = [champion["seed"]]
    if version is None and r.warm_start:
        log.warning("no @champion in the registry to warm-start from: the refresh trains from scratch")
    execution = cfg.motivate.execution.model_copy(update={"retry_failed": r.retry_failed})
    return cfg.model_copy(
        update={
            "motivate": cfg.motivate.model_copy(update={"execution": execution}),
            "quantize": cfg.quantize.model_copy(update={"mode": r.quantize_mode}),
            "train": cfg.train.model_copy(update=train),
            "evaluate": cfg.evaluate.model_copy(update={"users": r.metric_users}),
            "recommend": cfg.recommend.model_copy(update={"users": r.recommend_users}),
        }
    )


def new_log_sources(paths: list[str], template: EventSource | None = None) -> list[EventSource]:
    """Event sources for the night's files (columns and format as `template`, default CSV/JSONL events
    with user, item, timestamp columns). Paths may be local (made absolute) or object-store URIs;
    a glob must match at least one file."""

    def found(path: str) -> bool:
        if any(ch in path for ch in "*?["):
            return bool(objectstore.glob(path))
        return objectstore.exists(path) or objectstore.is_dir(path)  # an object-store folder is a prefix

    missing = [p for p in paths if not found(p)]
    if missing:
        raise FileNotFoundError(f"new logs not found: {missing}")
    base = template or EventSource(path=paths[0])
    return [base.model_copy(update={"path": p if is_uri(p) else os.path.abspath(p)}) for p in paths]


def run_refresh(
    cfg: PlatformConfig, new_logs: list[str], show_progress: bool = True, source: EventSource | None = None
) -> PipelineResult:
    """One nightly refresh on `new_logs` (files, folders or globs); see the module docstring."""
    sources = new_log_sources(new_logs, source)
    return run_pipeline(
        refresh_config(cfg), show_progress, stages=list(cfg.refresh.stages), extra_sources=sources, kind="refresh"
    )
