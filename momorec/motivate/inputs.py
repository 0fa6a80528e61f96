"""Pure functions from the ingest tables to the agents' inputs, and the content hashes that make
the stage incremental.

LEAKAGE RULE: a user's prompt is built from `sequences.train_items` only (its most recent N);
`valid_item` and `test_item` are never read here.

A content hash digests everything that determines a row's output: the prompt templates and their
version, the model, the decoding settings, the embedder (the LLM's pooling settings, or a sentence
model's name and package version), and the row's own inputs. A row whose hash
is already in the output table with status "ok" is skipped, so a re-run on unchanged data does no
LLM work, and a changed title, template or model recomputes exactly the rows it touches.

The engine's window (llm.max_model_len) decides a row's output only when its prompt did not fit as
rendered (narrowed, shortened, or refused as too long): such a row stores `window_hash`, the hash with
the window named, and a run under another window redoes it (`skip_key`). Every other row keeps the plain
hash, so changing the window redoes the rows it shaped and no others. (Lowering it does not redo a row
whose prompt fitted the old window in full: its answer saw the whole input.)
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from momorec.llm.config import resolved_dtype
from momorec.llm.embedder import embedder_identity
from momorec.motivate.config import MotivateConfig
from momorec.motivate.prompts import catalog_hint, history_detail, sanitize

ITEM_FIELDS = ("title", "categories", "brand", "price", "description")


def _model_settings(cfg: MotivateConfig, prompt_digest: str, model_name: str, seed: int) -> dict[str, Any]:
    """What changes every output of the engine: templates, weights, decoding and the embedder."""
    llm, a = cfg.llm, cfg.agents
    return {
        "prompt_version": a.prompt_version,
        "prompts": prompt_digest,
        "model": model_name,
        "dtype": resolved_dtype(llm),
        "decode": [llm.temperature, llm.repetition_penalty, seed, a.max_attempts, a.retry_temperature]
        + ([llm.penalty_scope] if llm.penalty_scope != "prompt_and_output" else []),  # old hashes stay valid
        "embed": _embed_settings(cfg),
    }


def _embed_settings(cfg: MotivateConfig) -> list[Any]:
    """kind llm: the LLM's pooling settings, exactly the list of the hashes written before the embedder
    could be chosen (so existing rows keep their hashes). kind sentence: the model, its package
    version and the normalisation; the LLM's pooling settings then change nothing."""
    e, llm = cfg.embedder, cfg.llm
    if e.kind == "llm":
        return [llm.embed_layer, llm.embed_pooling, llm.embed_normalize, llm.embed_max_tokens]
    identity = embedder_identity(e, llm_model="")
    return [identity.kind, identity.name, identity.version, e.normalize]


def settings_fingerprint(cfg: MotivateConfig, prompt_digest: str, model_name: str, seed: int) -> dict[str, Any]:
    """The settings that change a user's outputs (not the engine kind, batch sizes or actor counts)."""
    a = cfg.agents
    agents = [a.history_items, a.max_motivations, a.max_review_rounds, a.item_profiles, a.reason_pattern]
    if a.max_review_rounds > 0:  # a reviewer setting that cannot act leaves the users' hashes alone
        agents.append(a.critique_pattern)
    return {
        **_model_settings(cfg, prompt_digest, model_name, seed),
        "tokens": [a.item_max_tokens, a.motivation_max_tokens, a.review_max_tokens, a.max_field_chars],
        "agents": agents,
    }


def item_fingerprint(cfg: MotivateConfig, item_prompt_digest: str, model_name: str, seed: int) -> dict[str, Any]:
    """The settings that change an item's profile and embedding. The user agents' settings stay out:
    tuning the reviewer re-motivates users, never re-profiles (or re-embeds) the whole catalog."""
    a = cfg.agents
    return {
        **_model_settings(cfg, item_prompt_digest, model_name, seed),
        "tokens": [a.item_max_tokens, a.max_field_chars],
        "item_profiles": a.item_profiles,
    } | ({"profile_pattern": a.profile_pattern} if a.profile_pattern is not None else {})


