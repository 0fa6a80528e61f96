"""The motivate stage's texts out of a warehouse and back in without the LLM: `momorec texts export|import`.

Generating the texts is the expensive part of the pipeline (hours for a whole catalog on a CPU);
embedding them is minutes. Export writes what the agents wrote, without embeddings, keyed by the
dataset's own ids, with a manifest of the settings they were generated under:

    <folder>/manifest.json   format, dataset, the settings fingerprints, motivate config, rows + sha256 per file
    <folder>/items.parquet   item, status, failure_reason, profile_text, profile_json, content_hash, ...
    <folder>/users.parquet   user, status, ..., motivations_json and history_items with raw item ids

Import embeds those texts with the embedder the current config names and writes `item_profiles` /
`user_motivations` rows that `momorec motivate` then treats as done: a later embedder (or
quantizer) change needs no regeneration. A row is imported only when it provably belongs to the
current warehouse and settings: the generation settings of the manifest and of the current config
must agree in everything but the embedder, and the row's exported content hash must equal the hash
recomputed from this warehouse's inputs under the manifest's settings (same catalog fields, same
history). Every other row is counted as stale or unknown, never written under a hash it does not
match; rows read = imported + already present + stale + unknown.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field

from momorec.config import PlatformConfig
from momorec.llm.model_cache import resolve_model
from momorec.motivate.config import MotivateConfig
from momorec.motivate.inputs import item_fingerprint, item_inputs, settings_fingerprint, split_window, user_rows
from momorec.motivate.prompts import load_prompts
from momorec.storage import delta, objectstore
from momorec.storage.schemas import ITEM_PROFILES, USER_MOTIVATIONS
from momorec.typed import StageResult

log = logging.getLogger(__name__)

FORMAT = 1
EMBED_ROWS = 2048  # rows embedded and upserted at a time: memory follows this, not the table

_ITEM_TEXT = ["status", "failure_reason", "profile_text", "profile_json", "content_hash", "prompt_version", "model"]
_USER_TEXT = [
    "status",
    "failure_reason",
    "motivation_text",
    "motivations_json",
    "review_rounds",
    "accepted",
    "content_hash",
    "prompt_version",
    "model",
]


class TextsExportResult(StageResult):
    stage: str = "texts_export"
    folder: str
    items: int
    users: int
    bytes: int = Field(description="Parquet bytes written (manifest excluded).")


class TextsImportResult(StageResult):
    stage: str = "texts_import"
    folder: str
    embedder: str
    generated_dtype: str = Field(description="The dtype the LLM generated the texts in (the manifest's).")
    counts: dict[str, dict[str, int]] = Field(
        description="Per file: read, imported, present (already there under the current hash), stale "
        "(inputs or hash differ from this warehouse), unknown (id not in this warehouse)."
    )
    item_profiles_version: int | None
    user_motivations_version: int | None


def _settings(m: MotivateConfig, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(user fingerprint, item fingerprint) of a motivate config, as run_motivate computes them."""
    prompts = load_prompts(m.agents.prompt_version)
    model = resolve_model(m.llm.model, m.llm.cache_dir)
    seed = m.llm.seed if m.llm.seed is not None else seed
    return (
        settings_fingerprint(m, prompts.digest, model.name, seed),
        item_fingerprint(m, prompts.digest_of("item_analyst"), model.name, seed),
    )


#: Fingerprint keys that may differ on import. The embedder is what import redoes. The dtype: `auto`
#: is bfloat16 on a CPU with AVX-512 BF16 and float32 elsewhere, so the same config generates in either;
#: the manifest keeps what the texts were generated in, and the import logs it.
IMPORT_MAY_DIFFER = frozenset({"embed", "dtype"})


