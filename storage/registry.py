"""The model registry: versions, their status, and the append-only history of aliases.

A version moves ``candidate`` -> ``challenger`` or ``rejected`` (the offline gate), then
``challenger`` -> ``champion`` (promotion) or ``rejected`` (rollback); a champion replaced by a
newer one becomes ``retired`` and stays available for rollback. The ``champion`` and
``challenger`` aliases are kept in ``alias_history``, one appended row per change, so the
question "what was serving at time T" always has an answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import duckdb
from kaizend.core.errors import KaizendError

Status = Literal["candidate", "rejected", "challenger", "champion", "retired"]
Alias = Literal["champion", "challenger"]
STATUSES: tuple[str, ...] = ("candidate", "rejected", "challenger", "champion", "retired")


class UnknownVersion(KaizendError, LookupError):
    """No such version in the registry."""

    def __init__(self, version_id: str) -> None:
        super().__init__(f"no model version {version_id!r}: see `kaizend models list`")
        self.version_id = version_id


@dataclass(frozen=True)
class VersionRecord:
    version_id: str
    task: str
    status: str
    base_model: str
    artifact_path: str | None
    parent_version: str | None
    training_run: str | None
    created_at: datetime
    metrics: dict[str, Any] | None
    status_reason: str
    status_changed_at: datetime


_COLUMNS = ", ".join(VersionRecord.__dataclass_fields__)


@dataclass(frozen=True)
class GateRecord:
    """One offline-gate decision as `gate_decisions` stores it (see storage/schema.sql)."""

    version_id: str
    champion: str
    """The version the candidate was measured against."""
    passed: bool
    reason: str
    checks: list[dict[str, Any]]
    fresh_examples: int
    decided_on: str | None
    """The evaluation set whose improvement check decided (None: none could)."""
    test: str | None
    p_value: float | None


def _record(row: tuple[Any, ...]) -> VersionRecord:
    values = dict(zip(VersionRecord.__dataclass_fields__, row, strict=True))
    if values["metrics"] is not None:
        values["metrics"] = json.loads(values["metrics"])
    return VersionRecord(**values)


class Registry:
    """Registry operations on a DuckDB connection (the daemon's, or a test's)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self.con.begin()
        try:
            yield
        except BaseException:
            self.con.rollback()
            raise
        self.con.commit()

    def next_version_id(self, task: str) -> str:
        count = self.con.execute(
            "SELECT count(*) FROM model_versions WHERE task = ?", [task]
        ).fetchone()[0]
        return f"{task}-v{count}"

    def register(
        self,
        task: str,
        *,
        base_model: str,
        status: Status = "candidate",
        reason: str,
        artifact_path: str | None = None,
        parent_version: str | None = None,
        training_run: str | None = None,
        metrics: dict[str, Any] | None = None,
        version_id: str | None = None,
    ) -> VersionRecord:
        """Add a version (the next ``<task>-v<n>`` unless ``version_id`` is given)."""
        now = datetime.now(UTC)
        version_id = version_id or self.next_version_id(task)
        self.con.execute(
            f"INSERT INTO model_versions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [version_id, task, status, base_model, artifact_path, parent_version, training_run,
             now, json.dumps(metrics) if metrics is not None else None, reason, now],
        )  # fmt: skip
        return self.get(version_id)

    def ensure_initial_champion(self, task: str, *, base_model: str, reason: str) -> VersionRecord:
        """On first start, register ``<task>-v0`` as champion; later starts change nothing."""
        version_id = f"{task}-v0"
        existing = self.find(version_id)
        if existing is not None:
            return existing
        with self._transaction():
            record = self.register(
                task, base_model=base_model, status="champion", reason=reason,
                version_id=version_id,
            )  # fmt: skip
            self._append_alias(task, "champion", version_id, reason)
        return record

    def find(self, version_id: str) -> VersionRecord | None:
        row = self.con.execute(
            f"SELECT {_COLUMNS} FROM model_versions WHERE version_id = ?", [version_id]
        ).fetchone()
        return _record(row) if row else None

    def get(self, version_id: str) -> VersionRecord:
        record = self.find(version_id)
        if record is None:
            raise UnknownVersion(version_id)
        return record

    def list(self, task: str | None = None) -> list[VersionRecord]:
        rows = self.con.execute(
            f"SELECT {_COLUMNS} FROM model_versions WHERE ? IS NULL OR task = ? "
            "ORDER BY task, created_at",
            [task, task],
        ).fetchall()
        return [_record(r) for r in rows]

    def set_status(self, version_id: str, status: Status, reason: str) -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; one of {STATUSES}")
        self.get(version_id)
        self.con.execute(
            "UPDATE model_versions SET status = ?, status_reason = ?, status_changed_at = ? "
            "WHERE version_id = ?",
            [status, reason, datetime.now(UTC), version_id],
        )

    def _append_alias(self, task: str, alias: Alias, version_id: str | None, reason: str) -> None:
        self.con.execute(
            "INSERT INTO alias_history VALUES (?, ?, ?, ?, ?)",
            [task, alias, version_id, datetime.now(UTC), reason],
        )

    def alias(self, task: str, alias: Alias, at: datetime | None = None) -> str | None:
        """The version holding ``alias`` now, or at time ``at``."""
        row = self.con.execute(
            "SELECT version_id FROM alias_history WHERE task = ? AND alias = ? "
            "AND assigned_at <= ? ORDER BY assigned_at DESC LIMIT 1",
            [task, alias, at or datetime.now(UTC)],
        ).fetchone()
        return row[0] if row else None

    def make_challenger(self, version_id: str, reason: str) -> None:
        """A candidate that passed the offline gate: status and alias in one transaction."""
        with self._transaction():
            self._make_challenger(version_id, reason)

    def _make_challenger(self, version_id: str, reason: str) -> None:
        record = self.get(version_id)
        self.set_status(version_id, "challenger", reason)
        self._append_alias(record.task, "challenger", version_id, reason)

    def record_gate_decision(self, decision: GateRecord) -> Status:
        """The offline gate's decision on a candidate and the status it gives it, in one
        transaction: ``rejected``; ``challenger``; or, while another version is the
        challenger, ``candidate`` (it waits its turn). Either both are stored or neither, so
        a result redelivered after a failure half-way finds no decision and decides again.

        Returns the candidate's new status.
        """
        record = self.get(decision.version_id)
        why = f"offline gate {decision.reason}"
        with self._transaction():
            self.con.execute(
                "INSERT INTO gate_decisions (version_id, task, champion, decided_at, passed, "
                "reason, checks, fresh_examples, decided_on, test, p_value) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [record.version_id, record.task, decision.champion, datetime.now(UTC),
                 decision.passed, decision.reason, json.dumps(decision.checks),
                 decision.fresh_examples, decision.decided_on, decision.test, decision.p_value],
            )  # fmt: skip
            status: Status
            if not decision.passed:
                status = "rejected"
                self._stand_down_rows(record, status, why, f"rolled back: {why}")
            elif (current := self.alias(record.task, "challenger")) is not None:
                status = "candidate"
                self.set_status(
                    record.version_id, status, f"{why}; waits while {current} is the challenger"
                )
            else:
                status = "challenger"
                self._make_challenger(record.version_id, why)
        return status

    def promote(
        self,
        version_id: str,
        reason: str,
        *,
        replaced: Status = "retired",
        replaced_reason: str | None = None,
    ) -> str | None:
        """Make ``version_id`` the champion; the old champion becomes ``replaced``: retired
        (kept for rollback) by default, rejected when a rollback undoes it (with
        ``replaced_reason``, default "replaced by <version>: <reason>").

        Returns the previous champion's id.
        """
        record = self.get(version_id)
        previous = self.alias(record.task, "champion")
        with self._transaction():
            if previous and previous != version_id:
                self.set_status(
                    previous, replaced, replaced_reason or f"replaced by {version_id}: {reason}"
                )
            self.set_status(version_id, "champion", reason)
            self._append_alias(record.task, "champion", version_id, reason)
            if self.alias(record.task, "challenger") == version_id:
                self._append_alias(record.task, "challenger", None, f"promoted: {reason}")
        return previous

    def previous_champion(self, task: str) -> str | None:
        """The newest earlier champion still kept for rollback: retired, not rejected (a
        version rolled back once is not brought back)."""
        champion = self.alias(task, "champion")
        row = self.con.execute(
            "SELECT h.version_id FROM alias_history h JOIN model_versions v USING (version_id) "
            "WHERE h.task = ? AND h.alias = 'champion' AND h.version_id IS DISTINCT FROM ? "
            "AND v.status = 'retired' ORDER BY h.assigned_at DESC LIMIT 1",
            [task, champion],
        ).fetchone()
        return row[0] if row else None

    def reject(self, version_id: str, reason: str) -> None:
        """Reject a candidate or roll back a challenger (its alias is cleared)."""
        self._stand_down(version_id, "rejected", reason, f"rolled back: {reason}")

    def withdraw(self, version_id: str, reason: str) -> None:
        """A challenger whose experiment was stopped without a verdict: a candidate again."""
        self._stand_down(version_id, "candidate", reason, f"withdrawn: {reason}")

    def _stand_down(self, version_id: str, status: Status, reason: str, why: str) -> None:
        record = self.get(version_id)
        with self._transaction():
            self._stand_down_rows(record, status, reason, why)

    def _stand_down_rows(
        self, record: VersionRecord, status: Status, reason: str, why: str
    ) -> None:
        self.set_status(record.version_id, status, reason)
        if self.alias(record.task, "challenger") == record.version_id:
            self._append_alias(record.task, "challenger", None, why)
