"""The typed config tree and how it is loaded.

Precedence, lowest first: the defaults written here < the YAML file < `--set section.key=value`
overrides (applied in the order given). Unknown keys and wrong types are errors that name the key.
Environment variables are read only where a tool defines them (`RAY_ADDRESS`, `MLFLOW_TRACKING_URI`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator

from momorec.core.config import ScoringConfig
from momorec.evaluate.config import EvaluateConfig
from momorec.ingest.config import IngestConfig
from momorec.motivate.config import MotivateConfig
from momorec.quantize.config import QuantizeConfig
from momorec.recommend.config import RecommendConfig
from momorec.storage import objectstore
from momorec.storage.locations import resolve_optional, resolve_path, resolve_tracking_uri
from momorec.train.config import TrainConfig
from momorec.typed import StrictModel


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message says which key and why."""


class SparkConfig(StrictModel):
    master: str = Field(
        "local[*]", description="Spark master URL: local[*] here, spark://, yarn or k8s:// on a cluster."
    )
    app_name: str = Field("momorec", description="Spark application name shown in the UI.")
    driver_memory: str = Field("2g", description="spark.driver.memory (local mode runs everything in the driver).")
    shuffle_partitions: int = Field(
        4, ge=1, description="spark.sql.shuffle.partitions; 4 suits 2 cores, raise on a cluster."
    )
    conf: dict[str, str] = Field(default_factory=dict, description="Any further spark.* settings, passed as given.")


# Keys of storage settings that would hold a credential: those belong in the environment or the pod's identity.
_SECRET_SETTING = re.compile(r"SECRET|TOKEN|PASSWORD|ACCESS_KEY|ACCOUNT_KEY|SAS|CREDENTIAL|PRIVATE", re.IGNORECASE)


class StorageConfig(StrictModel):
    """Object-store settings and the run lease (momorec.storage.objectstore, momorec.storage.lease)."""

    options: dict[str, str] = Field(
        default_factory=dict,
        description="Non-secret object-store settings, named as the environment variables pyarrow, delta-rs and "
        "boto3 read (AWS_ENDPOINT_URL, AWS_REGION, AWS_ALLOW_HTTP, AZURE_STORAGE_ACCOUNT_NAME ...). Credentials are "
        "refused here: they come from the environment or the pod's identity.",
    )
    lease_ttl_s: float = Field(
        600.0,
        gt=0,
        description="A run's lease on its dataset expires this long after its last renewal (renewed every third of "
        "it), so a killed run blocks the next one at most this long (at once on the same host: its pid is gone).",
    )
    lease_wait_s: float = Field(
        0.0, ge=0, description="How long a run waits for another run's lease on the same dataset (0: fail at once)."
    )

    @field_validator("options")
    @classmethod
    def _no_credentials(cls, options: dict[str, str]) -> dict[str, str]:
        for key in options:
            if not re.fullmatch(r"[A-Z][A-Z0-9_]*", key):
                raise ValueError(f"{key!r} is not an environment-variable name (AWS_ENDPOINT_URL, AWS_REGION ...)")
            if _SECRET_SETTING.search(key):
                raise ValueError(
                    f"{key} is a credential: put it in the environment (or use the pod's identity), not in a config "
                    "file that is logged, copied and committed"
                )
        return options


class RayConfig(StrictModel):
    address: str | None = Field(
        None, description="ray:// or host:port of a cluster; None = RAY_ADDRESS or a local Ray."
    )
    num_cpus: int | None = Field(
        None, description="Logical CPUs of a local Ray. More than the cores avoids the 2-core actor-pool deadlock."
    )
    object_store_memory_mb: int | None = Field(
        None, description="Object store size of a local Ray (None = Ray's default)."
    )


class TrackingConfig(StrictModel):
    tracking_uri: str | None = Field(
        None, description="MLflow tracking URI; None = MLFLOW_TRACKING_URI, else sqlite:///<root>/mlflow.db."
    )
    experiment: str = Field("momorec", description="MLflow experiment the runs go to.")
    artifact_location: str | None = Field(
        None, description="Artifact root for a new experiment (None = beside the store)."
    )


