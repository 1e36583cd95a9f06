"""The on-disk layout of one trained retriever version.

A version is a directory::

    model/            the fine-tuned sentence-transformers model
    config.json       the training settings, the base model's path and fingerprint, the loss
    manifest.json     the training pairs used: count, hash, query and event ids
    metrics.json      training metrics; written last, so its presence marks a complete version
    checkpoints/      only while training: the trainer's resumable checkpoints

The built-in version ``base`` is the base embedder itself and has no directory.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaizend.models.retriever.base import BUILTIN_VERSION, base_path
from kaizend.models.version import IncompleteVersion

MODEL_DIR = "model"
CONFIG_FILE = "config.json"
MANIFEST_FILE = "manifest.json"
METRICS_FILE = "metrics.json"
CHECKPOINT_DIR = "checkpoints"


def manifest(pairs: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Count, order-independent hash, and the query and event ids of training pairs."""
    pairs = list(pairs)
    rows = sorted(
        f"{pair['query_id']}\t{pair['anchor']}\t{pair['positive_id']}\t"
        f"{','.join(pair.get('negative_ids', []))}"
        for pair in pairs
    )
    events = sorted({event for pair in pairs for event in pair.get("event_ids", [])})
    return {
        "count": len(rows),
        "sha256": hashlib.sha256("\n".join(rows).encode()).hexdigest(),
        "query_ids": sorted({pair["query_id"] for pair in pairs}),
        "event_ids": events,
    }


def version_label(version: str | Path) -> str:
    """A short name for a version: ``base`` or the directory's name."""
    if isinstance(version, str) and version == BUILTIN_VERSION:
        return BUILTIN_VERSION
    return Path(version).resolve().name


@dataclass(frozen=True)
class RetrieverVersion:
    """A complete version directory, read back."""

    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]

    @property
    def model_path(self) -> Path:
        """The sentence-transformers directory."""
        return self.path / MODEL_DIR

    @classmethod
    def load(cls, path: Path) -> RetrieverVersion:
        """Read a version directory; `IncompleteVersion` when training never finished."""
        path = Path(path)
        for name in (METRICS_FILE, CONFIG_FILE, MODEL_DIR):
            if not (path / name).exists():
                raise IncompleteVersion("embedder", path, name)
        return cls(
            path=path,
            config=json.loads((path / CONFIG_FILE).read_text()),
            metrics=json.loads((path / METRICS_FILE).read_text()),
        )


def model_dir(version: str | Path, base_model: str | Path = "") -> Path:
    """The sentence-transformers directory of ``version`` (``base`` or a version dir)."""
    if isinstance(version, str) and version == BUILTIN_VERSION:
        return base_path(base_model)
    return RetrieverVersion.load(Path(version)).model_path
