"""The data contracts: the Arrow schema of every Delta table the pipeline writes.

Ids are stable int64 assigned at ingest and kept across refreshes. Item id 0 and user id 0 are never
assigned: 0 is the padding index of the recommenders' embedding tables.
"""

from __future__ import annotations

import pyarrow as pa

# ---- ingest -------------------------------------------------------------------------------------
USER_IDS = pa.schema([("user", pa.string()), ("user_id", pa.int64())])
ITEM_IDS = pa.schema([("item", pa.string()), ("item_id", pa.int64())])

# One row per accepted event, ordered per user by (timestamp, batch, event_order).
INTERACTIONS = pa.schema(
    [
        ("user_id", pa.int64()),
        ("item_id", pa.int64()),
        ("user", pa.string()),
        ("item", pa.string()),
        ("timestamp", pa.float64()),  # unix seconds; null for sequence files (file order is time order)
        ("batch", pa.int64()),  # ingest order, breaks ties: the file (its `sources` batch), then
        ("event_order", pa.int64()),  # line << 20 | position in that file
        ("rating", pa.float64()),
        ("event_type", pa.string()),
        ("source", pa.string()),  # file the event came from
    ]
)

# One row per user: the time-ordered history and its leave-one-out split.
SEQUENCES = pa.schema(
    [
        ("user_id", pa.int64()),
        ("items", pa.list_(pa.int64())),  # whole history, oldest first
        ("train_items", pa.list_(pa.int64())),  # items[:-2]: the only part prompts and fits may see
        ("valid_item", pa.int64()),  # items[-2]
        ("test_item", pa.int64()),  # items[-1]
        ("length", pa.int32()),
    ]
)

ITEMS = pa.schema(
    [
        ("item_id", pa.int64()),
        ("item", pa.string()),
        ("title", pa.string()),
        ("categories", pa.list_(pa.string())),  # most specific path, flattened
        ("brand", pa.string()),
        ("price", pa.float64()),
        ("description", pa.string()),
        ("has_catalog", pa.bool_()),  # False: the item is in the logs but not in the catalog
    ]
)

# Every input row that was not accepted, with why. rows read = rows accepted + rows rejected.
REJECTS = pa.schema(
    [
        ("source", pa.string()),
        ("input", pa.string()),  # events | sequences | catalog
        ("line", pa.int64()),
        ("reason", pa.string()),
        ("raw", pa.string()),  # the offending row, truncated to 1 KB, invalid UTF-8 replaced
        ("user", pa.string()),
        ("item", pa.string()),
        ("timestamp", pa.float64()),
        ("batch", pa.int64()),
        ("event_order", pa.int64()),
        ("rating", pa.float64()),
        ("event_type", pa.string()),
    ]
)

# Input files already ingested, so a re-run reads nothing twice.
SOURCES = pa.schema(
    [
        ("path", pa.string()),
        ("input", pa.string()),
        ("sha256", pa.string()),
        ("bytes", pa.int64()),
        ("batch", pa.int64()),
        ("rows_read", pa.int64()),
    ]
)

# ---- quantize ------------------------------------------------------------------------------------
# One row per coded entity: its residual semantic ID under one codebook version.
SEMANTIC_IDS = pa.schema(
    [
        ("entity_type", pa.string()),  # item | user
        ("entity_id", pa.int64()),
        ("codes", pa.list_(pa.int32())),  # one code per level (+ the uniqueness index when on)
        ("codebook_version", pa.string()),  # folder under <dataset>/codebooks/<entity_type>/
        ("fit_member", pa.bool_()),  # True: the entity was in the set the codebook was fit on
        ("residual_norm", pa.float32()),  # ||x - x_hat|| / ||x|| after the last level (reduced space)
    ]
)

