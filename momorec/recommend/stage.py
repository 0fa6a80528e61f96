"""The recommend stage: top-K items for every user, each row explained by the user's motivation.

Uses the best seed (validation NDCG@10) of the latest train run, scores every item after the user's
WHOLE history (training, validation and test items: this is serving, not evaluation), excludes items
already seen, and writes one row per user to the Delta table `recommendations` with the motivation
text and the semantic codes of the user and of each recommended item.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import Field

from momorec import tracking
from momorec.config import PlatformConfig
from momorec.core.checkpoint import model_from_checkpoint
from momorec.core.logged_model import row_checkpoint
from momorec.core.scoring import top_k
from momorec.core.sequences import SequenceData, load_sequences
from momorec.core.trained_models import best_seed, run_models
from momorec.progress import step_progress
from momorec.storage import delta, schemas
from momorec.typed import StageResult

log = logging.getLogger(__name__)


class RecommendResult(StageResult):
    stage: str = "recommend"
    dataset: str
    users: int = 0
    top_k: int = 0
    model_seed: int | None = None
    train_run_id: str | None = None
    model_version: str | None = Field(None, description="Registry version served (the champion, when one is set).")
    with_motivation: int = Field(0, description="Users whose row carries a motivation text.")
    tables: dict[str, dict] = Field(default_factory=dict)


def best_model(cfg: PlatformConfig, train_run_id: str | None) -> dict:
    """The trained-model row to serve: the best seed (validation NDCG@10) of `train_run_id`; else the
    registry's champion (recommend.model=champion, once one is set); else the latest run's best seed.
    Its weights are then read from the registry (`logged_model.row_checkpoint`)."""
    if train_run_id is None and cfg.recommend.model == "champion":
        from momorec.registry import champion_row

        champion = champion_row(cfg)
        if champion is not None:
            return champion
    return best_seed(run_models(cfg, train_run_id).to_pylist())


def top_k_items(
    model, data: SequenceData, k: int, batch_size: int, exclude_seen: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(items (U, k) int64, scores (U, k) float32), best first; padding and seen items never appear.

    A model trained before the catalog or the user base grew (a champion kept by the nightly
    refresh) still serves: items it never saw drop out of histories and are never recommended,
    and new users get the reserved (no motivation) user code (`scoring.top_k`).
    """
    k = min(k, data.num_items)
    items = np.zeros((data.num_users, k), dtype=np.int64)
    scores = np.zeros((data.num_users, k), dtype=np.float32)
    for start in range(0, data.num_users, batch_size):
        rows = range(start, min(start + batch_size, data.num_users))
        histories = [data.items[data.offsets[row] : data.offsets[row + 1]] for row in rows]
        items[rows.start : rows.stop], scores[rows.start : rows.stop] = top_k(
            model, data.user_ids[rows.start : rows.stop], histories, k, exclude_seen, catalog_size=data.num_items
        )
    return items, scores


def _codes(cfg: PlatformConfig, entity_type: str) -> dict[int, list[int]]:
    path = cfg.table_path("semantic_ids")
    if not delta.exists(path):
        return {}
    table = delta.read(path, columns=["entity_type", "entity_id", "codes"])
    table = table.filter(pc.equal(table.column("entity_type"), entity_type))
    return dict(zip(table.column("entity_id").to_pylist(), table.column("codes").to_pylist(), strict=True))


def _motivations(cfg: PlatformConfig) -> dict[int, str]:
    path = cfg.table_path("user_motivations")
    if not delta.exists(path):
        return {}
    table = delta.read(path, columns=["user_id", "status", "motivation_text"])
    table = table.filter(pc.equal(table.column("status"), "ok"))
    return dict(zip(table.column("user_id").to_pylist(), table.column("motivation_text").to_pylist(), strict=True))


def run_recommend(cfg: PlatformConfig, show_progress: bool = True) -> RecommendResult:
    """Write `recommendations`; see the module docstring."""
    import mlflow

    start = time.perf_counter()
    rc = cfg.recommend
    chosen = best_model(cfg, rc.train_run_id)
    with tracking.stage_run(cfg, "recommend", {"recommend": rc.model_dump(mode="json")}) as run:
        with step_progress(show_progress, "recommend", total=3) as advance:
            data = load_sequences(cfg.table_path("sequences"), cfg.table_path("item_ids"))
            model = model_from_checkpoint(row_checkpoint(cfg, chosen))
            if model.num_items > data.num_items:
                raise ValueError(
                    f"model knows {model.num_items} items, item_ids has only {data.num_items}: wrong dataset?"
                )
            if model.num_items < data.num_items:
                log.warning(
                    "serving a model that knows %d of %d items: newer items are not recommended",
                    model.num_items,
                    data.num_items,
                )
            advance("load")
            items, scores = top_k_items(model, data, rc.top_k, rc.batch_size, rc.exclude_seen)
            advance("score")
            motivations, user_codes, item_codes = _motivations(cfg), _codes(cfg, "user"), _codes(cfg, "item")
            rows = [
                {
                    "user_id": int(user),
                    "items": items[i].tolist(),
                    "scores": scores[i].tolist(),
                    "item_codes": [item_codes.get(int(item)) for item in items[i]],
                    "user_codes": user_codes.get(int(user)),
                    "motivation_text": motivations.get(int(user)),
                    "train_run_id": chosen["train_run_id"],
                    "seed": chosen["seed"],
                    "created_at": time.time(),
                }
                for i, user in enumerate(data.user_ids)
            ]
            path = cfg.table_path("recommendations")
            version = delta.write(path, pa.Table.from_pylist(rows, schema=schemas.RECOMMENDATIONS))
            advance("commit")
        with_motivation = sum(1 for r in rows if r["motivation_text"])
        tracking.log_table_versions(
            read={"sequences": data.versions.get("sequences")}, written={"recommendations": version}
        )
        mlflow.log_params(
            {
                "model.train_run_id": chosen["train_run_id"],
                "model.seed": chosen["seed"],
                "model.registered_version": chosen.get("registered_version"),
            }
        )
        mlflow.log_metrics({"users": len(rows), "with_motivation": with_motivation})
        return RecommendResult(
            dataset=cfg.dataset,
            mlflow_run_id=run.info.run_id,
            wall_time_s=round(time.perf_counter() - start, 3),
            users=len(rows),
            top_k=items.shape[1],
            model_seed=chosen["seed"],
            train_run_id=chosen["train_run_id"],
            model_version=chosen.get("registered_version"),
            with_motivation=with_motivation,
            tables={"recommendations": {"path": path, "version": version}},
        )
