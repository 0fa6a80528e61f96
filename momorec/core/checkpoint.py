"""Checkpoints that carry their config: enough to resume training, or to rebuild the best model alone.

One file, `checkpoint.pt`, anywhere `momorec.storage.objectstore` reaches (a local folder, s3://,
gs://, abfss://). It is read with `torch.load(weights_only=True)`: only tensors, containers and
primitives unpickle, so a checkpoint from an untrusted location cannot run code. It is a dict:
    format          2 (1: written before the backbones were composed of parts; its weights are renamed on load)
    model_config    ModelConfig as a dict (the model is rebuilt from it, never from a file name)
    num_items       N
    seed            training seed
    item_semantic / user_semantic   {"codes", "num_codes", "centroids", "version"} or None
    model_state     current weights (to resume)
    optimizer_state Adam moments (to resume)
    train_state     TrainState.as_dict(): epoch, best epoch/metric/weights, patience, history
"""

from __future__ import annotations

import io
import math
import pickle
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from momorec.models import ModelConfig, SemanticInputs, SequentialRecommender, build_model
from momorec.storage import objectstore

FILE = "checkpoint.pt"
FORMAT = 2
# Besides tensors and primitives, the weights-only unpickler may rebuild numpy scalars and arrays
# (a metric once stored as np.float64): their reconstructors only allocate data, they call nothing.
_NUMPY_GLOBALS = [
    np._core.multiarray.scalar,
    np._core.multiarray._reconstruct,
    np.ndarray,
    np.dtype,
    *(type(np.dtype(kind)) for kind in ("float64", "float32", "int64", "int32", "bool")),
]
# Format 1 kept the embedder's and the Transformer's weights at the top of the model; format 2 nests
# them under `embedder.` and `encoder.` (momorec.models.parts / transformer). GRU4Rec's own layers
# and BERT4Rec's head kept their names.
_FORMAT_1_PREFIXES = {
    "item_id_embedding.": "embedder.item_id_embedding.",
    "item_semantic.": "embedder.item_semantic.",
    "user_semantic.": "embedder.user_semantic.",
    "position_embedding.": "encoder.position_embedding.",
    "input_norm.": "encoder.input_norm.",
    "blocks.": "encoder.blocks.",
}


