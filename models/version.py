"""What every task's version directory shares: atomic files and the incomplete-version
error (``metrics.json`` is written last, so a directory without it never finished training)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from kaizend.core.errors import KaizendError


class IncompleteVersion(KaizendError, FileNotFoundError):
    """A version directory lacks a file it needs; ``path`` is the directory."""

    def __init__(self, task: str, path: Path, missing: str) -> None:
        super().__init__(
            f"{task} version {path} is incomplete (no {missing}); its training did not finish: "
            "resume it with the same output directory or train it again"
        )
        self.path = path
        self.missing = missing


def fsync_dir(path: Path) -> None:
    """Flush ``path``'s directory entries (a rename or a new file in it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit_file(partial: Path, path: Path) -> None:
    """Make the completely written ``partial`` the file ``path`` in one step.

    Its bytes reach the disk first, then ``os.replace`` swaps it in (atomic on POSIX), then the
    directory entry is flushed: a kill or a power cut at any moment leaves either the old
    ``path`` or the new one, never neither and never a torn file.
    """
    with open(partial, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(partial, path)
    fsync_dir(path.parent)


def write_json(path: Path, payload: Any) -> None:
    """Write JSON atomically (temporary file, then `commit_file`)."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
    commit_file(partial, path)
