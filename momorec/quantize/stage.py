"""The quantize stage: item / user embeddings -> residual semantic IDs (Delta table `semantic_ids`).

Per entity type: read the motivate stage's table (`item_profiles` / `user_motivations`), keep valid
status == "ok" rows (the rest counted by reason), fit the projection and codebooks on the training
entities only (items that occur in some user's `train_items`; every user, whose motivation was
built from the training prefix), then code every other entity with the frozen codebooks. Codebooks
are saved under <dataset>/codebooks/<entity_type>/<version>/ and logged as MLflow artifacts. The
`semantic_ids` rows of the quantized entity types are replaced in one Delta commit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from rich.progress import Progress

from momorec.config import PlatformConfig
from momorec.core.batch_scoring import table_files
from momorec.core.stage_run import stage_run
from momorec.progress import console as progress_console
from momorec.quantize.assign import drift_ratio
from momorec.quantize.codebook import Codebook, codebook_root, latest_codebook_dir, load_codebook, save_codebook
from momorec.quantize.inputs import Embeddings, EmbeddingScan, scan_embeddings
from momorec.quantize.metrics import append_uniqueness_level, level_metrics
from momorec.quantize.residual import Coded, FitOutput, FitParams, encode_pool, fit_residual
from momorec.quantize.result import EntitySummary, LevelMetrics, QuantizeResult, metrics_table
from momorec.quantize.shards import LocalPool, ShardPool
from momorec.storage import delta, objectstore, schemas

log = logging.getLogger(__name__)

# entity type -> (source table written by the motivate stage, its id column)
SOURCES = {"item": ("item_profiles", "item_id"), "user": ("user_motivations", "user_id")}
TABLE = "semantic_ids"
EmbeddingRows = Embeddings | EmbeddingScan  # held vectors, or valid rows located in the table's files


def fit_params(cfg: PlatformConfig) -> FitParams:
    q = cfg.quantize
    return FitParams(
        codes_per_level=tuple(q.codes_per_level()),
        iterations=q.iterations,
        pca_dim=q.pca_dim,
        pca_whiten=q.pca_whiten,
        pca_max_rows=q.pca_max_rows,
        init=q.init,
        init_points_per_centroid=q.init_points_per_centroid,
        max_points_per_centroid=q.max_points_per_centroid,
        balanced=q.balanced,
        balance_slack=q.balance_slack,
        seed=q.seed if q.seed is not None else cfg.seed,
    )


def training_item_ids(sequences: pa.Table) -> np.ndarray:
    """Distinct item ids of every user's train_items (the only items a fit may see), sorted int64."""
    flat = pc.list_flatten(sequences.column("train_items"))
    return np.unique(flat.to_numpy(zero_copy_only=False).astype(np.int64))


@contextlib.contextmanager
def _pool(cfg: PlatformConfig, x: np.ndarray) -> Iterator[tuple[ShardPool, bool]]:
    """LocalPool, or a RayPool when use_ray says so (always, or auto above ray_min_rows)."""
    q = cfg.quantize
    if q.use_ray == "always" or (q.use_ray == "auto" and x.shape[0] >= q.ray_min_rows):
        from momorec.quantize.ray_pool import RayPool
        from momorec.storage.ray_runtime import init_ray

        init_ray(cfg.ray)
        with RayPool.from_array(x, min(q.num_shards, max(1, x.shape[0])), q.cpus_per_shard) as pool:
            yield pool, True
    else:
        yield LocalPool.from_array(x), False


def _encode(cfg: PlatformConfig, codebook: Codebook, x: np.ndarray) -> Coded:
    with _pool(cfg, x) as (pool, _):
        return encode_pool(pool, codebook)


def _encode_rows(cfg: PlatformConfig, codebook: Codebook, emb: EmbeddingRows, mask: np.ndarray | None = None) -> Coded:
    """Codes of every row (or the masked ones), in id order, encoded one input batch at a time: what is held
    is a batch of vectors and a few numbers per row."""
    index = np.arange(emb.ids.size) if mask is None else np.flatnonzero(mask)
    levels = codebook.levels
    out = Coded(
        np.zeros((index.size, levels), np.int32),
        np.zeros((index.size, levels)),
        np.zeros(index.size),
        np.zeros(index.size),
    )
    for rows, x in emb.batches(mask):
        part, at = _encode(cfg, codebook, x), np.searchsorted(index, rows)
        out.codes[at], out.sq_err[at] = part.codes, part.sq_err
        out.sq_norm[at], out.sq_norm_input[at] = part.sq_norm, part.sq_norm_input
    return out


