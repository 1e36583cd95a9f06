"""The task interface: what orchestration, the offline gate and experiments know of a model.

A task (the FIT query parser, the retrieval embedder, ...) builds a training set from the
events stored in DuckDB, trains a version directory, evaluates any version with one evaluator
that names its primary metric, and loads a version for prediction. Everything above the task
speaks only to this protocol.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import duckdb
from kaizend.core.errors import KaizendError


class NotEnoughSignal(KaizendError, ValueError):
    """The stored events do not (yet) make a training set; ``counts`` says what there is."""

    def __init__(self, task: str, message: str, counts: dict[str, int]) -> None:
        super().__init__(f"{task}: not enough signal to train: {message}")
        self.task = task
        self.counts = counts


@dataclass(frozen=True)
class TrainProgress:
    """One optimiser step, as reported to a progress callback (by every task)."""

    step: int
    total_steps: int
    epoch: float
    loss: float
    learning_rate: float
    examples_per_s: float
    eta_s: float


ProgressCallback = Callable[[TrainProgress], None]


@dataclass(frozen=True)
class TrainingSet:
    """Examples to train on and to validate with, and the stored events they came from."""

    train: Sequence[dict[str, Any]]
    validation: Sequence[dict[str, Any]]
    fresh: Sequence[dict[str, Any]] = ()
    """The most recent real signal, held back: never trained on, the offline gate's
    fresh evaluation set (examples in the shape `Task.evaluate` takes). It holds both kinds
    of signal, each example's ``source`` saying which: corrected answers (`CORRECTION`) and
    confirmed ones (`CONFIRMED`), so a candidate that fixes the first by breaking the second
    does not gain."""
    event_ids: dict[str, list[str]] = field(default_factory=dict)
    """Ids of the events trained on, by kind (``correction``, ``feedback``): the lineage."""
    fresh_event_ids: dict[str, list[str]] = field(default_factory=dict)
    """Ids of the events held back in ``fresh``, by kind."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Events that could not become examples, by reason."""


PER_EXAMPLE = "per_example"
"""Evaluation report key: the primary metric of each example scored, in the examples' order
(the offline gate pairs the candidate's and the champion's values example by example)."""
METRIC_TYPE = "primary_metric_type"
"""Evaluation report key: ``"binary"`` (each example right or wrong, as exact match) or
``"continuous"`` (a graded score, as nDCG): which paired test the offline gate uses."""
SOURCES = "sources"
"""Evaluation report key the training run adds on the fresh set: the ``source`` of each
example scored (`CORRECTION`, `CONFIRMED`), aligned with `PER_EXAMPLE`."""

CORRECTION = "correction"
CONFIRMED = "confirmed"
"""The two kinds of fresh example (an example's ``source``): the answer a user corrected,
with the correction as the target (the champion was wrong there by construction), and an
answer a user confirmed, with the answer itself as the target (the champion was right)."""

# Confirmation is judged with every correction the snapshot holds: an answer corrected at
# any time later is not a right answer to evaluate against (unlike an experiment's outcome,
# which only counts what arrived within its attribution window). 100 years, in seconds.
_ANY_TIME_S = 100 * 365 * 86_400

# The newest stored answer of each query that counts as a success (`query_units` holds the
# one definition: liked and not corrected), with the feedback events that confirmed it.
_CONFIRMED = f"""
SELECT q.query_id, q.ts, q.text, q.output,
       (SELECT list(f.event_id ORDER BY f.event_id) FROM feedback_events f
        WHERE f.query_id = q.query_id) AS feedback_ids
FROM query_units({_ANY_TIME_S}) u
JOIN query_events q ON q.query_id = u.query_id AND q.ts = u.ts
    AND q.model_version = u.model_version
WHERE u.task = $task AND u.success AND NOT u.failed AND u.arm IS DISTINCT FROM 'shadow'
QUALIFY row_number() OVER (PARTITION BY q.query_id ORDER BY q.ts DESC, q.event_id DESC) = 1
ORDER BY q.ts, q.query_id
"""