class PipelineConfig(StrictModel):
    stages: list[str] = Field(
        default_factory=lambda: ["ingest", "motivate", "quantize", "train", "evaluate", "recommend"],
        description="Stages `momorec run` executes, in order; by default the whole pipeline.",
    )
    skip_unchanged: bool = Field(
        True,
        description="Skip a stage whose input table versions and config equal those of its last finished run "
        "(ingest skips unchanged input files itself; motivate also skips finished rows by content hash).",
    )
    promote_tolerance: float = Field(
        0.0, ge=0.0, description="A new model becomes @champion when its validation NDCG@10 >= the champion's - this."
    )


class RefreshConfig(StrictModel):
    """What the nightly `momorec refresh` changes relative to a full run (everything else is shared)."""

    stages: list[str] = Field(
        default_factory=lambda: ["ingest", "motivate", "quantize", "train", "evaluate", "recommend"],
        description="Stages of the refresh, in order; the new logs go to ingest.",
    )
    quantize_mode: Literal["fit", "assign", "auto"] = Field(
        "auto",
        description="quantize.mode for the refresh: auto = frozen codebooks, refit when drift passes the threshold.",
    )
    epochs: int = Field(3, ge=1, description="train.epochs for the warm-started model.")
    seeds: list[int] | None = Field(
        None, description="train.seeds of the refresh; None = the champion's seed only (one warm-started model)."
    )
    patience: int = Field(2, ge=1, description="train.patience for the warm-started model.")
    warm_start: bool = Field(True, description="Initialise training from the @champion's weights (when there is one).")
    train_users: Literal["changed", "all"] = Field(
        "changed",
        description="changed: the warm-started model trains on the users whose sequence changed since the champion "
        "was trained plus a replay sample (`replay_ratio` per changed user); all: on every user.",
    )
    replay_ratio: float = Field(4.0, ge=0, description="train.replay_ratio of the refresh (with train_users: changed).")
    recommend_users: Literal["changed", "all"] = Field(
        "changed",
        description="recommend.users of the refresh: changed rescores only the users whose recommendations can "
        "differ while the served model is the same (a new @champion rescores everyone).",
    )
    metric_users: int | None = Field(
        50_000,
        ge=1,
        description="The refresh's validation, the champion's rescoring at promotion and its evaluation score a stable "
        "seeded sample of about this many users (train.valid_users, evaluate.users); None = every user.",
    )
    retry_failed: bool = Field(
        False,
        description="Re-run LLM rows that failed before. Off: a night redoes only what its logs change (a retried item "
        "profile changes the hash of every user who bought it: 8 retried items re-ran 30 more users on the demo); "
        "the full run retries failures.",
    )