def content_hash(fingerprint: dict[str, Any], inputs: Any) -> str:
    payload = json.dumps({"settings": fingerprint, "inputs": inputs}, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


WINDOW_MARK = "@window="


def window_hash(content_hash: str, max_model_len: int | None) -> str:
    """The stored hash of a row whose prompt the window shaped: the content hash and the window."""
    return f"{content_hash}{WINDOW_MARK}{max_model_len}"


def split_window(stored_hash: str) -> tuple[str, str]:
    """(content hash, the window mark and window, or "") of a stored hash."""
    base, mark, window = stored_hash.partition(WINDOW_MARK)
    return base, mark + window


def skip_key(stored_hash: str, max_model_len: int | None) -> str | None:
    """The content hash a stored row stands for under this window: its own, or None (redo it) when
    another window shaped its prompt."""
    base, windowed = split_window(stored_hash)
    if not windowed:
        return stored_hash
    return base if windowed == f"{WINDOW_MARK}{max_model_len}" else None


def item_inputs(items: pa.Table, fingerprint: dict[str, Any]) -> list[dict[str, Any]]:
    """One dict per item: item_id, the catalog fields, and its content_hash."""
    rows = []
    for item in items.select(["item_id", *[f for f in ITEM_FIELDS if f in items.column_names]]).to_pylist():
        fields = {f: item.get(f) for f in ITEM_FIELDS}
        rows.append({"item_id": int(item["item_id"]), **fields, "content_hash": content_hash(fingerprint, fields)})
    return rows


def recent_history(train_items: list[int] | None, n: int) -> list[int]:
    """The most recent `n` training items, oldest first (train_items is already oldest first)."""
    return [int(i) for i in (train_items or [])[-n:]]


def user_inputs(
    sequences: pa.Table,
    titles: dict[int, str],
    profiles: dict[int, str],
    history_items: int,
    fingerprint: dict[str, Any],
) -> list[dict[str, Any]]:
    """One dict per user: user_id, history_item_ids, titles, profiles (aligned) and content_hash.

    Reads only `user_id` and `train_items` of `sequences` (the leakage rule); an item without an
    ok profile is shown by its title alone.
    """
    rows = []
    for seq in sequences.select(["user_id", "train_items"]).to_pylist():
        history = recent_history(seq["train_items"], history_items)
        row = {
            "user_id": int(seq["user_id"]),
            "history_item_ids": history,
            "titles": [titles.get(i) or "" for i in history],
            "profiles": [profiles.get(i) or "" for i in history],
        }
        row["content_hash"] = content_hash(fingerprint, [row["history_item_ids"], row["titles"], row["profiles"]])
        rows.append(row)
    return rows


USER_INPUTS = pa.schema(
    [
        ("user_id", pa.int64()),
        ("history_item_ids", pa.list_(pa.int64())),
        ("titles", pa.list_(pa.string())),
        ("profiles", pa.list_(pa.string())),
        ("content_hash", pa.string()),
    ]
)
LOOKUP = pa.schema([("item_id", pa.int64()), ("title", pa.string()), ("shown", pa.string())])


def item_lookup(cfg: MotivateConfig, catalog: pa.Table, profiles: pa.Table | None) -> pa.Table:
    """(item_id, title, shown) per catalog item: how a user prompt shows each history item. Its sanitized title
    and, in catalog mode, its category path and brand, else the detail of its ok `item_profiles` row
    (`profiles`: that table; unread in catalog mode; null where the item has none). Catalog-sized: what every
    builder of user inputs holds (broadcast through the object store), never the users."""
    width = cfg.agents.history_chars
    ids = catalog.column("item_id").to_pylist()
    titles = [sanitize(t, width) for t in catalog.column("title").to_pylist()]
    if cfg.agents.item_profiles == "catalog":
        # no analyst profile: a purchase line shows its title and category path / brand (titles
        # alone left SmolLM2 writing "buynail art."-like motivations on Beauty)
        shown = [sanitize(catalog_hint(row), width) for row in catalog.to_pylist()]
    else:
        if profiles is None:
            raise ValueError("item_profiles=analyst needs the item_profiles table")
        ok = profiles.filter(pc.equal(profiles.column("status"), "ok"))
        detail = {
            row["item_id"]: sanitize(history_detail(row, cfg.agents.history_detail), width)
            for row in ok.select(["item_id", "profile_text", "profile_json"]).to_pylist()
        }
        shown = [detail.get(i) for i in ids]
    return pa.table({"item_id": ids, "title": titles, "shown": shown}, schema=LOOKUP)


class UserInputs:
    """`sequences` batches (user_id, train_items) -> USER_INPUTS batches: a Ray Data map_batches callable (and a
    plain function object) that holds the catalog `item_lookup` once and hashes each user's inputs."""

    def __init__(self, lookup: Any, history_items: int, fingerprint_json: str, only: Any = None) -> None:
        if not isinstance(lookup, pa.Table):  # object-store references: every builder reads the one copy
            import ray

            lookup = ray.get(lookup)
            only = None if only is None else ray.get(only)
        self.only = only  # the run's user ids when it is a slice or a sample, else None (every user)
        ids = lookup.column("item_id").to_pylist()
        self.titles = dict(zip(ids, lookup.column("title").to_pylist(), strict=True))
        self.shown = {i: v for i, v in zip(ids, lookup.column("shown").to_pylist(), strict=True) if v is not None}
        self.history_items = history_items
        self.fingerprint = json.loads(fingerprint_json)

    def __call__(self, batch: pa.Table) -> pa.Table:
        if self.only is not None:
            batch = batch.filter(pc.is_in(batch.column("user_id"), self.only))
        rows = user_inputs(batch, self.titles, self.shown, self.history_items, self.fingerprint)
        return pa.Table.from_pylist(rows, schema=USER_INPUTS)


def user_rows(
    cfg: MotivateConfig,
    catalog: pa.Table,
    sequences: pa.Table,
    profiles: pa.Table | None,
    fingerprint: dict[str, Any],
) -> list[dict[str, Any]]:
    """`user_inputs` of a whole `sequences` table, each history item shown as `item_lookup` shows it."""
    build = UserInputs(
        item_lookup(cfg, catalog, profiles), cfg.agents.history_items, json.dumps(fingerprint, default=str)
    )
    return build(sequences).to_pylist()


def pending(
    rows: list[dict[str, Any]], existing: pa.Table, key: str, retry_failed: bool, max_model_len: int | None
) -> list[dict[str, Any]]:
    """The rows that need LLM work: no stored row with the same content hash (`skip_key`, under this
    window) and status ok (or, with retry_failed=False, with any status)."""
    done: set[tuple[int, str]] = set()
    for row in existing.select([key, "content_hash", "status"]).to_pylist():
        if row["status"] == "ok" or not retry_failed:
            if (hashed := skip_key(row["content_hash"], max_model_len)) is not None:
                done.add((int(row[key]), hashed))
    return [r for r in rows if (r[key], r["content_hash"]) not in done]