@dataclass(frozen=True)
class ConfirmedAnswer:
    """A stored answer a user confirmed: rated well and never corrected."""

    query_id: str
    ts: datetime
    text: str
    output: Any
    """The query event's ``output``, decoded from JSON (None when it had none)."""
    feedback_ids: tuple[str, ...]


def confirmed_answers(con: duckdb.DuckDBPyConnection, task: str) -> list[ConfirmedAnswer]:
    """The answers of ``task`` users confirmed, oldest first (one per query): the other
    half of a fresh set, where a candidate must keep what the champion got right."""
    rows = con.execute(_CONFIRMED, {"task": task}).fetchall()
    return [
        ConfirmedAnswer(
            query_id, ts, text, json.loads(output) if output is not None else None,
            tuple(feedback_ids or ()),
        )
        for query_id, ts, text, output, feedback_ids in rows
    ]  # fmt: skip


# The newest correction of each query of a task whose text is known (the query has arrived).
_CORRECTIONS = """
SELECT c.event_id, q.text, c.corrected_output
FROM correction_events c JOIN query_events q USING (query_id)
WHERE q.task = ?
QUALIFY row_number() OVER (PARTITION BY c.query_id ORDER BY c.ts DESC, c.event_id DESC) = 1
ORDER BY c.ts, c.event_id
"""
_CORRECTIONS_STORED = """
SELECT count(*) FROM correction_events c JOIN query_events q USING (query_id)
WHERE q.task = ? AND c.ingested_at > ? AND c.ingested_at <= ?
"""


def newest_corrections(con: duckdb.DuckDBPyConnection, task: str) -> list[tuple[str, str, str]]:
    """(event id, query text, corrected_output as JSON text) of the newest correction of each
    query of ``task``, oldest first: what a task that learns from corrections trains on."""
    return con.execute(_CORRECTIONS, [task]).fetchall()


def corrections_stored(
    con: duckdb.DuckDBPyConnection, task: str, since: datetime | None, until: datetime
) -> int:
    """Corrections of ``task``'s queries stored after ``since`` (all when None), up to
    ``until``: the new signal of a task that learns from corrections."""
    since = since or datetime.min.replace(tzinfo=UTC)
    return con.execute(_CORRECTIONS_STORED, [task, since, until]).fetchone()[0]


def hold_back_newest(items: Sequence[Any], share: float) -> tuple[Sequence[Any], Sequence[Any]]:
    """Split time-ordered ``items`` into (older, newest ``share``).

    At least one item is held back when ``share`` > 0 and there are two or more, so a small
    fresh set still exists; with ``share`` == 0 nothing is.
    """
    if not 0.0 <= share < 1.0:
        raise ValueError(f"fresh_share must be in [0, 1), got {share}")
    count = int(len(items) * share)
    if share > 0 and count == 0 and len(items) >= 2:
        count = 1
    cut = len(items) - count
    return items[:cut], items[cut:]


@dataclass(frozen=True)
class Prediction:
    """One answer of a loaded version, in the shape a query event records."""

    output: Any
    """The query event's ``output``: the parse, or ``{"results": [{doc_id, score}, ...]}``."""
    fallback_used: bool = False
    """The model's answer failed validation and the fallback answered instead."""


class Predictor(Protocol):
    """A loaded version, as the inference gateway uses it."""

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """Answer a batch of queries, in order; raises only when the version cannot answer."""
        ...


