"""What input-drift checks compare between two windows of a task's stored queries.

A task names its fields with `Task.drift_fields` (a `DriftFields`): categorical ones (their
distributions are compared with chi-square / PSI) and numeric ones (Kolmogorov-Smirnov /
Wasserstein), each read out of a query's text and stored output by ``extract``. A task that
names none gets `TEXT_FIELDS`: the length of the text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

NONE = "none"
"""The category of a query that has no value for a categorical field."""


@dataclass(frozen=True)
class DriftFields:
    categorical: tuple[str, ...]
    numeric: tuple[str, ...]
    extract: Callable[[str, Any], dict[str, Any]]
    """(text, output) -> {field: value}; a numeric value may be None (the query has none)."""


def _text_length(text: str, output: Any) -> dict[str, Any]:
    return {"query_length": float(len(text))}


TEXT_FIELDS = DriftFields(categorical=(), numeric=("query_length",), extract=_text_length)