def fit_sample(cfg: PlatformConfig, fit_mask: np.ndarray) -> np.ndarray:
    """The rows a fit sees: the eligible ones, or a seeded sample of quantize.fit_max_rows of them (rows are in
    id order, so the sample depends on which ids a table holds, not on its file layout)."""
    cap = cfg.quantize.fit_max_rows
    eligible = np.flatnonzero(fit_mask)
    if cap is None or eligible.size <= cap:
        return fit_mask
    chosen = np.random.default_rng(fit_params(cfg).seed).choice(eligible, size=cap, replace=False)
    sample = np.zeros_like(fit_mask)
    sample[chosen] = True
    return sample


def _merge(n: int, parts: list[tuple[np.ndarray, Coded]]) -> Coded:
    """Coded rows of disjoint masks back into input order."""
    levels = parts[0][1].codes.shape[1]
    out = Coded(np.zeros((n, levels), np.int32), np.zeros((n, levels)), np.zeros(n), np.zeros(n))
    for mask, coded in parts:
        out.codes[mask], out.sq_err[mask] = coded.codes, coded.sq_err
        out.sq_norm[mask], out.sq_norm_input[mask] = coded.sq_norm, coded.sq_norm_input
    return out


def _levels(coded: Coded, codebook: Codebook) -> list[LevelMetrics]:
    rows = level_metrics(coded.codes, coded.sq_err, coded.sq_norm, codebook.codes_per_level, coded.sq_norm_input)
    return [LevelMetrics(**row) for row in rows]


def _fit(cfg: PlatformConfig, entity: str, emb: EmbeddingRows, fit_mask: np.ndarray, progress: Progress | None):
    """Fit on the masked rows; returns (saved codebook, its folder, fit output, used_ray, seconds)."""
    params = fit_params(cfg)
    x = emb.gather(fit_mask)
    if x.shape[0] == 0:
        raise ValueError(f"{entity}: no training entities to fit the codebook on (empty fit set)")
    task = (
        progress.add_task(f"{entity} fit", total=len(params.codes_per_level) * params.iterations) if progress else None
    )
    started = time.perf_counter()
    with _pool(cfg, x) as (pool, used_ray):
        out: FitOutput = fit_residual(pool, params, (lambda *_: progress.advance(task)) if progress else None)
    seconds = time.perf_counter() - started
    fit_levels = _levels(out.coded, out.codebook)
    meta = {
        "entity_type": entity,
        "dataset": cfg.dataset,
        "created_at": datetime.now(UTC).isoformat(),
        "config": cfg.quantize.model_dump(mode="json"),
        "seed": params.seed,
        "fit_rows": int(x.shape[0]),
        "input_dim": out.codebook.projection.input_dim,
        "reduced_dim": out.codebook.dim,
        "codes_per_level": [int(k) for k in out.codebook.codes_per_level],
        "fit_rel_error": out.coded.rel_error(),
        "metrics": [m.model_dump() for m in fit_levels],
        "history": out.history,
        "reseeded_empty_clusters": out.reseeded,
        "unique_items": bool(cfg.quantize.unique_items and entity == "item"),
    }
    codebook = dataclasses.replace(out.codebook, fit_entity_ids=emb.ids[fit_mask], coded_entity_ids=emb.ids, meta=meta)
    folder = save_codebook(codebook, codebook_root(cfg.dataset_root, entity))
    return codebook, folder, out, used_ray, seconds


def _frozen(cfg: PlatformConfig, entity: str, dim: int) -> tuple[Codebook, str] | None:
    """The latest codebook for mode assign/auto (None in auto when there is none or dims differ)."""
    mode = cfg.quantize.mode
    try:
        folder = latest_codebook_dir(cfg, entity)
    except FileNotFoundError:
        if mode == "assign":
            raise
        return None
    codebook = load_codebook(folder)
    if codebook.projection.input_dim != dim:
        if mode == "assign":
            raise ValueError(f"{entity}: codebook {folder} takes dim {codebook.projection.input_dim}, rows have {dim}")
        return None
    return codebook, folder