class Task(Protocol):
    """One kind of model kaizend keeps improving."""

    name: str
    primary_metric: str
    greater_is_better: bool
    builtin_version: str
    """What version 0 is (the parser's rules, the base embedder), for the registry."""

    def count_new_signal(
        self, con: duckdb.DuckDBPyConnection, since: datetime | None, until: datetime
    ) -> int:
        """Signal that would make the next training different: stored after ``since``
        (everything when None) and up to ``until``. Cheap: the triggers call it often."""
        ...

    def build_training_set(
        self, con: duckdb.DuckDBPyConnection, *, fresh_share: float = 0.0
    ) -> TrainingSet:
        """Examples from the task's base data merged with the signal stored in ``con``.

        The newest ``fresh_share`` of the real signal (by event time), corrections and
        confirmed answers (`confirmed_answers`) alike, goes to ``TrainingSet.fresh`` instead
        of training. Raises `NotEnoughSignal` when the task needs more stored signal than
        there is.
        """
        ...

    def benchmark_examples(self) -> Sequence[dict[str, Any]]:
        """The task's fixed benchmark split, in the shape `evaluate` takes."""
        ...

    def train(
        self,
        training_set: TrainingSet,
        out_dir: Path,
        *,
        progress: ProgressCallback | None = None,
        progress_bar: bool = False,
    ) -> Path:
        """Train a version into ``out_dir`` (resuming a checkpoint there); return it.

        ``progress`` receives every step; ``progress_bar`` shows one on the terminal.
        """
        ...

    def evaluate(self, version: str | Path, examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """The task's one evaluator. The report holds ``primary_metric`` (its name and, under
        that name, its mean value), `PER_EXAMPLE` (the primary metric of each example scored,
        in order) and `METRIC_TYPE`."""
        ...

    def load(self, version: str | Path) -> Predictor:
        """A predictor for ``version`` (the built-in name or a version directory)."""
        ...

    def load_examples(self, path: Path) -> list[dict[str, Any]]:
        """Evaluation examples from a JSONL file, in the shape `evaluate` takes (for
        `kaizend eval TASK --data FILE`); `ValueError` naming the line of a bad one."""
        ...


class TextEncoder(Protocol):
    """A text embedder for the drift report's embedding checks."""

    key: str
    """Identifies the weights: texts embedded under one key are not embedded again."""

    def encode(self, texts: Sequence[str]) -> Sequence[Any]:
        """One vector (a numpy array) per text, in order."""
        ...


class OptionalHooks:
    """The optional parts of a task, with what a task that does not override them gets.

    A kind's task class inherits this and overrides what applies to it; the generic layers
    call these and never look at a task's name or kind.
    """

    slow_first_load: bool = False
    """The first `load` of a version does lasting work (an embedder builds the version's
    index): the daemon runs it first in a background process at low priority
    (`kaizend.daemon.prepare`), and its own load then finds the work done."""

    def drift_fields(self) -> Any:
        """The fields of a stored query that input-drift checks compare between windows (a
        `models.drift.fields.DriftFields`); None: the text's length only."""
        return None

    def text_encoder(self, version: str | Path) -> TextEncoder | None:
        """An embedder of ``version`` for other tasks' drift reports (``drift.embedder_task``
        names the task); None: this task embeds nothing."""
        return None

    def remote_predictor(self, settings: Any, version: Path, version_id: str) -> Predictor | None:
        """A predictor of ``version`` answered by the Ollama server of ``settings`` (the
        whole configuration; ``gateway.backend = "ollama"``); None: served in-process."""
        return None

    def publish_to_ollama(self, settings: Any, record: Any) -> Any:
        """After a promotion (or `kaizend ollama publish`): create the Ollama model of the
        registered version ``record``; the publication (its ``model`` name, ``seconds``,
        uploaded ``blobs``), or None when the task has nothing Ollama serves. Raises
        `KaizendError` when the publication fails."""
        return None

    def simulate_traffic(
        self,
        predictor: Any,
        *,
        queries: int,
        seed: int,
        model_version: str,
        options: dict[str, Any],
    ) -> list[dict[str, Any]] | None:
        """Simulated users of the task: ``queries`` queries answered by ``predictor`` (a
        loaded version), rated and sometimes corrected, as events with a ``kind`` for
        `kaizend publish`; ``options`` are the kind's own (`ValueError` for one it does not
        know). None: the kind comes with no simulation."""
        return None