# ---- motivate -----------------------------------------------------------------------------------
# One row per item: the item analyst's profile and its pooled LLM embedding. A row whose agent
# failed after its retries is kept with status "failed" and the reason (embedding null).
ITEM_PROFILES = pa.schema(
    [
        ("item_id", pa.int64()),
        ("status", pa.string()),  # ok | failed
        ("failure_reason", pa.string()),  # "" when ok; "<agent>: <reason code>: <detail>" when failed
        ("profile_text", pa.string()),  # the text that was embedded
        ("profile_json", pa.string()),  # the agent's validated answer {"what", "need", "buyers"}
        ("embedding", pa.list_(pa.float32())),  # (hidden_size,) pooled hidden states; null when failed
        # sha256 of (prompt version + templates, model, settings, inputs); + "@window=<max_model_len>" when the
        # engine's window shaped the row's prompt (momorec.motivate.inputs.window_hash)
        ("content_hash", pa.string()),
        ("prompt_version", pa.string()),
        ("model", pa.string()),
        ("attempts", pa.int32()),  # generations spent on this row
    ]
)

# One row per user: motivations from the training prefix only (never valid_item / test_item).
USER_MOTIVATIONS = pa.schema(
    [
        ("user_id", pa.int64()),
        ("status", pa.string()),  # ok | failed
        ("failure_reason", pa.string()),  # failed: why; ok: "" or a non-fatal note (e.g. the reviewer failed)
        ("motivation_text", pa.string()),  # the text that was embedded
        ("motivations_json", pa.string()),  # [{"reason", "evidence_item_ids"}]
        ("review_rounds", pa.int32()),  # revision rounds the reviewer asked for and got
        ("accepted", pa.bool_()),  # True only when the reviewer accepted the final motivations
        ("history_item_ids", pa.list_(pa.int64())),  # exactly the items the prompt saw, oldest first
        ("embedding", pa.list_(pa.float32())),
        ("content_hash", pa.string()),
        ("prompt_version", pa.string()),
        ("model", pa.string()),
        ("attempts", pa.int32()),
    ]
)

# ---- train / evaluate ---------------------------------------------------------------------------
# One row per trained model (one per seed of a train run): what evaluate and serving load.
TRAINED_MODELS = pa.schema(
    [
        ("train_run_id", pa.string()),  # MLflow run of the train stage
        ("seed_run_id", pa.string()),  # its nested MLflow run for this seed
        ("seed", pa.int64()),
        ("architecture", pa.string()),
        ("model_config", pa.string()),  # ModelConfig as JSON
        ("checkpoint", pa.string()),  # checkpoint.pt with config, best weights and history
        ("best_epoch", pa.int64()),
        ("epochs_run", pa.int64()),
        ("valid_ndcg_10", pa.float64()),  # full ranking; the selection metric
        ("model_uri", pa.string()),  # MLflow model (None when not logged)
        ("registered_version", pa.string()),
        ("item_codebook_version", pa.string()),
        ("user_codebook_version", pa.string()),
        ("sequences_version", pa.int64()),
        ("created_at", pa.float64()),  # unix seconds
        ("valid_users", pa.string()),  # the users valid_ndcg_10 is over: "all" or a stable sample (null: all)
    ]
)

# Per-user test ranks of every evaluated model (paired significance tests between any two runs).
EVALUATION_RANKS = pa.schema(
    [
        ("eval_run_id", pa.string()),
        ("train_run_id", pa.string()),
        ("seed", pa.int64()),
        ("protocol", pa.string()),  # full | sampled<n>
        ("user_id", pa.int64()),
        ("rank", pa.int64()),  # 0-based rank of the test item
    ]
)

# ---- recommend ----------------------------------------------------------------------------------
# One row per user: top-K items, best first, explained by the user's motivation and the codes.
RECOMMENDATIONS = pa.schema(
    [
        ("user_id", pa.int64()),
        ("items", pa.list_(pa.int64())),
        ("scores", pa.list_(pa.float32())),
        ("item_codes", pa.list_(pa.list_(pa.int32()))),  # semantic ID of each recommended item (null: none)
        ("user_codes", pa.list_(pa.int32())),  # the user's motivation semantic ID (null: none)
        ("motivation_text", pa.string()),  # the user's accepted motivation (null: none or failed)
        ("train_run_id", pa.string()),
        ("seed", pa.int64()),
        ("created_at", pa.float64()),
    ]
)