class PlatformConfig(StrictModel):
    """Everything one pipeline run needs."""

    dataset: str = Field(description="Dataset name: tables go to <warehouse>/<dataset>/.")
    warehouse: str = Field(
        "warehouse",
        description="Root folder (or object-store URI) of the Delta tables; a relative folder is relative to the "
        "folder the command was started in (resolved when the config is loaded).",
    )
    log_dir: str = Field(
        "logs",
        description="Where `momorec run`/`refresh` and the stage commands write their full log (relative: to the "
        "folder the command was started in).",
    )
    seed: int = Field(2026, description="Global seed; each stage derives its own from it unless it sets one.")
    storage: StorageConfig = Field(default_factory=StorageConfig)
    spark: SparkConfig = Field(default_factory=SparkConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    motivate: MotivateConfig = Field(default_factory=MotivateConfig)
    quantize: QuantizeConfig = Field(default_factory=QuantizeConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    recommend: RecommendConfig = Field(default_factory=RecommendConfig)
    refresh: RefreshConfig = Field(default_factory=RefreshConfig)

    @field_validator("dataset")
    @classmethod
    def _dataset_is_a_safe_name(cls, value: str) -> str:
        # The name becomes a folder under the warehouse: `../x` or `/abs` would write outside it.
        if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}", value):
            raise ValueError(
                f"{value!r} is not a safe dataset name: use 1-128 ASCII letters, digits, '_', '-' and '.' "
                "(not leading), no '/'"
            )
        return value

    @property
    def dataset_root(self) -> str:
        return objectstore.join(self.warehouse, self.dataset)

    def table_path(self, name: str) -> str:
        """Where the Delta table `name` of this dataset lives."""
        return objectstore.join(self.dataset_root, name)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (["a", "b", "c"], value parsed as YAML, so 5 is an int and [1, 2] a list)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form section.key=value")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from exc
    return parts, value


def apply_override(tree: dict[str, Any], parts: list[str], value: Any) -> None:
    node = tree
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {'.'.join(parts)}: {'.'.join(parts[: depth + 1])} is not a section")
        node = child
    node[parts[-1]] = value


def _input_locations(tree: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """(mapping, key) of every input path in a config tree: the event sources and the catalog."""
    ingest = tree.get("ingest") or {}
    found = [(source, "path") for source in ingest.get("sources") or [] if isinstance(source, dict)]
    if isinstance(ingest.get("catalog"), dict):
        found.append((ingest["catalog"], "path"))
    return [(node, key) for node, key in found if isinstance(node.get(key), str)]


def _output_locations(tree: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """(mapping, key) of every other location: warehouse, staging, checkpoints, caches, markers, logs."""
    train = tree["train"]
    found = [
        (tree, "warehouse"),
        (tree, "log_dir"),
        (tree["ingest"], "staging_dir"),
        (tree["motivate"]["llm"], "cache_dir"),
        (train, "checkpoint_dir"),
        (train, "warm_start"),
        (tree["tracking"], "artifact_location"),
    ]
    if train.get("fault_injection"):
        found.append((train["fault_injection"], "marker"))
    return found


def resolve_locations(cfg: PlatformConfig, cwd: str | None = None) -> PlatformConfig:
    """The same config with every location absolute (or a URI), relative ones against `cwd`.

    Input paths written in a config file were already resolved against that file's folder by
    `load_config`; what is still relative here came from `--set` or code and means the working folder.
    """
    base = os.path.abspath(cwd or os.getcwd())
    tree = cfg.model_dump(mode="json")
    for node, key in [*_input_locations(tree), *_output_locations(tree)]:
        node[key] = resolve_optional(node.get(key), base)
    if tree["tracking"].get("tracking_uri"):
        tree["tracking"]["tracking_uri"] = resolve_tracking_uri(tree["tracking"]["tracking_uri"], base)
    return PlatformConfig.model_validate(tree)


def read_yaml_mapping(path: str | os.PathLike[str], what: str) -> dict[str, Any]:
    """The mapping at the top of a YAML file; a missing file, bad YAML or a non-mapping is a ConfigError."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"{what} {file} does not exist")
    try:
        loaded = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} {file} is not valid YAML: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"{what} {file} must hold a mapping at the top level")
    return loaded


def load_config(path: str | os.PathLike[str] | None = None, overrides: list[str] | None = None) -> PlatformConfig:
    """Read a YAML config, apply `--set` overrides in order, validate the whole tree.

    Input paths inside the file resolve against the file's folder; every other location (warehouse,
    staging, checkpoints, tracking store, and any path given with `--set`) against the working folder,
    where a user expects their outputs. The returned config holds only absolute paths and URIs.
    """
    tree: dict[str, Any] = {}
    if path is not None:
        tree = read_yaml_mapping(path, "config file")
        folder = str(Path(path).resolve().parent)
        for node, key in _input_locations(tree):
            node[key] = resolve_path(node[key], folder)
    for text in overrides or []:
        parts, value = parse_override(text)
        apply_override(tree, parts, value)
    try:
        return resolve_locations(PlatformConfig.model_validate(tree))
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise ConfigError("invalid config:\n" + "\n".join(lines)) from exc