@dataclass
class TrainState:
    """What a checkpoint needs to resume: epoch counter, best-so-far, patience and history."""

    epoch: int = 0  # next epoch to run
    best_epoch: int = -1
    best_metric: float = -math.inf
    best_state: dict[str, torch.Tensor] | None = None
    bad_epochs: int = 0
    stopped_early: bool = False
    stopped_by_time: bool = False
    resumed_at: list[int] = field(default_factory=list)  # epochs at which a restarted run picked up
    warm_start: dict[str, int] = field(default_factory=dict)  # warm_start.copied/grown/skipped tensors, if any
    history: list[dict[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict) -> TrainState:
        return cls(**data)


def upgraded_weights(payload: dict, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A checkpoint's weights under today's names (format 1 is renamed; an unknown format is an error)."""
    fmt = payload.get("format")
    if fmt == FORMAT:
        return weights
    if fmt != 1:
        raise ValueError(f"checkpoint format {fmt!r} is not known to this version (it reads 1 and {FORMAT})")
    renamed = {}
    for name, value in weights.items():
        old = next((prefix for prefix in _FORMAT_1_PREFIXES if name.startswith(prefix)), None)
        renamed[_FORMAT_1_PREFIXES[old] + name[len(old) :] if old else name] = value
    return renamed


def _semantic_dict(inputs: SemanticInputs | None) -> dict | None:
    return None if inputs is None else asdict(inputs)


def _semantic_from(data: dict | None) -> SemanticInputs | None:
    return None if data is None else SemanticInputs(**data)


def save_checkpoint(
    folder: str,
    model: SequentialRecommender,
    optimizer: torch.optim.Optimizer | None,
    state: TrainState,
    seed: int,
    item_semantic: SemanticInputs | None,
    user_semantic: SemanticInputs | None,
) -> str:
    """Write `folder/checkpoint.pt` (any objectstore location) atomically; return its location."""
    payload = {
        "format": FORMAT,
        "model_config": model.cfg.model_dump(),
        "num_items": model.num_items,
        "seed": seed,
        "item_semantic": _semantic_dict(item_semantic),
        "user_semantic": _semantic_dict(user_semantic),
        "model_state": model.state_dict(),
        "optimizer_state": optimizer.state_dict() if optimizer is not None else None,
        "train_state": state.as_dict(),
    }
    location = objectstore.join(folder, FILE)
    write_checkpoint(location, payload)
    return location


def write_checkpoint(location: str, payload: dict) -> None:
    """Serialise in memory, then one atomic write (a local rename or one object-store PUT)."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    objectstore.write_bytes(location, buffer.getvalue())


def checkpoint_file(location: str) -> str:
    """The checkpoint file a location names: the file itself, or `checkpoint.pt` in that folder."""
    if objectstore.name(location) != FILE and objectstore.is_dir(location):
        return objectstore.join(location, FILE)
    return location


def read_checkpoint(data: bytes, source: str = "checkpoint") -> dict:
    """The checkpoint dict in `data`, unpickled with weights_only=True (an error for anything else)."""
    try:
        with torch.serialization.safe_globals(_NUMPY_GLOBALS):
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ValueError(
            f"{source} is not a plain weights checkpoint (it would unpickle objects other than tensors, "
            f"containers and numbers), refused: {str(exc).splitlines()[0]}"
        ) from exc


def load_checkpoint(location: str) -> dict:
    """The checkpoint dict (location = the file or its folder, local or on an object store)."""
    path = checkpoint_file(location)
    if not objectstore.is_file(path):
        raise FileNotFoundError(f"no checkpoint at {path}")
    return read_checkpoint(objectstore.read_bytes(path), source=path)


def train_state(payload: dict) -> TrainState:
    """The training state to resume from, its best weights under today's names."""
    state = TrainState.from_dict(payload["train_state"])
    if state.best_state is not None:
        state.best_state = upgraded_weights(payload, state.best_state)
    return state


def model_from_checkpoint(payload: dict, which: str = "best") -> SequentialRecommender:
    """Rebuild the model a checkpoint describes, with its best (default) or current weights, in eval mode."""
    cfg = ModelConfig.model_validate(payload["model_config"])
    model = build_model(
        cfg,
        payload["num_items"],
        _semantic_from(payload["item_semantic"]),
        _semantic_from(payload["user_semantic"]),
        seed=payload["seed"],
    )
    weights = payload["train_state"]["best_state"] if which == "best" else payload["model_state"]
    if weights is None:
        raise ValueError("checkpoint holds no best weights yet (no epoch finished)")
    model.load_state_dict(upgraded_weights(payload, weights))
    return model.eval()


def warm_start(model: SequentialRecommender, payload: dict) -> dict[str, int]:
    """Initialise `model` from a checkpoint's best weights (the nightly refresh starts from the champion).

    Tensors of equal shape are copied. A table that grew along its first axis (new items or users
    since the champion was trained) gets the champion's rows and keeps its fresh initialisation for
    the new rows. Buffers that describe the data rather than learned weights (semantic codes,
    frozen codebook vectors) are left as the current tables built them. Returns counts for MLflow.
    """
    source = upgraded_weights(payload, payload["train_state"]["best_state"] or payload["model_state"])
    target = model.state_dict()
    learned = {name for name, _ in model.named_parameters()}
    copied = grown = skipped = 0
    with torch.no_grad():
        for name, value in source.items():
            if name not in target or name not in learned:
                skipped += 1
                continue
            current = target[name]
            if current.shape == value.shape:
                current.copy_(value)
                copied += 1
            elif (
                current.dim() == value.dim()
                and current.shape[1:] == value.shape[1:]
                and current.shape[0] > value.shape[0]
            ):
                # Special tokens (BERT4Rec's mask) sit after the items: they stay at the end.
                tail = model.embedder.extra_tokens if name == "embedder.item_id_embedding.weight" else 0
                head = value.shape[0] - tail
                current[:head].copy_(value[:head])
                if tail:
                    current[-tail:].copy_(value[-tail:])
                grown += 1
            else:
                skipped += 1
    return {"warm_start.copied": copied, "warm_start.grown": grown, "warm_start.skipped": skipped}
