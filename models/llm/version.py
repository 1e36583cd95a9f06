"""The on-disk layout of one trained LLM version.

A version is a directory::

    adapter/              the LoRA adapter (adapter_model.safetensors + adapter_config.json)
    base.json             the base it was trained on: path, fingerprint
    config.json           the LlmTrainingConfig used
    codec.json            the codec it was trained with (`Codec.describe`)
    manifest.json         training example ids and a hash over the examples
    metrics.json          training metrics; written last, so its presence marks a
                          complete version
    checkpoint/           only while training: the resumable state
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaizend.models.llm.config import LlmTrainingConfig
from kaizend.models.version import IncompleteVersion

ADAPTER_DIR = "adapter"
BASE_FILE = "base.json"
CONFIG_FILE = "config.json"
CODEC_FILE = "codec.json"
MANIFEST_FILE = "manifest.json"
METRICS_FILE = "metrics.json"
CHECKPOINT_DIR = "checkpoint"


def manifest(examples: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Ids of the training examples and a hash of their content, order-independent."""
    rows = sorted(
        f"{example.get('id', '')}\t{example['text']}\t"
        f"{json.dumps(example['expected'], sort_keys=True)}"
        for example in examples
    )
    digest = hashlib.sha256("\n".join(rows).encode()).hexdigest()
    ids = sorted(str(example.get("id", "")) for example in examples)
    return {"count": len(rows), "sha256": digest, "ids": ids}


@dataclass(frozen=True)
class LlmVersion:
    """A complete version directory, read back."""

    path: Path
    base_path: Path
    base_fingerprint: str
    config: LlmTrainingConfig
    metrics: dict[str, Any]
    codec: dict[str, Any]
    """What `Codec.describe` said of the codec it was trained with."""

    @property
    def adapter_path(self) -> Path:
        """Directory of the peft adapter."""
        return self.path / ADAPTER_DIR

    @classmethod
    def load(cls, path: Path) -> LlmVersion:
        """Read a version directory; `IncompleteVersion` when training never finished."""
        path = Path(path)
        for name in (METRICS_FILE, BASE_FILE, CONFIG_FILE, CODEC_FILE, ADAPTER_DIR):
            if not (path / name).exists():
                raise IncompleteVersion("llm", path, name)
        base = json.loads((path / BASE_FILE).read_text())
        return cls(
            path=path,
            base_path=Path(base["path"]),
            base_fingerprint=base["fingerprint"],
            config=LlmTrainingConfig.model_validate_json((path / CONFIG_FILE).read_text()),
            metrics=json.loads((path / METRICS_FILE).read_text()),
            codec=json.loads((path / CODEC_FILE).read_text()),
        )