def quantize_entity(
    cfg: PlatformConfig, entity: str, emb: EmbeddingRows, fit_mask: np.ndarray, progress: Progress | None = None
) -> tuple[EntitySummary, pa.Table, str]:
    """Code one entity type's valid rows (held, or scanned from the files: `inputs`) with `cfg.quantize` as it
    stands (run_quantize passes the entity's settings: `QuantizeConfig.for_entity`); returns its summary, its
    semantic_ids rows, its codebook dir. `fit_mask` marks the rows a fit may see (`fit_sample` caps them)."""
    q = cfg.quantize
    n = emb.ids.shape[0]
    action, drift, fit_levels, used_ray, seconds = "fit", None, None, False, 0.0
    frozen = _frozen(cfg, entity, emb.dim) if q.mode in ("assign", "auto") else None
    coded = None
    if frozen is not None:
        codebook, folder = frozen
        member = np.isin(emb.ids, codebook.fit_entity_ids)
        coded = _encode_rows(cfg, codebook, emb)
        new = ~np.isin(emb.ids, codebook.coded_entity_ids)  # arrived since the codebook was made
        new_rel = Coded(coded.codes[new], coded.sq_err[new], coded.sq_norm[new], coded.sq_norm_input[new]).rel_error()
        drift = drift_ratio(new_rel, codebook.fit_rel_error) if new.any() else None
        action = "assign"
        if q.mode == "auto" and drift is not None and drift > q.drift_threshold:
            log.warning("%s: drift %.3f > %.3f, refitting the codebook", entity, drift, q.drift_threshold)
            coded, action = None, "refit"
    if coded is None:
        member = fit_sample(cfg, fit_mask)
        codebook, folder, out, used_ray, seconds = _fit(cfg, entity, emb, member, progress)
        fit_levels = _levels(out.coded, codebook)
        parts = [(member, out.coded)]
        if (~member).any():
            rest = _encode_rows(cfg, codebook, emb, ~member)
            parts.append((~member, rest))
            drift = drift_ratio(rest.rel_error(), codebook.fit_rel_error)
        coded = _merge(n, parts)

    codes, unique_size = coded.codes, None
    if entity == "item" and q.unique_items:
        codes = append_uniqueness_level(codes, emb.ids)
        unique_size = int(codes[:, -1].max()) + 1 if n else 0
    version = objectstore.name(folder)
    rows = pa.table(
        {
            "entity_type": pa.array([entity] * n, pa.string()),
            "entity_id": pa.array(emb.ids, pa.int64()),
            "codes": pa.ListArray.from_arrays(
                pa.array(np.arange(0, n * codes.shape[1] + 1, codes.shape[1], dtype=np.int32)),
                pa.array(codes.ravel().astype(np.int32)),
            ),
            "codebook_version": pa.array([version] * n, pa.string()),
            "fit_member": pa.array(member, pa.bool_()),
            "residual_norm": pa.array(coded.residual_norm, pa.float32()),
        },
        schema=schemas.SEMANTIC_IDS,
    )
    summary = EntitySummary(
        entity_type=entity,
        action=action,
        rows_in=emb.rows_in,
        rows_coded=n,
        rows_rejected=emb.rows_rejected,
        rejects={k: v for k, v in emb.rejects.items() if v},
        fit_rows=int(member.sum()),
        assigned_rows=int((~member).sum()),
        codebook_version=version,
        codebook_dir=folder,
        input_dim=codebook.projection.input_dim,
        reduced_dim=codebook.dim,
        pca_explained_variance=codebook.projection.explained_variance,
        levels=_levels(coded, codebook),
        fit_levels=fit_levels,
        fit_rel_error=codebook.fit_rel_error,
        drift=drift,
        needs_refit=action == "assign" and drift is not None and drift > q.drift_threshold,
        unique_level_size=unique_size,
        used_ray=used_ray,
        fit_time_s=seconds,
    )
    return summary, rows, folder


def _write_semantic_ids(cfg: PlatformConfig, parts: list[pa.Table], entities: list[str]) -> int:
    """Replace the rows of `entities` in `semantic_ids`, keeping other entity types, in one commit."""
    path = cfg.table_path(TABLE)
    new = pa.concat_tables(parts) if parts else schemas.SEMANTIC_IDS.empty_table()
    if delta.exists(path):
        old = delta.read(path).select(schemas.SEMANTIC_IDS.names).cast(schemas.SEMANTIC_IDS)
        keep = pc.invert(pc.is_in(old.column("entity_type"), pa.array(entities, pa.string())))
        new = pa.concat_tables([old.filter(keep), new])
    return delta.write(path, new, mode="overwrite")


