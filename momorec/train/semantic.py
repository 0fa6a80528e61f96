"""Semantic IDs (from the quantize stage) turned into model inputs.

Input: the Delta table `semantic_ids` (entity_type "item" | "user", entity_id int64, codes
list<int32>, codebook_version string) and, for the frozen mode, the frozen codebook folder
(`momorec.quantize.codebook.latest_codebook_dir`, `.centroids` (L, K, d) float32).
Codes are shifted by one (0 = reserved: padding, or an entity without IDs).
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pyarrow.compute as pc
import torch

from momorec.models.config import SemanticInputConfig
from momorec.models.interface import SemanticInputs

log = logging.getLogger(__name__)


def codes_matrix(
    entity_ids: np.ndarray, codes: list[list[int]], num_entities: int, wanted: np.ndarray, on_missing: str, what: str
) -> tuple[np.ndarray, int]:
    """Shifted code matrix (num_entities+1, L) int64 for entity ids 1..num_entities, and how many of
    `wanted` had no codes (mapped to the reserved code 0 when on_missing == "reserved")."""
    if len(codes) == 0:
        raise ValueError(f"semantic_ids has no {what} rows")
    levels = {len(c) for c in codes}
    if len(levels) != 1:
        raise ValueError(f"{what} semantic IDs have different numbers of levels: {sorted(levels)}")
    in_range = (entity_ids >= 1) & (entity_ids <= num_entities)
    if not in_range.all():
        log.warning(
            "semantic_ids: %d %s rows name ids outside 1..%d and are ignored",
            int((~in_range).sum()),
            what,
            num_entities,
        )
    out = np.zeros((num_entities + 1, levels.pop()), dtype=np.int64)
    code_array = np.asarray(codes, dtype=np.int64)
    if code_array.size and code_array.min() < 0:
        raise ValueError(f"{what} semantic IDs hold negative codes")
    out[entity_ids[in_range]] = code_array[in_range] + 1
    missing = int((out[wanted] == 0).all(axis=1).sum())
    if missing:
        if on_missing == "error":
            raise ValueError(
                f"semantic_ids misses {missing} of {len(wanted)} {what}s; run `momorec quantize` again or set "
                f"on_missing: reserved to map them to the reserved code"
            )
        log.warning("semantic_ids: %d of %d %ss have no IDs; they get the reserved code 0", missing, len(wanted), what)
    return out, missing


def load_semantic_inputs(
    table_path: str,
    entity_type: str,
    num_entities: int,
    wanted: np.ndarray,
    section: SemanticInputConfig,
    codebook_dir: str | None,
) -> tuple[SemanticInputs | None, dict]:
    """SemanticInputs for one entity type (None in mode none) and facts for MLflow:
    {"version": codebook version, "missing": count, "levels": L, "codes": K, "table_version": Delta version}."""
    if section.mode == "none":
        return None, {}
    from momorec.storage import delta

    if not delta.exists(table_path):
        raise FileNotFoundError(
            f"semantic mode {section.mode!r} for {entity_type}s needs the table {table_path}: run `momorec quantize`"
        )
    table = delta.read(table_path, columns=["entity_type", "entity_id", "codes", "codebook_version"])
    table = table.filter(pc.equal(table.column("entity_type"), entity_type))
    versions = sorted(set(table.column("codebook_version").to_pylist()))
    centroids = None
    version = versions[-1] if versions else None
    if section.mode == "frozen":
        if codebook_dir is None:
            raise FileNotFoundError(f"frozen {entity_type} semantic IDs need a codebook folder")
        from momorec.quantize.codebook import load_codebook

        codebook = load_codebook(codebook_dir)
        centroids = torch.from_numpy(np.asarray(codebook.centroids, dtype=np.float32))
        meta = getattr(codebook, "meta", {}) or {}
        version = meta.get("version") or os.path.basename(os.path.normpath(codebook_dir))
    if version is not None and len(versions) > 1:
        table = table.filter(pc.equal(table.column("codebook_version"), version))
        log.info("semantic_ids holds %d %s codebook versions; using %s", len(versions), entity_type, version)
    if versions and version not in versions:
        raise ValueError(
            f"{entity_type} codebook {version} does not match the semantic_ids table (versions {versions})"
        )
    codes, missing = codes_matrix(
        table.column("entity_id").to_numpy().astype(np.int64),
        table.column("codes").to_pylist(),
        num_entities,
        wanted,
        section.on_missing,
        entity_type,
    )
    num_codes = int(centroids.shape[1]) if centroids is not None else int(codes.max())
    if centroids is not None and codes.shape[1] != centroids.shape[0]:
        raise ValueError(f"{entity_type} codes have {codes.shape[1]} levels, the codebook {centroids.shape[0]}")
    inputs = SemanticInputs(torch.from_numpy(codes), num_codes, centroids, version)
    facts = {
        "version": version,
        "missing": missing,
        "levels": int(codes.shape[1]),
        "codes": num_codes,
        "table_version": delta.version(table_path),
    }
    return inputs, facts
