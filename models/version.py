"""What every task's version directory shares: atomic JSON files and the incomplete-version
error (``metrics.json`` is written last, so a directory without it never finished training)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.errors import KaizendError


class IncompleteVersion(KaizendError, FileNotFoundError):
    """A version directory lacks a file it needs; ``path`` is the directory."""

    def __init__(self, task: str, path: Path, missing: str) -> None:
        super().__init__(
            f"{task} version {path} is incomplete (no {missing}); its training did not finish: "
            "resume it with the same output directory or train it again"
        )
        self.path = path
        self.missing = missing


def write_json(path: Path, payload: Any) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    partial.replace(path)
