"""The task interface: what orchestration, the offline gate and experiments know of a model.

A task (the FIT query parser, the retrieval embedder, ...) builds a training set from the
events stored in DuckDB, trains a version directory, evaluates any version with one evaluator
that names its primary metric, and loads a version for prediction. Everything above the task
speaks only to this protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import duckdb


@dataclass(frozen=True)
class TrainingSet:
    """Examples to train on and to validate with, and the stored events they came from."""

    train: Sequence[dict[str, Any]]
    validation: Sequence[dict[str, Any]]
    event_ids: dict[str, list[str]] = field(default_factory=dict)
    """Ids of the events used, by kind (``correction``, ``feedback``): the lineage."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Events that could not become examples, by reason."""


class Task(Protocol):
    """One kind of model kaizend keeps improving."""

    name: str
    primary_metric: str
    greater_is_better: bool
    builtin_version: str
    """What version 0 is (the parser's rules, the base embedder), for the registry."""

    def build_training_set(self, con: duckdb.DuckDBPyConnection) -> TrainingSet:
        """Examples from the task's base data merged with the signal stored in ``con``."""
        ...

    def train(
        self,
        training_set: TrainingSet,
        out_dir: Path,
        *,
        progress: Callable[[Any], None] | None = None,
        progress_bar: bool = False,
    ) -> Path:
        """Train a version into ``out_dir`` (resuming a checkpoint there); return it.

        ``progress`` receives every step; ``progress_bar`` shows one on the terminal.
        """
        ...

    def evaluate(self, version: str | Path, examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """The task's one evaluator; the report holds ``primary_metric``."""
        ...

    def load(self, version: str | Path) -> Any:
        """A predictor for ``version`` (the built-in name or a version directory)."""
        ...
