"""When to retrain a task: enough new signal, or old enough, and not too soon.

Pure decisions; the daemon gathers the facts (counts from DuckDB, times from the job table)
and acts on the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from kaizend.core.config import TriggerSettings


@dataclass(frozen=True)
class TriggerState:
    """What the decision looks at, for one task."""

    new_signal: int
    """Signal stored since the snapshot of the task's last training run."""
    last_requested: datetime | None
    """When the task's last training run was requested (cooldown)."""
    last_trained: datetime
    """When the task's model last changed by training (or version 0 was registered)."""


def _ago(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


def training_reason(config: TriggerSettings, state: TriggerState, now: datetime) -> str | None:
    """Why a training should start now, or None."""
    if state.new_signal <= 0:
        return None
    if state.last_requested is not None:
        since = now - state.last_requested
        if since < timedelta(seconds=config.cooldown_s):
            return None
    if state.new_signal >= config.min_new_signal:
        return f"threshold: {state.new_signal} new signals >= {config.min_new_signal}"
    age, limit = now - state.last_trained, timedelta(seconds=config.max_age_s)
    if config.max_age_s and age >= limit:
        return (
            f"max age: last trained {_ago(age)} ago (limit {_ago(limit)}), "
            f"{state.new_signal} new signals"
        )
    return None