def generation_differences(exported: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The fingerprint keys (IMPORT_MAY_DIFFER aside) on which two settings disagree: texts generated
    under one are not the texts the other would generate."""
    keys = (set(exported) | set(current)) - IMPORT_MAY_DIFFER
    return sorted(k for k in keys if exported.get(k) != current.get(k))


def _id_map(cfg: PlatformConfig, entity: str) -> pa.Table:
    return delta.read(cfg.table_path(f"{entity}_ids")).sort_by(f"{entity}_id")


def _raw_ids(ids: pa.Table, entity: str, dense: np.ndarray) -> pa.Array:
    """Dense ids -> the dataset's own ids (id maps are dense and unique, so a position lookup)."""
    at = np.searchsorted(ids.column(f"{entity}_id").to_numpy(), dense)
    return ids.column(entity).take(pa.array(at))


def _evidence_as(motivations_json: str | None, lookup: dict) -> str | None:
    """motivations_json with each evidence id mapped through `lookup` (dense <-> raw)."""
    if not motivations_json:
        return motivations_json
    rows = json.loads(motivations_json)
    for m in rows:
        m["evidence_item_ids"] = [lookup[e] for e in m.get("evidence_item_ids") or []]
    return json.dumps(rows, ensure_ascii=False)


def _write_parquet(location: str, table: pa.Table) -> tuple[int, str]:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", compression_level=19)
    data = sink.getvalue().to_pybytes()
    objectstore.write_bytes(location, data)
    return len(data), hashlib.sha256(data).hexdigest()


def export_texts(cfg: PlatformConfig, folder: str) -> TextsExportResult:
    """The warehouse's item profiles and user motivations as Parquet + manifest (see the module doc)."""
    start = time.perf_counter()
    objectstore.make_dirs(folder)
    items_ids, user_ids = _id_map(cfg, "item"), _id_map(cfg, "user")
    raw_item = dict(zip(items_ids.column("item_id").to_pylist(), items_ids.column("item").to_pylist(), strict=True))
    files: dict[str, dict[str, Any]] = {}
    written = {"items": 0, "users": 0}
    total = 0
    for name, table, key, entity, columns in (
        ("items", "item_profiles", "item_id", "item", _ITEM_TEXT + ["attempts"]),
        ("users", "user_motivations", "user_id", "user", _USER_TEXT + ["history_item_ids", "attempts"]),
    ):
        path = cfg.table_path(table)
        if not delta.exists(path):
            continue
        rows = delta.read(path, columns=[key, *columns]).sort_by(key)
        ids = items_ids if entity == "item" else user_ids
        out = pa.table({entity: _raw_ids(ids, entity, rows.column(key).to_numpy())})
        for column in columns:
            if column == "history_item_ids":
                history = [[raw_item[i] for i in h or []] for h in rows.column(column).to_pylist()]
                out = out.append_column("history_items", pa.array(history, pa.list_(pa.string())))
            elif column == "motivations_json":
                texts = [_evidence_as(t, raw_item) for t in rows.column(column).to_pylist()]
                out = out.append_column(column, pa.array(texts, pa.string()))
            else:
                out = out.append_column(column, rows.column(column))
        size, digest = _write_parquet(objectstore.join(folder, f"{name}.parquet"), out)
        files[name] = {"rows": out.num_rows, "ok": _ok_count(out), "bytes": size, "sha256": digest}
        written[name] = out.num_rows
        total += size
    user_fp, item_fp = _settings(cfg.motivate, cfg.seed)
    objectstore.write_json(
        objectstore.join(folder, "manifest.json"),
        {
            "format": FORMAT,
            "dataset": cfg.dataset,
            # the fingerprints the rows' hashes were made with (dtype resolved on this machine): import
            # checks each row against them, so an export stays readable when the code's settings move on
            "settings": {"user": user_fp, "item": item_fp},
            "motivate": cfg.motivate.model_dump(mode="json"),
            "files": files,
            "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )
    return TextsExportResult(
        wall_time_s=time.perf_counter() - start,
        folder=folder,
        items=written["items"],
        users=written["users"],
        bytes=total,
    )


def _ok_count(table: pa.Table) -> int:
    return int(pc.sum(pc.equal(table.column("status"), "ok")).as_py() or 0)


def read_manifest(folder: str) -> dict[str, Any]:
    manifest = objectstore.read_json(objectstore.join(folder, "manifest.json"))
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{folder}: texts format {manifest.get('format')!r}, this momorec reads {FORMAT}")
    return manifest


def _read_file(folder: str, name: str, manifest: dict[str, Any]) -> pa.Table | None:
    expected = manifest["files"].get(name)
    if expected is None:
        return None
    data = objectstore.read_bytes(objectstore.join(folder, f"{name}.parquet"))
    if hashlib.sha256(data).hexdigest() != expected["sha256"]:
        raise ValueError(f"{folder}/{name}.parquet does not match its manifest sha256: changed after export")
    return pq.read_table(pa.BufferReader(data))


def _matched(
    exported: pa.Table, entity: str, ids: pa.Table, expected: dict[int, str], now: dict[int, str], present: set
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The exported rows that belong here (dense id known, exported hash = the hash recomputed from
    this warehouse's inputs), each with its dense id and the current hash (naming the window that shaped
    its prompt, if one did: `inputs.window_hash`); and the counts. `present`: (dense id, hash) of the ok
    rows here, as `_present` gives them."""
    dense_of = dict(zip(ids.column(entity).to_pylist(), ids.column(f"{entity}_id").to_pylist(), strict=True))
    counts = {"read": exported.num_rows, "imported": 0, "present": 0, "stale": 0, "unknown": 0}
    rows = []
    for row in exported.to_pylist():
        dense = dense_of.get(row[entity])
        exported_hash, windowed = split_window(row["content_hash"])
        if dense is None:
            counts["unknown"] += 1
        elif expected.get(dense) != exported_hash:
            counts["stale"] += 1
        elif (dense, now[dense] + windowed) in present:
            counts["present"] += 1
        else:
            row[f"{entity}_id"] = dense
            row["content_hash"] = now[dense] + windowed
            rows.append(row)
    counts["imported"] = len(rows)
    return rows, counts


def _present(path: str, schema: pa.Schema, key: str) -> set[tuple[int, str]]:
    existing = delta.read_or_empty(path, schema).select([key, "content_hash", "status"])
    return {
        (int(k), h)
        for k, h, s in zip(*(existing.column(c).to_pylist() for c in (key, "content_hash", "status")), strict=True)
        if s == "ok"
    }


def _embed_and_upsert(
    rows: list[dict[str, Any]], text_column: str, schema: pa.Schema, key: str, path: str, embedder
) -> None:
    """Embed the ok rows' texts (failed rows keep a null embedding) and upsert, EMBED_ROWS at a time."""
    for start in range(0, len(rows), EMBED_ROWS):
        chunk = rows[start : start + EMBED_ROWS]
        ok = [r for r in chunk if r["status"] == "ok"]
        vectors = embedder.embed([r[text_column] or "" for r in ok]) if ok else np.zeros((0, 0), np.float32)
        for row, vector in zip(ok, vectors, strict=True):
            row["embedding"] = vector.astype(np.float32).tolist()
        for row in chunk:
            row.setdefault("embedding", None)
            row.setdefault("attempts", 0)
        delta.upsert(path, pa.Table.from_pylist(chunk, schema=schema), [key])


def _import_items(
    cfg: PlatformConfig, items: pa.Table, catalog: pa.Table, exported_fp: dict, current_fp: dict, embedder
) -> dict[str, int]:
    path = cfg.table_path("item_profiles")
    expected = {r["item_id"]: r["content_hash"] for r in item_inputs(catalog, exported_fp)}
    now = {r["item_id"]: r["content_hash"] for r in item_inputs(catalog, current_fp)}
    present = _present(path, ITEM_PROFILES, "item_id")
    rows, counts = _matched(items, "item", _id_map(cfg, "item"), expected, now, present)
    _embed_and_upsert(rows, "profile_text", ITEM_PROFILES, "item_id", path, embedder)
    return counts


def _import_users(
    cfg: PlatformConfig, users: pa.Table, catalog: pa.Table, exported_fp: dict, current_fp: dict, embedder
) -> dict[str, int]:
    """After the items: in analyst mode a user's inputs hold the item profiles now in the table."""
    m, path = cfg.motivate, cfg.table_path("user_motivations")
    item_ids = _id_map(cfg, "item")
    dense_item = dict(zip(item_ids.column("item").to_pylist(), item_ids.column("item_id").to_pylist(), strict=True))
    sequences = delta.read(cfg.table_path("sequences"), columns=["user_id", "train_items"]).sort_by("user_id")
    analyst = m.agents.item_profiles != "catalog"
    profiles = delta.read_or_empty(cfg.table_path("item_profiles"), ITEM_PROFILES) if analyst else None
    expected = {r["user_id"]: r["content_hash"] for r in user_rows(m, catalog, sequences, profiles, exported_fp)}
    now = {r["user_id"]: r["content_hash"] for r in user_rows(m, catalog, sequences, profiles, current_fp)}
    present = _present(path, USER_MOTIVATIONS, "user_id")
    rows, counts = _matched(users, "user", _id_map(cfg, "user"), expected, now, present)
    for row in rows:
        row["history_item_ids"] = [dense_item[i] for i in row.pop("history_items") or []]
        row["motivations_json"] = _evidence_as(row["motivations_json"], dense_item)
    _embed_and_upsert(rows, "motivation_text", USER_MOTIVATIONS, "user_id", path, embedder)
    return counts


def import_texts(cfg: PlatformConfig, folder: str) -> TextsImportResult:
    """Embed an export's texts with the configured embedder into this warehouse (see the module doc)."""
    import mlflow
    from momorec.core.stage_run import stage_run
    from momorec.llm.base import build_engine
    from momorec.llm.embedder import build_embedder, embedder_identity
    from momorec.motivate.inspect import inspect_motivations, log_quality

    start = time.perf_counter()
    manifest = read_manifest(folder)
    if manifest["dataset"] != cfg.dataset:
        raise ValueError(f"{folder} holds texts of dataset {manifest['dataset']!r}, the config names {cfg.dataset!r}")
    m = cfg.motivate
    exported_user, exported_item = manifest["settings"]["user"], manifest["settings"]["item"]
    user_fp, item_fp = _settings(m, cfg.seed)
    for what, old, new in (("item", exported_item, item_fp), ("user", exported_user, user_fp)):
        differ = generation_differences(old, new)
        if differ:
            raise ValueError(
                f"{folder}: its {what} texts were generated under other settings than this config's "
                f"(differ: {', '.join(differ)}); only the embedder may change on import"
            )
    paths = {name: cfg.table_path(name) for name in ("items", "sequences", "item_profiles", "user_motivations")}
    for name in ("items", "sequences"):
        if not delta.exists(paths[name]):
            raise FileNotFoundError(f"Delta table {paths[name]} does not exist: run `momorec ingest` first")
    read_versions = {name: delta.version(paths[name]) for name in ("items", "sequences")}
    catalog = delta.read(paths["items"])
    identity = embedder_identity(m.embedder, m.llm.model)
    engine = build_engine(m.llm, default_seed=cfg.seed) if m.embedder.kind == "llm" else None
    embedder = build_embedder(m.embedder, engine)
    counts: dict[str, dict[str, int]] = {}

    with stage_run(cfg, "texts_import", {"motivate": m.model_dump(mode="json")}, started=start) as stage:
        stage.read(read_versions)
        mlflow.log_params(
            {"texts.folder": folder, "texts.generated_dtype": exported_user["dtype"], **identity.params()}
        )
        items = _read_file(folder, "items", manifest)
        if items is not None:
            counts["items"] = _import_items(cfg, items, catalog, exported_item, item_fp, embedder)
        users = _read_file(folder, "users", manifest)
        if users is not None:
            counts["users"] = _import_users(cfg, users, catalog, exported_user, user_fp, embedder)
        written = {
            name: stage.wrote(name, delta.version(paths[name])) for name in ("item_profiles", "user_motivations")
        }
        mlflow.log_metrics({f"texts.{f}.{k}": float(v) for f, c in counts.items() for k, v in c.items()})
        log_quality(inspect_motivations(cfg))
        result = TextsImportResult(
            **stage.result_fields(),
            folder=folder,
            embedder=f"{identity.kind}:{identity.name}",
            generated_dtype=exported_user["dtype"],
            counts=counts,
            item_profiles_version=written["item_profiles"],
            user_motivations_version=written["user_motivations"],
        )
    log.info("texts import: %s", result.model_dump_json())
    return result
