"""kaizend's error hierarchy.

One root, :class:`KaizendError`; each subclass also inherits the matching builtin so callers
that catch ``ValueError`` or ``OSError`` keep working, and carries the facts a message needs.
Messages say what to do next. The root and :class:`InvalidEvent` (which a producer meets too)
are defined in the slim client, ``kaizend_client.errors``, so that its errors are kaizend's.
"""

from __future__ import annotations

from kaizend_client.errors import InvalidEvent as InvalidEvent
from kaizend_client.errors import KaizendError as KaizendError


class ConfigError(KaizendError, ValueError):
    """A configuration value is invalid; ``key`` names the (first) bad key in dotted form."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class ReadOnlyViolation(KaizendError, PermissionError):
    """An operator query tried to change the database or its state; ``what`` names it."""

    def __init__(self, what: str) -> None:
        super().__init__(
            f"refused: `kaizend sql` is read-only and does not run {what}; only SELECT "
            "(including SHOW, DESCRIBE, SUMMARIZE, WITH ... SELECT) and EXPLAIN of a SELECT "
            "are allowed, over the tables, the catalog and the Parquet export"
        )
        self.what = what


class QueryTimeout(KaizendError, TimeoutError):
    """An operator query ran longer than ``admin.sql_timeout_s`` and DuckDB interrupted it."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(
            f"query interrupted after {timeout_s:g} s (admin.sql_timeout_s): narrow it with a "
            "WHERE or a LIMIT, query the Parquet export, or raise admin.sql_timeout_s "
            "(KAIZEND_ADMIN__SQL_TIMEOUT_S)"
        )
        self.timeout_s = timeout_s


class QueryInterrupted(KaizendError, InterruptedError):
    """An operator query was interrupted before it ended (the daemon is stopping)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"query interrupted: {reason}; run it again once the daemon is back")
        self.reason = reason


class DaemonUnavailable(KaizendError, ConnectionError):
    """The running daemon could not be reached over NATS."""


class DaemonTimeout(KaizendError, TimeoutError):
    """The daemon is there but did not answer in time (a long query, an overloaded daemon)."""


class EmbeddedNatsError(KaizendError, RuntimeError):
    """The embedded nats-server could not be started."""


class StorageError(KaizendError, OSError):
    """The event store could not commit (disk full, lock, I/O error); the batch is retried."""


class UnstorableData(KaizendError, ValueError):
    """The database refused a value of a batch (a conversion, a constraint), not the storage.

    Ingestion splits such a batch until the refused event is alone and keeps it, with this
    error and its bytes, in ``rejected_events``; its neighbours commit.
    """


class StatisticsError(KaizendError, ValueError):
    """An argument to a statistical function is invalid; ``argument`` names it."""

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(message)
        self.argument = argument


class PathOutsideRoot(KaizendError, PermissionError):
    """A directory named by a message (a job, a result, a routing entry) lies outside the
    directory it must be in; ``key`` says which field named it."""

    def __init__(self, key: str, path: str, root: str) -> None:
        super().__init__(
            f"refused: {key} {path!r} does not lie under {root}; only directories the daemon "
            "created under its data directory's runs are used (check daemon.data_dir, which "
            "must name the same shared storage on every machine)"
        )
        self.key = key
        self.path = path
        self.root = root


class ForgedResult(KaizendError, PermissionError):
    """A training result that matches no job the daemon queued; ``job_id`` names its claim."""

    def __init__(self, job_id: str, reason: str) -> None:
        super().__init__(f"training result for {job_id!r} refused: {reason}")
        self.job_id = job_id
        self.reason = reason


class NotAuthorized(KaizendError, PermissionError):
    """NATS refused the credentials of a role (or there were none to offer)."""