def _log_mlflow(summaries: dict[str, EntitySummary], folders: dict[str, str], rejected: dict[str, dict]) -> None:
    import mlflow

    metrics: dict[str, float] = {}
    for entity, s in summaries.items():
        for key in (
            "rows_in",
            "rows_coded",
            "rows_rejected",
            "fit_rows",
            "assigned_rows",
            "fit_rel_error",
            "fit_time_s",
        ):
            metrics[f"{entity}.{key}"] = float(getattr(s, key))
        metrics.update({f"{entity}.rejected.{k}": float(v) for k, v in s.rejects.items()})
        if s.drift is not None:
            metrics[f"{entity}.drift"] = float(s.drift)
        for scope, levels in (("all", s.levels), ("fit", s.fit_levels or [])):
            for m in levels:
                for key, value in m.model_dump(exclude={"level", "codes"}).items():
                    metrics[f"{entity}.{scope}.L{m.level}.{key}"] = float(value)
    mlflow.log_metrics(metrics)
    with tempfile.TemporaryDirectory() as tmp:
        for entity, folder in folders.items():
            version = objectstore.name(folder)
            local = os.path.join(tmp, entity, version)
            objectstore.copy_tree(folder, local)  # MLflow logs from a local folder
            mlflow.log_artifacts(local, artifact_path=f"codebooks/{entity}/{version}")
            mlflow.set_tag(f"momorec.codebook.{entity}", version)
        path = os.path.join(tmp, "rejects.json")
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(rejected, fh, indent=1)
        mlflow.log_artifact(path, artifact_path="quantize")


def run_quantize(cfg: PlatformConfig, show_progress: bool = True) -> QuantizeResult:
    """Quantize every entity type in cfg.quantize.entities and write `semantic_ids`."""
    start = time.perf_counter()
    q = cfg.quantize
    params = {"quantize": q.model_dump(mode="json"), "quantize_seed": fit_params(cfg).seed}
    with stage_run(cfg, "quantize", params, show_progress=show_progress, started=start) as stage:
        train_items = np.zeros(0, np.int64)
        if "item" in q.entities:
            seq_path = cfg.table_path("sequences")
            if not delta.exists(seq_path):
                raise FileNotFoundError(f"{seq_path}: no sequences table; run `momorec ingest` first")
            stage.read({"sequences": delta.version(seq_path)})
            train_items = training_item_ids(delta.read(seq_path, columns=["train_items"]))
        summaries: dict[str, EntitySummary] = {}
        folders: dict[str, str] = {}
        tables: list[pa.Table] = []
        rejected: dict[str, dict] = {}
        progress = stage.progress
        for entity in q.entities:
            table_name, id_column = SOURCES[entity]
            path = cfg.table_path(table_name)
            if not delta.exists(path):
                raise FileNotFoundError(f"{path}: no {table_name} table; run `momorec motivate` first")
            stage.read({table_name: delta.version(path)})
            if not delta.file_uris(path):
                raise ValueError(f"{table_name}: no usable embeddings (the table has no rows)")
            files = table_files(path)  # read a batch at a time: memory is a batch and the fit sample
            emb = scan_embeddings(files.paths, files.filesystem, id_column, q.expected_dim, batch_rows=q.batch_rows)
            if emb.ids.size == 0:
                raise ValueError(f"{table_name}: no usable embeddings (rejects: {emb.rejects})")
            fit_mask = np.isin(emb.ids, train_items) if entity == "item" else np.ones(emb.ids.size, bool)
            entity_cfg = cfg.model_copy(update={"quantize": q.for_entity(entity)})  # its per_entity settings
            summary, rows, folder = quantize_entity(entity_cfg, entity, emb, fit_mask, progress)
            summaries[entity], folders[entity] = summary, folder
            tables.append(rows)
            rejected[entity] = {reason: ids[:1000] for reason, ids in emb.rejected_ids.items()}
        version = stage.wrote(TABLE, _write_semantic_ids(cfg, tables, list(q.entities)))
        _log_mlflow(summaries, folders, rejected)
        result = QuantizeResult(
            **stage.result_fields(),
            table=cfg.table_path(TABLE),
            table_version=version,
            entities=summaries,
        )
    if show_progress:
        progress_console().print(metrics_table(result))
    return result
