"""Confinement of directories named in messages to the directory they must lie in.

Jobs, results and routing entries travel over NATS and name directories: the worker writes
into a job's run directory and loads its champion from there, the daemon registers a
result's version directory, the gateway loads what a routing entry names. Each is resolved
(symlinks followed, ``..`` collapsed) and must lie under the data directory's runs.
"""

from __future__ import annotations

from pathlib import Path

from kaizend.core.errors import PathOutsideRoot


def confined(path: str | Path, root: Path, *, key: str) -> Path:
    """``path`` resolved, when it lies under ``root`` (resolved too); else
    :class:`PathOutsideRoot` naming ``key``, the field that named it."""
    resolved_root = Path(root).resolve()
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_relative_to(resolved_root) or resolved == resolved_root:
        raise PathOutsideRoot(key, str(path), str(resolved_root))
    return resolved
